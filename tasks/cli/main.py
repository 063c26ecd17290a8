"""The `slmforge` command: run a pipeline config, or validate one (its output: tasks/cli/display.py)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer

from tasks.cli.display import console, fail, hide_tracebacks_on_console, print_problems, print_summary

app = typer.Typer(add_completion=False, help="Small language models to measured, deployable artefacts.")
from tasks.cli.stack import stack_app, worker_app  # noqa: E402 - beside the app they join

app.add_typer(stack_app, name="stack")
app.add_typer(worker_app, name="worker")
CONFIG_ARG = typer.Argument(..., help="Pipeline config YAML, e.g. configs/default.yaml.")


def _quiet_defaults() -> None:
    # Offline by design: no analytics pings, no hub calls unless a config asks for the hub.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    # The temporary Prefect server (no PREFECT_API_URL) gets 20 s to start by default: too short for
    # a second `slmforge run` starting beside a first one on a busy host (seen: both failed).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


DEBUG_OPTION = typer.Option(False, "--debug", help="Show the Python traceback of a failure (for a bug report).")


@app.command()
def validate(config: Path = CONFIG_ARG, debug: bool = DEBUG_OPTION) -> None:
    """Check a config without heavy work; every problem is reported at once."""
    from tasks.validate import config_problems  # loaded by the command that runs: --help stays fast

    try:
        _, problems = config_problems(config)
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        fail(exc, debug=debug)
    if problems:
        print_problems(config, problems)
        raise typer.Exit(1)
    console.print(f"[green]{config}: valid[/green]")


STOPPED_BY_SIGTERM = 143


def _stop_on_sigterm(*_) -> None:
    """Stop the run's work before exiting: its task threads wait on its processes (a measurement
    worker, a quantize, an imatrix pass, a server under load), do not see the exit, and would keep the
    process and the cores until those ended by themselves. No step starts after this."""
    from tasks.evaluate.process import stop_all_workers  # loaded by the command that runs: --help stays fast
    from tasks.hosts.processes import stop_this_run

    _stopping.append(True)
    stop_this_run()  # no step starts after this, and the run's processes are stopped
    stop_all_workers()  # any worker left is killed at once
    sys.exit(STOPPED_BY_SIGTERM)


# Set once a SIGTERM arrived before the flow started (during it, Prefect's own handler raises its
# TerminationSignal instead: `_stopped_by_signal` looks for either).
_stopping: list[bool] = []


def _stopped_by_signal(exc: BaseException) -> bool:
    """Whether `exc` is what unwinding a SIGTERM raised. A whole process group stopped at once (as
    systemd and `timeout` do) takes the Prefect server down too, so reporting the crash fails to
    connect: that error, raised while handling Prefect's TerminationSignal, is the stop's doing, not
    a bug to report."""
    from prefect.exceptions import TerminationSignal  # Prefect: loaded by the command that runs

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TerminationSignal) or (isinstance(seen, SystemExit) and seen.code == STOPPED_BY_SIGTERM):
            return True
        seen = seen.__context__
    return bool(_stopping)


def _stopped() -> NoReturn:
    console.print("slmforge: stopped by SIGTERM. The run's processes (builds, measurement workers, servers) "
                  "were stopped and the MLflow runs "
                  "closed as FAILED (tag slmforge.error: TerminationSignal); run again to finish: what was "
                  "stored is reused.", style="red", markup=False)
    raise typer.Exit(STOPPED_BY_SIGTERM)


@contextmanager
def _stoppable_by_sigterm(*, debug: bool) -> Iterator[None]:
    """Around a flow (`run`, `suite`): a polite stop (systemd, a scheduler, `kill`) stops the flow's
    work, closes its MLflow runs as the stop unwinds, and ends with the "stopped" line and exit 143,
    not a traceback (with --debug an exception is re-raised as it is)."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        yield
    except typer.Exit:
        raise
    except SystemExit as exc:
        if _stopped_by_signal(exc):
            _stopped()
        raise
    except Exception as exc:
        if _stopped_by_signal(exc) and not debug:
            _stopped()
        raise


SORT_OPTION = typer.Option(None, "--sort-by", help="Order the results table by this metric, e.g. kld_mean.")


@app.command()
def run(config: Path = CONFIG_ARG, sort_by: str | None = SORT_OPTION, debug: bool = DEBUG_OPTION) -> None:
    """Run acquire -> convert -> quantize -> evaluate -> package and print the results."""
    _quiet_defaults()
    from tasks.core.errors import VariantsFailedError  # loaded by the command that runs: --help stays fast
    from tasks.review.watch import RegressionError
    from tasks.validate import config_problems
    from tasks.variants import SUMMARY_COLUMNS

    try:
        loaded, problems = config_problems(config)
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        fail(exc, debug=debug)
    if sort_by and sort_by not in SUMMARY_COLUMNS:
        problems.append(f"--sort-by {sort_by!r} is not a results column; use one of {', '.join(SUMMARY_COLUMNS)}")
    if problems:
        print_problems(config, problems)
        raise typer.Exit(1)
    from tasks.cli.plan import refuse_unfit  # loaded by the command that runs: --help stays fast

    try:
        refuse_unfit(console, loaded)  # nothing starts that cannot finish
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        fail(exc, debug=debug, config=loaded)
    from flows.pipeline import pipeline  # loaded by the command that runs: --help stays fast
    from tasks.hosts.tether import tether_descendants

    tether_descendants()  # a `kill -9` of the run stops its servers and workers too (tasks/hosts/tether.py)
    if not debug:
        hide_tracebacks_on_console()
    try:
        with _stoppable_by_sigterm(debug=debug):
            summary = pipeline(str(config))
    except typer.Exit:
        raise
    except (VariantsFailedError, RegressionError) as exc:
        if exc.summary:
            print_summary(exc.summary, sort_by)  # the variants that finished are still worth showing
        fail(exc, debug=debug, config=loaded)
    except Exception as exc:  # noqa: BLE001 - one paragraph saying what to do; --debug re-raises
        fail(exc, debug=debug, config=loaded)
    print_summary(summary, sort_by)


@app.command()
def plan(config: Path = CONFIG_ARG, debug: bool = DEBUG_OPTION,
         probe_again: bool = typer.Option(False, "--probe-again", help=(
             "Measure this host's probe again (a few seconds; do it on a quiet host): the plan scales its "
             "built-in time lines by it."))) -> None:
    """Before running: each step's predicted time, peak memory and disk on this host, and the medium tier's."""
    from tasks.cli.plan import run_plan_command  # loaded by the command that runs: --help stays fast

    try:
        status = run_plan_command(console, config, probe_again=probe_again)
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        fail(exc, debug=debug)
    raise typer.Exit(status)


DEVICE_OPTION = typer.Option(..., "--device", help="Device profile: a name under configs/devices/ or a YAML path.")
EXPERIMENT_OPTION = typer.Option(None, "--experiment", help="MLflow experiment to read (repeatable; default all).")
MODEL_OPTION = typer.Option(None, "--model", help="Only variants whose name contains this, e.g. smollm2.")
TRACKING_OPTION = typer.Option(None, "--tracking-uri", help="MLflow store (default $MLFLOW_TRACKING_URI, "
                               "else sqlite:///mlruns/mlflow.db).")


@app.command()
def recommend(device: str = DEVICE_OPTION, experiment: list[str] | None = EXPERIMENT_OPTION,
              model: str | None = MODEL_OPTION, tracking_uri: str | None = TRACKING_OPTION,
              domain: str | None = typer.Option(
                  None, "--domain", help="Rank quality on this evaluation domain's KLD (e.g. code, chat; "
                  "evaluate.domains) instead of the main text's."),
              debug: bool = DEBUG_OPTION) -> None:
    """The best passing variant that fits a device, from the measured runs, and why better ones did not."""
    _quiet_defaults()
    from tasks.review.devices import load_device  # loaded by the command that runs: --help stays fast
    from tasks.review.recommend import on_domain, recommend_per_tier
    from tasks.review.search import variant_runs, with_chunk_series
    from tasks.review.show import print_recommendation
    from tasks.tracking.client import resolve_tracking_uri

    try:
        profile = load_device(device)
        uri = resolve_tracking_uri(tracking_uri)
        runs = with_chunk_series(uri, variant_runs(uri, experiments=experiment, model=model),
                                 names=(f"{domain}/kld" if domain else "kld",))
        answers = recommend_per_tier(on_domain(runs, domain) if domain else runs, profile)  # one pick per tier
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        fail(exc, debug=debug)
    for answer in answers:
        print_recommendation(answer, console)
    if all(answer.pick is None for answer in answers):
        raise typer.Exit(2)


@app.command()
def compare(
    experiment: list[str] = typer.Option(None, "--experiment", help="MLflow experiment name (repeatable; default all)."),
    model: list[str] = typer.Option(None, "--model", help="Model name as in run names, e.g. smollm2-135m-instruct."),
    hardware: list[str] = typer.Option(None, "--hardware", help="Hardware id (tag slmforge.hardware_id; repeatable)."),
    fmt: list[str] = typer.Option(None, "--format", help="Format, e.g. gguf or onnx (repeatable)."),
    quality: str = typer.Option("kld_mean", "--quality", help="kld_mean, kld_p99, perplexity_ratio, delta_p_rms or top1_agreement."),
    out: Path = typer.Option(Path("comparison"), "--out", help="Folder for comparison.csv/.md and the PNG figures."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="Any MLflow URI (default $MLFLOW_TRACKING_URI, else the local store)."),
    all_runs: bool = typer.Option(False, "--all-runs", help="Keep every run, not only the newest of each variant."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not log a comparison run to MLflow."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Compare measured variants across runs, models, tiers and hardware: table and Pareto figures."""
    _quiet_defaults()
    from tasks.review.cli import run_compare  # loaded by the command that runs: --help stays fast

    try:
        run_compare(console, experiments=experiment, models=model, hardware=hardware, formats=fmt, quality=quality,
                    out=out, tracking_uri=tracking_uri, all_runs=all_runs, log=not no_log)
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        fail(exc, debug=debug)


@app.command()
def suite(suite_file: Path = typer.Argument(..., help="Suite YAML, e.g. configs/suites/micro.yaml."),
          debug: bool = DEBUG_OPTION) -> None:
    """Run the pipeline for every model of a suite in one flow, then compare them."""
    _quiet_defaults()
    from tasks.review.cli import print_suite  # loaded by the command that runs: --help stays fast

    try:
        from flows.suite import suite as suite_flow  # loaded by the command that runs: --help stays fast
        from tasks.hosts.tether import tether_descendants

        tether_descendants()  # a `kill -9` of the suite stops its servers and workers too
        with _stoppable_by_sigterm(debug=debug):
            result = suite_flow(str(suite_file))
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - shown as one paragraph; --debug re-raises
        fail(exc, debug=debug)
    print_suite(console, result)
    if result["errors"]:
        raise typer.Exit(1)


@app.command()
def publish(package_dir: Path = typer.Argument(..., help="A package folder printed by `slmforge run`."),
            repo_id: str = typer.Option(..., "--repo-id", help="Hub model repo, e.g. me/smollm2-135m-q4_k_m-gguf."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Print the operations, send nothing."),
            public: bool = typer.Option(False, "--public", help="Create the repo public (default private)."),
            debug: bool = DEBUG_OPTION) -> None:
    """Upload a package with huggingface_hub's commit API (token from HF_TOKEN, never printed)."""
    from tasks.publish import publish as publish_package  # loaded by the command that runs: --help stays fast

    try:
        plan = publish_package(package_dir, repo_id=repo_id, dry_run=dry_run, private=not public)
    except Exception as exc:  # noqa: BLE001 - one paragraph; --debug re-raises
        fail(exc, debug=debug)
    for item in plan.files:
        console.print(f"{'would add' if plan.dry_run else 'added'} {item.path_in_repo} ({item.size:,} bytes)", markup=False)
    console.print(plan.commit_url or f"dry run: {len(plan.files)} file(s) to {plan.repo_id}", markup=False)


@app.command("check-deploy")
def check_deploy(package_dir: Path = typer.Argument(..., help="A GGUF package folder with deployment files.")) -> None:
    """Run each deployment file's own validator (checkov, kubernetes-validate, promtool, ...)."""
    # loaded by the command that runs: --help stays fast
    from tasks.formats.gguf.deploy.validate import validate_deployment
    from tasks.formats.gguf.deploy.write import VALIDATED

    present = [name for name in VALIDATED if (package_dir / name).is_file()]
    failures = validate_deployment(package_dir, present)
    for name in present:
        console.print(f"{'FAIL' if name in failures else 'ok  '} {name}", markup=False)
        for failure in failures.get(name, []):
            console.print(f"     {failure}", markup=False)
    if failures or not present:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
