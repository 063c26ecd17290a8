"""`slmforge stack up|down|env`: the shared PostgreSQL + Prefect + MLflow stack on this host."""

from __future__ import annotations

from pathlib import Path

import typer

stack_app = typer.Typer(add_completion=False, help="PostgreSQL-backed Prefect and MLflow servers on loopback.")
DATA_OPTION = typer.Option(Path(".slmforge/stack"), "--data", help="Folder for the databases, artefacts and logs.")


@stack_app.command("up")
def up(data: Path = DATA_OPTION, prefect_port: int = typer.Option(0, help="0 = any free port."),
       mlflow_port: int = typer.Option(0, help="0 = any free port."),
       postgres_port: int = typer.Option(0, help="0 = any free port.")) -> None:
    """Start the stack (or find it running) and print what clients and workers export to use it."""
    from tasks.ops.stack import StackConfig, client_env, stack_up  # loaded by the command that runs: --help stays fast

    state = stack_up(StackConfig(data_dir=data, prefect_port=prefect_port, mlflow_port=mlflow_port,
                                 postgres_port=postgres_port))
    typer.echo(f"# stack running from {data.resolve()} (PostgreSQL on port {state.postgres_port})")
    _print_env(client_env(state))


@stack_app.command("env")
def env(data: Path = DATA_OPTION) -> None:
    """Print the exports for a running stack (eval "$(slmforge stack env)")."""
    from tasks.ops.stack import client_env, running_stack  # loaded by the command that runs: --help stays fast

    state = running_stack(data.resolve())
    if state is None:
        typer.echo(f"no healthy stack runs from {data.resolve()}; start it with `slmforge stack up --data {data}`",
                   err=True)
        raise typer.Exit(1)
    _print_env(client_env(state))


@stack_app.command("down")
def down(data: Path = DATA_OPTION) -> None:
    """Stop the stack; its data stays in the folder for the next `up`."""
    from tasks.ops.stack import stack_down  # loaded by the command that runs: --help stays fast

    stopped = stack_down(data)
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


def _print_env(values: dict[str, str]) -> None:
    for name, value in values.items():
        typer.echo(f"export {name}={value}")


worker_app = typer.Typer(add_completion=False, help="Add this machine as a measuring worker of a hardware class.")


@worker_app.command("start")
def start(hardware_class: str = typer.Option(..., "--hardware-class", help="e.g. cpu-avx2; the work pool's name.")) -> None:
    """Prepare the class's work pool and deployment, then run a worker (one measurement at a time)."""
    import os  # loaded by the command that runs: --help stays fast

    from tasks.hosts.tether import tether_descendants
    from tasks.remote.workers import prepare_class, worker_command, worker_env

    # The worker execs into Prefect's (same process, same start time): its watchdog still follows it, and
    # a killed worker's flow runs and measurement processes stop with it.
    tether_descendants()
    prepare_class(hardware_class)
    typer.echo(f"worker for hardware class {hardware_class!r}: pool and deployment ready; starting", err=True)
    command = worker_command(hardware_class)
    os.execvpe(command[0], command, {**os.environ, **worker_env()})
