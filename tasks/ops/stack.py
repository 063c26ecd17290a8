"""The shared server stack on one host: PostgreSQL, the Prefect server and the MLflow tracking server.

`slmforge stack up --data DIR` starts all three on loopback with their data in DIR; `down` stops
them; `env` prints what a client or a worker must export to use them. The state of a started stack
(ports, process ids) is DIR/stack.json; the database password is DIR/secrets/db_password (mode
0600), passed to the servers through their environment, never on a command line (visible in `ps`)
and never printed.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import UserError
from tasks.hosts.processes import free_port, log_tail, pid_alive, stop_group, wait_healthy

DB_USER = "slmforge"
DATABASES = ("prefect", "mlflow")


class StackConfig(BaseModel):
    """Where the stack keeps its data and which loopback ports it listens on (0 = any free port)."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(description="Folder holding the database, the artefacts, logs and stack.json.")
    host: str = Field("127.0.0.1", description="Listen address; loopback unless you mean to expose the servers.")
    postgres_port: int = Field(0, ge=0, lt=65536, description="PostgreSQL port.")
    prefect_port: int = Field(0, ge=0, lt=65536, description="Prefect server port.")
    mlflow_port: int = Field(0, ge=0, lt=65536, description="MLflow tracking server port.")
    start_timeout_s: float = Field(120.0, gt=0, description="How long each server may take to answer its health check.")


class StackState(BaseModel):
    """What `up` started; written to DIR/stack.json so `down`, `env` and workers find it."""

    host: str
    postgres_port: int
    prefect_port: int
    mlflow_port: int
    pids: dict[str, int] = Field(description="Process ids of the Prefect and MLflow servers.")

    @property
    def prefect_api_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"


def stack_up(config: StackConfig) -> StackState:
    """Start (or find running) the three servers; returns once every one answers its health check."""
    data = config.data_dir.resolve()
    if (running := running_stack(data)) is not None:
        return running
    if missing := [tool for tool in ("initdb", "pg_ctl", "psql", "createdb") if shutil.which(tool) is None]:
        raise UserError(f"PostgreSQL's {', '.join(missing)} not found on PATH; install PostgreSQL 15 "
                        "(Debian: apt-get install postgresql) or point slmforge at existing servers instead")
    data.mkdir(parents=True, exist_ok=True)
    _let_postgres_in(data)
    (data / "logs").mkdir(exist_ok=True)
    password = _password(data)
    # A PostgreSQL left running from this folder (its servers died, or stack.json was lost) is reused.
    pg_port = _postgres_port(data / "postgres")
    if pg_port is None:
        pg_port = config.postgres_port or free_port(config.host)
        _start_postgres(data, config.host, pg_port, config.start_timeout_s)
    state = StackState(host=config.host, postgres_port=pg_port, pids={},
                       prefect_port=config.prefect_port or free_port(config.host),
                       mlflow_port=config.mlflow_port or free_port(config.host))
    try:
        state.pids["prefect"] = _spawn(data, "prefect", _prefect_command(state), _prefect_env(data, state, password))
        state.pids["mlflow"] = _spawn(data, "mlflow", _mlflow_command(data, state), _mlflow_env(state, password))
        _write_state(data, state)
        _wait_healthy(f"{state.prefect_api_url}/health", "Prefect server", data / "logs" / "prefect.log",
                      config.start_timeout_s, state.pids["prefect"])
        _wait_healthy(f"{state.mlflow_tracking_uri}/health", "MLflow server", data / "logs" / "mlflow.log",
                      config.start_timeout_s, state.pids["mlflow"])
    except BaseException:
        stack_down(data)
        raise
    return state


def stack_down(data_dir: Path) -> list[str]:
    """Stop whatever of the stack runs from `data_dir`; returns what was stopped."""
    data = data_dir.resolve()
    stopped = []
    state_file = data / "stack.json"
    if state_file.is_file():
        state = StackState.model_validate_json(state_file.read_text())
        for name, pid in state.pids.items():
            if pid_alive(pid) and not _is_stack_server(name, pid):
                continue  # the number now belongs to another process (the host restarted): not ours to stop
            if stop_group(pid):
                stopped.append(name)
        state_file.unlink()
    pgdata = data / "postgres"
    if _postgres_port(pgdata) is not None:
        # "fast": disconnect clients, checkpoint, stop. A checkpoint on a busy disk can take long.
        _as_postgres(["pg_ctl", "stop", "-D", str(pgdata), "-m", "fast", "-w", "-t", "300"], what="stop PostgreSQL")
        stopped.append("postgres")
    return stopped


def _postgres_port(pgdata: Path) -> int | None:
    """The port of the PostgreSQL running on `pgdata`, None when none runs there."""
    if not (pgdata / "PG_VERSION").is_file():
        return None
    status = _as_postgres(["pg_ctl", "status", "-D", str(pgdata)], check=False)
    if status.returncode != 0:
        return None
    return int((pgdata / "postmaster.pid").read_text().splitlines()[3])  # line 4: the port


# How long a live server may take to answer its health check before `up` and `env` give up on it. A
# single two-second probe took a busy stack for a dead one (the Prefect server answers in seconds when
# the host's cores are taken), and `up` then started a second pair of servers beside the first.
STACK_PATIENCE_S = 60.0


def running_stack(data_dir: Path, *, patience_s: float = STACK_PATIENCE_S) -> StackState | None:
    """The stack started from `data_dir` if all of it is alive and answering; None when none runs from
    it (no stack.json, or a server process has died). Servers that are alive but do not answer within
    `patience_s` are an error: starting another stack beside them would leave them running."""
    state_file = data_dir / "stack.json"
    if not state_file.is_file():
        return None
    state = StackState.model_validate_json(state_file.read_text())

    def alive() -> bool:
        return all(_is_stack_server(name, pid) for name, pid in state.pids.items())

    if not alive():
        return None
    for name, url in (("Prefect server", f"{state.prefect_api_url}/health"),
                      ("MLflow server", f"{state.mlflow_tracking_uri}/health")):
        if wait_healthy(url, alive=alive, timeout_s=patience_s, interval_s=0.5, request_timeout_s=patience_s):
            continue
        if not alive():
            return None
        pids = ", ".join(f"{n} {pid}" for n, pid in state.pids.items())
        raise UserError(f"the stack in {data_dir} runs (processes {pids}) but its {name} did not answer {url} "
                        f"within {patience_s:.0f} s; see {data_dir / 'logs'}, then `slmforge stack down "
                        f"--data {data_dir}` and `up` again")
    return state


def _is_stack_server(name: str, pid: int) -> bool:
    """Whether `pid` is alive and still the stack's `name` server: after a restart of the host its
    number may belong to another process, which must be neither waited for nor stopped."""
    if not pid_alive(pid):
        return False
    try:
        command = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return name in command and "server" in command


def client_env(state: StackState) -> dict[str, str]:
    """What a client or a worker exports to use the stack (no secret: the servers hold the password)."""
    return {"PREFECT_API_URL": state.prefect_api_url, "MLFLOW_TRACKING_URI": state.mlflow_tracking_uri}


# --- PostgreSQL -------------------------------------------------------------------------------


def _start_postgres(data: Path, host: str, port: int, timeout_s: float) -> None:
    pgdata = data / "postgres"
    if not (pgdata / "PG_VERSION").is_file():
        _init_postgres(data, pgdata)
    log = data / "logs" / "postgres.log"
    _chown_to_postgres(log.parent)
    # Loopback only, and no unix socket in /var/run (it may not exist or be writable): the socket
    # lives in the data folder.
    options = f"-h {host} -p {port} -k {pgdata}"
    _as_postgres(["pg_ctl", "start", "-D", str(pgdata), "-l", str(log), "-o", options, "-w",
                  "-t", str(int(timeout_s))], what="start PostgreSQL", log=log)
    for database in DATABASES:
        _create_database(pgdata, host, port, database)


def _init_postgres(data: Path, pgdata: Path) -> None:
    pgdata.mkdir(mode=0o700)
    _chown_to_postgres(pgdata)
    # initdb reads the password from a file only `postgres` can read, removed right after.
    pwfile = pgdata.parent / ".initdb_pw"
    pwfile.write_text(_password(data))
    pwfile.chmod(0o600)
    _chown_to_postgres(pwfile)
    try:
        _as_postgres(["initdb", "-D", str(pgdata), "-U", DB_USER, f"--pwfile={pwfile}",
                      "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8"], what="initdb")
    finally:
        pwfile.unlink(missing_ok=True)


def _create_database(pgdata: Path, host: str, port: int, database: str) -> None:
    exists = _as_postgres(["psql", "-h", host, "-p", str(port), "-U", DB_USER, "-d", "postgres", "-tAc",
                           f"SELECT 1 FROM pg_database WHERE datname = '{database}'"], what="query PostgreSQL",
                          env={"PGPASSWORD": _password(pgdata.parent)})
    if exists.stdout.strip() != "1":
        _as_postgres(["createdb", "-h", host, "-p", str(port), "-U", DB_USER, database],
                     what=f"create database {database}", env={"PGPASSWORD": _password(pgdata.parent)})


def _as_postgres(command: list[str], *, what: str = "", check: bool = True, log: Path | None = None,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    result = subprocess.run(prefix + command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-1500:]
        if log is not None and log.is_file():
            detail += "\n" + log.read_text()[-1500:]
        raise UserError(f"could not {what or command[0]} (exit {result.returncode}): {detail}\n"
                        "Is PostgreSQL installed (initdb, pg_ctl on PATH)? A stale stack? Try `slmforge stack down`.")
    return result


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres", group="postgres")


def _let_postgres_in(data: Path) -> None:
    """As root, PostgreSQL runs as `postgres`, which must traverse every folder above its data. The
    stack's own folder is opened to it; a private folder above it (a 0700 home) is the user's to
    change, so say which instead of loosening it behind their back."""
    if os.geteuid() != 0:
        return

    postgres_uid = pwd.getpwnam("postgres").pw_uid
    for parent in data.parents:
        st = parent.stat()
        if not st.st_mode & 0o001 and st.st_uid != postgres_uid:
            raise UserError(
                f"PostgreSQL runs as the user `postgres` (it refuses root), which cannot enter {parent} "
                f"(mode {st.st_mode & 0o777:o}) above the stack folder {data}; pick a data folder outside it "
                "(e.g. --data /srv/slmforge-stack) or allow traversal with `chmod o+x` on it")
    data.chmod(data.stat().st_mode | 0o001)


def _password(data: Path) -> str:
    """The database password, made once; only the owner reads it."""
    secret = data / "secrets" / "db_password"
    if not secret.is_file():
        secret.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = secret.with_suffix(".tmp")
        tmp.write_text(secrets.token_urlsafe(24))
        tmp.chmod(0o600)
        tmp.rename(secret)
    return secret.read_text().strip()


# --- Prefect and MLflow servers ------------------------------------------------------------------


def _db_url(driver: str, state: StackState, password: str, database: str) -> str:
    return f"{driver}://{DB_USER}:{password}@{state.host}:{state.postgres_port}/{database}"


def _prefect_command(state: StackState) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", state.host,
            "--port", str(state.prefect_port)]


def _prefect_env(data: Path, state: StackState, password: str) -> dict[str, str]:
    return {"PREFECT_HOME": str(data / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": _db_url("postgresql+asyncpg", state, password, "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_API_URL": state.prefect_api_url}


def _mlflow_command(data: Path, state: StackState) -> list[str]:
    # Artefacts are served by the tracking server itself (mlflow-artifacts:/), so workers on other
    # machines need only its URL, not a shared filesystem.
    return [sys.executable, "-m", "mlflow", "server", "--host", state.host, "--port", str(state.mlflow_port),
            "--serve-artifacts", "--artifacts-destination", (data / "artifacts").as_uri(), "--workers", "2"]


def _mlflow_env(state: StackState, password: str) -> dict[str, str]:
    return {"MLFLOW_BACKEND_STORE_URI": _db_url("postgresql+psycopg", state, password, "mlflow")}


def _spawn(data: Path, name: str, command: list[str], env: dict[str, str]) -> int:
    log = open(data / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env={**os.environ, **env}, start_new_session=True, cwd=data)
    log.close()
    return process.pid


def _wait_healthy(url: str, what: str, log: Path, timeout_s: float, pid: int) -> None:
    if not wait_healthy(url, alive=lambda: pid_alive(pid), timeout_s=timeout_s, interval_s=0.5):
        raise UserError(f"{what} did not become healthy at {url} within {timeout_s:.0f} s; its log ({log}) ends:\n"
                        f"{log_tail(log)}")


def _write_state(data: Path, state: StackState) -> None:
    tmp = data / "stack.json.tmp"
    tmp.write_text(json.dumps(state.model_dump(), indent=2))
    tmp.rename(data / "stack.json")
