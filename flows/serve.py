"""`python -m flows.serve`: run the nightly schedule without a work pool (development shape)."""

from __future__ import annotations

import os

from flows.pipeline import pipeline


def main() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    pipeline.serve(
        name="nightly-default", cron="0 2 * * *", parameters={"config_path": "configs/default.yaml"},
        tags=["slmforge", "nightly"],
    )


if __name__ == "__main__":
    main()
