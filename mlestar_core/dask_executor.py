"""A second executor backend: scripts run on the workers of a Dask `distributed` cluster.

`DaskExecutor` offers what the pipeline uses of `LocalExecutor` (`run`, `run_many` in job order,
`cancel_all`, `close`, the limits and `isolation`). On each worker a task runs the job with a worker-local
`LocalExecutor(workers=1)` and the same limits, so the sandbox, the caps and the `ExecResult` are the ones
a local run gets; the engine then reads the script's outputs from `job.workdir` as usual:

* without shared storage (the default) a job's input folder is zipped once per content hash and submitted
  as a task with a deterministic key, so the scheduler can recompute it when the worker holding it dies;
  each host unpacks it once into a cache keyed by that hash. The script runs in a fresh folder under the
  worker's local directory, and the files it wrote (capped) come back with its result and are written
  into `job.workdir` on this side.
* with shared storage (`dask://host:port?shared=1`) the workers use `job.workdir` and `job.inputs` as they are.

A worker that dies takes its sandboxed scripts with it (bwrap `--die-with-parent`, or the launcher's
parent-death signal) and the scheduler reruns its tasks elsewhere, in a clean folder; when the scheduler
gives up (KilledWorker) the job fails with a result that says so. `cancel_all` cancels queued tasks and
tells every worker at once (`client.run`) to kill that executor's running scripts.

`make_executor(spec)` builds either backend from "local" or "dask://host:port[?shared=1]". Nothing here
imports `distributed` at module level: the app and the local backend never pay for it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mlestar_core import sandbox as sbx
from mlestar_core.executor import (
    DISK_MB,
    KILL_GRACE,
    MAX_OPEN_FILES,
    MAX_PROCS,
    OUTPUT_CAP,
    ExecResult,
    Job,
    LocalExecutor,
)

log = logging.getLogger(__name__)

EXECUTOR_ENV = "MLESTAR_EXECUTOR"  # the app's (and the CLI's) default for where scripts run
LOCAL = "local"
SCHEME = "dask://"
DEFAULT_PORT = 8786  # `dask scheduler`'s default
CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler
MAX_INPUT_MB = 1024  # a bigger input folder needs shared storage: it would sit in the scheduler's memory
MAX_OUTPUT_MB = 1024  # what one job's work folder may send back; beyond it the largest files stay on the worker
NO_WORKER_GRACE = 120.0  # seconds without any worker before the jobs still waiting fail
_WAIT_STEP = 2.0  # seconds between looks at the cluster while waiting for a result
_JOBS_DIR = "mlestar-jobs"  # under each worker's local directory (Dask removes it when the worker is gone)
_CACHE_DIR = "mlestar-dask-inputs"  # under the host's temp folder, shared by the workers of that host
CACHE_DAYS = 2  # an unpacked input folder unused this long is removed from a worker host's cache
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# The executor's own code: a worker running another version would not enforce the same limits.
_FINGERPRINT_FILES = ("executor.py", "sandbox.py", "dask_executor.py", "hardening.py", "script.py")


class ExecutorError(ValueError):
    """The executor cannot be used as configured; the message says what to do."""


# -- the spec: "local" or "dask://host:port[?shared=1]" ---------------------------------------------------------


@dataclass(frozen=True)
class ExecutorSpec:
    kind: str  # "local" or "dask"
    address: str = ""  # tcp://host:port for dask
    shared: bool = False  # the workers see the client's run folders at the same paths

    def describe(self) -> str:
        """Where scripts run, in a few words (sidebar, CLI)."""
        if self.kind == LOCAL:
            return "this machine"
        storage = "shared storage" if self.shared else "inputs shipped to the workers"
        return f"Dask cluster at {self.address.removeprefix('tcp://')} ({storage})"


def default_spec() -> str:
    """$MLESTAR_EXECUTOR, else "local"."""
    return os.environ.get(EXECUTOR_ENV, "").strip() or LOCAL


def parse_spec(spec: str | None) -> ExecutorSpec:
    """"local" (or empty) or "dask://host[:port][?shared=1]"; ExecutorError says what is wrong."""
    text = (spec or "").strip()
    if text.lower() in ("", LOCAL):
        return ExecutorSpec(LOCAL)
    if not text.lower().startswith(SCHEME):
        raise ExecutorError(f"where scripts run must be 'local' or 'dask://host:port' (a Dask scheduler), not "
                            f"{text!r}")
    parts = urlsplit("tcp://" + text[len(SCHEME):])
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ExecutorError(f"the port in {text!r} is not a number between 0 and 65535") from None
    host = parts.hostname or ""
    if not host or parts.path not in ("", "/") or parts.fragment or parts.username or any(c.isspace() for c in host):
        raise ExecutorError(f"{text!r} is not a Dask scheduler address: write dask://host:port, e.g. "
                            f"dask://127.0.0.1:{DEFAULT_PORT}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"shared"})
    if unknown:
        raise ExecutorError(f"unknown option {', '.join(unknown)} in {text!r}: the only option is ?shared=1")
    shared = (query.get("shared") or ["0"])[-1].strip().lower()
    if shared not in _TRUE + _FALSE:
        raise ExecutorError(f"shared must be 1 or 0 in {text!r}, not {shared!r}")
    host_text = f"[{host}]" if ":" in host else host
    return ExecutorSpec("dask", f"tcp://{host_text}:{port}", shared in _TRUE)


def spec_problems(spec: str | None) -> list[str]:
    """Why the spec cannot be used (empty: it can), without contacting anything."""
    try:
        parse_spec(spec)
    except ExecutorError as exc:
        return [str(exc)]
    return []


def make_executor(spec: str | None, *, workers: int, timeout: float, memory_mb: int) -> LocalExecutor | DaskExecutor:
    """The backend `spec` names; `workers` bounds the local one (a cluster's own size bounds the Dask one)."""
    parsed = parse_spec(spec)
    if parsed.kind == LOCAL:
        return LocalExecutor(workers=workers, timeout=timeout, memory_mb=memory_mb)
    return DaskExecutor(parsed.address, shared=parsed.shared, timeout=timeout, memory_mb=memory_mb)


def cluster_status(spec: str, timeout: float = 3.0) -> tuple[str, str | None]:
    """(one line on where scripts run, why they could not run there or None), for the sidebar and the New run
    page: a cluster is asked whether it answers and how many workers it has."""
    try:
        parsed = parse_spec(spec)
    except ExecutorError as exc:
        return f"not usable: {exc}", str(exc)
    if parsed.kind == LOCAL:
        return parsed.describe(), None
    from distributed import Client

    try:
        with Client(parsed.address, timeout=timeout, set_as_default=False) as client:
            nthreads = client.nthreads()
    except Exception as exc:  # unreachable: said, never raised into a page
        problem = (f"the Dask scheduler at {parsed.address} does not answer ({type(exc).__name__}): start it with "
                   "`dask scheduler` (docs/scaling.md) or choose local")
        return f"{parsed.describe()}: not reachable", problem
    if not nthreads:
        return f"{parsed.describe()}: no workers", (f"the Dask scheduler at {parsed.address} has no workers: start "
                                                    f"some with `dask worker {parsed.address}`")
    return f"{parsed.describe()}: {len(nthreads)} workers, {sum(nthreads.values())} threads", None


def run_spec(config_json: str | None) -> str:
    """Where a stored run's scripts run (its config's executor; runs made before there was a choice: local)."""
    try:
        value = json.loads(config_json or "{}").get("executor")
    except (ValueError, AttributeError):
        value = None
    return str(value or LOCAL)


# -- what travels to a worker and back ---------------------------------------------------------------------------


@dataclass
class _Payload:
    """One job as the worker needs it (plain data; `stop_check` travels by cloudpickle)."""

    code: str
    script_name: str
    env: dict[str, str]
    timeout: float | None
    label: str
    stop_check: Callable[[str], str | None] | None
    settings: dict[str, Any]  # LocalExecutor keyword arguments: the limits
    max_output_bytes: int
    executor_id: str = ""  # which executor and cancel generation sent it (cancel_all reaches it through these)
    generation: int = 0
    inputs_hash: str | None = None  # without shared storage: the shipped input folder's content hash
    workdir: str | None = None  # with shared storage: the job's own folders
    inputs: str | None = None


@dataclass
class _Remote:
    """What a worker sends back for one job."""

    result: ExecResult
    outputs: bytes | None  # zipped files of the work folder (None with shared storage)
    skipped: list[str] = field(default_factory=list)  # output files over the cap, left on the worker
    worker: str = ""


def _fingerprint() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _FINGERPRINT_FILES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def _walk_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, file) of every regular file under folder; links are followed only inside it."""
    root = folder.resolve()
    for here, dirs, files in os.walk(folder, followlinks=False):
        base = Path(here)
        for name in sorted(files) + sorted(d for d in dirs if (base / d).is_symlink()):
            path = base / name
            try:
                real = path.resolve()
            except (OSError, RuntimeError):
                continue
            if not real.is_relative_to(root):
                log.warning("input %s links out of %s: not shipped (a sandboxed script could not follow it)",
                            path, folder)
                continue
            if real.is_file():
                yield str(path.relative_to(folder)), real
        dirs.sort()


def _zip_folder(folder: Path) -> tuple[str, bytes]:
    """The folder's content hash (names and bytes) and its zip."""
    digest = hashlib.sha256()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for rel, path in _walk_files(folder):
            data = path.read_bytes()
            digest.update(rel.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
            zf.writestr(rel, data)
    return digest.hexdigest()[:32], buf.getvalue()


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap identity of a folder's state: a changed file changes it, so its hash is recomputed."""
    out = []
    for rel, path in _walk_files(folder):
        st = path.stat()
        out.append((rel, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _safe_extract(blob: bytes, dest: Path) -> None:
    """Unzip, refusing names that would land outside dest."""
    root = dest.resolve()
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(root) or info.is_dir():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)


# -- the worker's side -------------------------------------------------------------------------------------------


def _cache_root() -> Path:
    return Path(tempfile.gettempdir()) / _CACHE_DIR


def _cached_inputs(digest: str, blob: bytes) -> Path:
    """The input folder unpacked once per host and content hash; a lock file keeps concurrent tasks (threads and
    worker processes of the host) from unpacking it twice, and the rename makes a folder either complete or absent."""
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / digest
    with open(root / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.utime(root / f"{digest}.lock")
        if not final.is_dir():
            partial = Path(tempfile.mkdtemp(prefix=f"{digest}.partial-", dir=root))
            _safe_extract(blob, partial)
            try:
                os.rename(partial, final)
            except OSError:  # another process of the host got there first (only around a cache sweep)
                shutil.rmtree(partial, ignore_errors=True)
            fresh = True
        else:
            fresh = False
    if fresh:
        _sweep_cache(root, keep=digest)
    return final


def _sweep_cache(root: Path, keep: str, max_age: float = CACHE_DAYS * 86400) -> None:
    """Remove cached input folders no job has used for `max_age` seconds (no script runs that long)."""
    now = time.time()
    for lock_path in root.glob("*.lock"):
        digest = lock_path.name.removesuffix(".lock")
        try:
            if digest == keep or now - lock_path.stat().st_mtime < max_age:
                continue
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(root / digest, ignore_errors=True)
                lock_path.unlink(missing_ok=True)
        except OSError:  # in use right now, or removed by another worker of the host
            continue


def _drop_cached(digest: str) -> None:
    """A script changed the cached inputs (fallback mode): the next job unpacks them afresh."""
    root = _cache_root()
    with open(root / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / digest).is_dir():
            spoiled = root / f"{digest}.spoiled-{uuid.uuid4().hex[:8]}"
            os.rename(root / digest, spoiled)
            shutil.rmtree(spoiled, ignore_errors=True)


def _shared_attempt(workdir: Path, key: str) -> Path:
    """Make a rerun of this task (its first worker died mid-script) start from the folder as it was before the
    first attempt: entries the dead attempt added are removed. Returns the marker to delete when done."""
    workdir.mkdir(parents=True, exist_ok=True)
    marker = workdir.parent / f".{workdir.name}.dask-attempt"
    try:
        earlier = json.loads(marker.read_text())
    except (OSError, ValueError):
        earlier = None
    if isinstance(earlier, dict) and earlier.get("key") == key:
        before = set(earlier.get("entries") or [])
        for entry in workdir.iterdir():
            if entry.name not in before:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
    else:
        marker.write_text(json.dumps({"key": key, "entries": sorted(p.name for p in workdir.iterdir())}))
    return marker


def _pack_outputs(workdir: Path, script_name: str, cap: int) -> tuple[bytes, list[str]]:
    """The files the script left (not its inputs, its scratch tmp/ or the script itself), smallest first so that
    only the largest files stay behind when the total passes `cap`."""
    found: list[tuple[int, str]] = []
    for here, dirs, files in os.walk(workdir):
        base = Path(here)
        if base == workdir:
            dirs[:] = [d for d in dirs if d not in ("input", "tmp")]
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]
        for name in files:
            path = base / name
            st = path.lstat()
            rel = str(path.relative_to(workdir))
            if stat.S_ISREG(st.st_mode) and rel != script_name:
                found.append((st.st_size, rel))
    total, skipped = 0, []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for size, rel in sorted(found):
            if total + size > cap:
                skipped.append(rel)
                continue
            total += size
            zf.write(workdir / rel, rel)
    return buf.getvalue(), skipped


# The jobs running in this worker process, by (executor id, generation), and the generations cancelled: a cancel
# reaches every worker at once through `client.run` (no task polls the scheduler), and a task that starts after it
# never starts its script.
_RUNNING: dict[tuple[str, int], set[LocalExecutor]] = {}
_CANCELLED: set[tuple[str, int]] = set()
_REGISTRY_LOCK = threading.Lock()


async def _cancel_on_worker(executor_id: str, generation: int) -> int:
    """Run on every worker by `DaskExecutor.cancel_all`: kill that generation's scripts here. A coroutine, because
    only those can be sent without waiting for the answers (it only signals, so it never blocks the loop)."""
    key = (executor_id, generation)
    with _REGISTRY_LOCK:
        _CANCELLED.add(key)
        victims = list(_RUNNING.get(key, ()))
    for local in victims:
        local.cancel_all()
    return len(victims)


def _failure(message: str, *, reason: str | None = None, settings: dict[str, Any] | None = None) -> ExecResult:
    """A result for a job that did not run to its end on the cluster (never an exception into the pipeline)."""
    s = settings or {}
    return ExecResult(exit_code=None, stdout="", stderr=message, score=None, wall_time=0.0, peak_memory_mb=0.0,
                      timed_out=False, memory_exceeded=False, killed_reason=reason, timeout=s.get("timeout"),
                      memory_mb=s.get("memory_mb"), disk_mb=s.get("disk_mb"))


def _remote_job(payload: _Payload, blob: bytes | None) -> _Remote:
    """The Dask task: run one job on this worker with a worker-local LocalExecutor."""
    from distributed import get_worker

    worker = get_worker()
    try:
        return _run_on_worker(payload, blob, worker)
    except Exception as exc:  # our own bug or a broken worker: a result that says where, not a lost task
        log.exception("mlestar job %s failed on %s", payload.label, worker.address)
        return _Remote(_failure(f"the job could not run on Dask worker {worker.address}: {type(exc).__name__}: "
                                f"{exc}", settings=payload.settings), None, worker=worker.address)


def _run_on_worker(payload: _Payload, blob: bytes | None, worker: Any) -> _Remote:
    local = LocalExecutor(workers=1, **payload.settings)
    # Taken before the job is registered: a cancel landing between registration and start still stops it.
    generation = local._generation
    key = (payload.executor_id, payload.generation)
    with _REGISTRY_LOCK:
        if key in _CANCELLED:
            return _Remote(_failure("cancelled before it started", reason="cancelled", settings=payload.settings),
                           None, worker=worker.address)
        _RUNNING.setdefault(key, set()).add(local)
    marker: Path | None = None
    workdir: Path | None = None
    try:
        if payload.workdir is not None:  # shared storage: the client's folders, as they are
            workdir = Path(payload.workdir)
            inputs = Path(payload.inputs) if payload.inputs else None
            if inputs is not None and not inputs.is_dir():
                return _Remote(_failure(f"the input folder {inputs} is not visible on Dask worker {worker.address} "
                                        "(?shared=1 needs the run store at the same path on every worker)",
                                        settings=payload.settings), None, worker=worker.address)
            marker = _shared_attempt(workdir, str(worker.get_current_task()))
        else:  # a fresh folder per attempt, so a rerun never sees what a dead attempt left
            inputs = _cached_inputs(payload.inputs_hash, blob) if payload.inputs_hash and blob is not None else None
            jobs = Path(worker.local_directory) / _JOBS_DIR
            jobs.mkdir(parents=True, exist_ok=True)
            workdir = Path(tempfile.mkdtemp(prefix="job-", dir=jobs))
        job = Job(code=payload.code, workdir=workdir, inputs=inputs, env=payload.env, timeout=payload.timeout,
                  script_name=payload.script_name, label=payload.label, stop_check=payload.stop_check)
        result = local._run(job, generation)
        if result.killed_reason == "tampered" and payload.inputs_hash:
            _drop_cached(payload.inputs_hash)
        if payload.workdir is not None:
            return _Remote(result, None, worker=worker.address)
        outputs, skipped = _pack_outputs(workdir, payload.script_name, payload.max_output_bytes)
        return _Remote(result, outputs, skipped, worker=worker.address)
    finally:
        with _REGISTRY_LOCK:
            _RUNNING.get(key, set()).discard(local)
            if not _RUNNING.get(key, True):
                del _RUNNING[key]
        local.close()
        if marker is not None:
            marker.unlink(missing_ok=True)
        if payload.workdir is None and workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _probe_worker(sandbox: str | None, network: bool, cgroups: bool, dask_worker: Any = None) -> dict[str, Any]:
    """What a worker would enforce, and what it runs: sent with `client.run` (which passes `dask_worker`) when the
    executor connects."""
    info: dict[str, Any] = {"host": socket.gethostname(), "python": sys.executable, "cpus": os.cpu_count() or 1,
                            "nthreads": dask_worker.state.nthreads if dask_worker is not None else 1,
                            "fingerprint": _fingerprint(), "pid": os.getpid()}
    try:
        status = sbx.build_status(sbx.resolve_mode(sandbox), use_cgroups=cgroups, network=network)
        info["isolation"] = status.as_dict()
    except (RuntimeError, ValueError) as exc:  # sandbox="bwrap" required and missing, or a bad MLESTAR_SANDBOX
        info["error"] = str(exc)
    return info


# -- the client's side -------------------------------------------------------------------------------------------


def _status_from(d: dict[str, Any]) -> sbx.SandboxStatus:
    fields = {f.name for f in dataclasses.fields(sbx.SandboxStatus)}
    known = {k: v for k, v in d.items() if k in fields}
    known["problems"] = tuple(known.get("problems") or ())
    return sbx.SandboxStatus(**known)


def _cluster_isolation(address: str, probes: dict[str, dict[str, Any]]) -> sbx.SandboxStatus:
    """One status for the whole cluster: the weakest worker's, with a message that names the workers without
    the sandbox."""
    statuses = {addr: _status_from(p["isolation"]) for addr, p in probes.items()}
    hosts = sorted({p["host"] for p in probes.values()})
    where = f"On the Dask cluster at {address} ({len(probes)} workers on {len(hosts)} hosts): "
    bare = sorted(addr for addr, s in statuses.items() if not s.sandboxed)
    partial = sorted(addr for addr, s in statuses.items() if not s.fully_enforced)
    weakest = statuses[(bare or partial or sorted(statuses))[0]]
    distinct = {dataclasses.replace(s, message="", problems=()) for s in statuses.values()}
    note = ""
    if bare:
        note = (f"{len(bare)} of {len(statuses)} workers run scripts WITHOUT the sandbox ({', '.join(bare[:10])}). ")
    elif len(distinct) > 1:
        note = "The workers do not all enforce the same limits; the weakest is described. "
    problems = tuple(dict.fromkeys(f"{addr}: {p}" for addr, s in statuses.items() for p in s.problems))
    return dataclasses.replace(weakest, message=where + note + weakest.message, problems=problems)


class DaskExecutor:
    """Runs jobs as tasks on a Dask cluster's workers, with the limits and sandbox of `LocalExecutor`.

    `address`: the scheduler ("tcp://host:8786"). `shared`: the workers see `job.workdir` and `job.inputs` at the
    same paths (shared storage); otherwise inputs are shipped and outputs sent back. `python`: the scripts'
    interpreter on the workers (None: each worker's own). The other arguments are LocalExecutor's, applied on
    every worker. Raises ExecutorError when the scheduler cannot be reached or a worker cannot run jobs.
    """

    def __init__(
        self,
        address: str,
        *,
        shared: bool = False,
        timeout: float = 300.0,
        memory_mb: int = 4096,
        threads_per_job: int | None = None,
        python: str | None = None,
        kill_grace: float = KILL_GRACE,
        output_cap: int = OUTPUT_CAP,
        sandbox: str | None = None,
        disk_mb: int | None = DISK_MB,
        max_procs: int | None = MAX_PROCS,
        max_open_files: int | None = MAX_OPEN_FILES,
        network: bool = False,
        cgroups: bool = True,
        connect_timeout: float | None = None,
        max_input_mb: int = MAX_INPUT_MB,
        max_output_mb: int = MAX_OUTPUT_MB,
        no_worker_grace: float = NO_WORKER_GRACE,
    ) -> None:
        from distributed import Client

        self.address = address
        self.shared = shared
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.disk_mb = disk_mb
        self.max_input_bytes = int(max_input_mb) * 2**20
        self.max_output_bytes = int(max_output_mb) * 2**20
        self.no_worker_grace = no_worker_grace
        self._limits = dict(timeout=timeout, memory_mb=memory_mb, kill_grace=kill_grace, output_cap=output_cap,
                            sandbox=sandbox, disk_mb=disk_mb, max_procs=max_procs, max_open_files=max_open_files,
                            network=network, cgroups=cgroups)
        try:
            self.client = Client(address, timeout=connect_timeout or CONNECT_TIMEOUT, set_as_default=False,
                                 name=f"mlestar-{os.getpid()}")
        except Exception as exc:  # OSError / TimeoutError from the comm layer: say what to do instead
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}: {exc}). Start one with "
                f"`dask scheduler` and workers with `dask worker {address}` (docs/scaling.md), or run scripts "
                "on this machine (executor 'local').") from None
        try:
            probes = self._probe(sandbox, network, cgroups)
        except BaseException:
            self.client.close()
            raise
        self.isolation: sbx.SandboxStatus = _cluster_isolation(address, probes)
        self.workers = sum(p["nthreads"] for p in probes.values())
        self.threads_per_job = threads_per_job or self._threads_per_job(probes)
        self._limits["threads_per_job"] = self.threads_per_job
        self._limits["python"] = python or next(iter(probes.values()))["python"]
        # What the brain is told about the scripts' interpreter: the workers', as this side cannot ask it otherwise
        # (environment_info runs it here, so a path that exists here is the best we can do).
        self.python = self._limits["python"] if os.path.exists(self._limits["python"]) else sys.executable
        self._id = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._generation = 0
        self._inflight: dict[Any, int] = {}  # future -> generation it was sent in
        self._input_futures: dict[str, Any] = {}  # content hash -> the task holding the zipped folder
        self._digests: dict[tuple[str, Any], tuple[str, int]] = {}  # (folder, signature) -> (hash, zip bytes)
        self._folders: dict[str, str] = {}  # folder -> content hash last shipped
        self._closed = False
        if not self.isolation.fully_enforced:
            log.warning("script isolation on the Dask workers: %s", self.isolation.message)

    # -- connecting ----------------------------------------------------------------------------------------------

    def _probe(self, sandbox: str | None, network: bool, cgroups: bool) -> dict[str, dict[str, Any]]:
        """The scheduler and every worker import mlestar_core and run this version; every worker can build its
        sandbox."""
        mine = _fingerprint()
        # The scheduler unpickles every task graph, and ours name mlestar_core's functions: a scheduler that cannot
        # import the package loses every script ("Error during deserialization of the task graph").
        try:
            theirs = self.client.run_on_scheduler(_fingerprint)
        except Exception as exc:  # ModuleNotFoundError from the scheduler's unpickling, or its comm errors
            raise ExecutorError(
                f"the Dask scheduler at {self.address} cannot load this project's tasks ({type(exc).__name__}: "
                f"{exc}): start `dask scheduler` with PYTHONPATH set to the project folder, like the workers "
                "(docs/scaling.md)") from None
        if theirs != mine:
            raise ExecutorError(f"the Dask scheduler at {self.address} runs another version of mlestar_core: update "
                                "its checkout and restart it")
        try:
            self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except Exception:
            raise ExecutorError(f"the Dask scheduler at {self.address} has no workers: start some with "
                                f"`dask worker {self.address}` (docs/scaling.md)") from None
        answers = self.client.run(_probe_worker, sandbox, network, cgroups, on_error="return")
        problems: list[str] = []
        good: dict[str, dict[str, Any]] = {}
        for addr, info in answers.items():
            if isinstance(info, BaseException):
                hint = (" (it cannot import mlestar_core: start `dask worker` with PYTHONPATH set to the project "
                        "folder, see docs/scaling.md)" if "mlestar_core" in str(info) else "")
                problems.append(f"worker {addr} failed the check: {info}{hint}")
            elif "error" in info:
                problems.append(f"worker {addr} cannot run scripts: {info['error']}")
            elif info["fingerprint"] != mine:
                problems.append(f"worker {addr} runs another version of mlestar_core (its executor code differs from "
                                "this one's): update its checkout and restart it")
            else:
                good[addr] = info
        if problems:
            raise ExecutorError("; ".join(problems))
        return good

    @staticmethod
    def _threads_per_job(probes: dict[str, dict[str, Any]]) -> int:
        """Each host's cores split among the worker threads it runs, the smallest share over the hosts (what
        LocalExecutor does with one machine's cores and its workers)."""
        per_host: dict[str, list[int]] = {}
        for p in probes.values():
            per_host.setdefault(p["host"], [p["cpus"], 0])[1] += p["nthreads"]
        return max(1, min(cpus // max(1, threads) for cpus, threads in per_host.values()))

    @property
    def sandboxed(self) -> bool:
        return self.isolation.sandboxed

    # -- public API ----------------------------------------------------------------------------------------------

    def run(self, job: Job) -> ExecResult:
        """Run one job to completion on the cluster."""
        return self.run_many([job])[0]

    def run_many(self, jobs: list[Job]) -> list[ExecResult]:
        """Send every job to the cluster at once (the scheduler queues them); results are in job order."""
        if self._closed:
            raise RuntimeError("DaskExecutor is closed")
        jobs = list(jobs)
        for job in jobs:
            if not job.script_name or Path(job.script_name).name != job.script_name:
                raise ValueError(f"script_name must be a plain file name, got {job.script_name!r}")
        with self._lock:
            generation = self._generation
        sent: list[Any] = []
        results: list[ExecResult | None] = [None] * len(jobs)
        for i, job in enumerate(jobs):
            Path(job.workdir).absolute().mkdir(parents=True, exist_ok=True)
            (Path(job.workdir) / job.script_name).write_text(job.code, encoding="utf-8")
            try:
                sent.append(self._submit(job, generation))
            except ExecutorError as exc:
                sent.append(None)
                results[i] = _failure(str(exc), settings=self._settings(job))
            except Exception as exc:  # e.g. the scheduler went away, or a stop check that cannot be pickled
                log.exception("job %s could not be sent to %s", job.label, self.address)
                sent.append(None)
                results[i] = _failure(f"the job could not be sent to the Dask cluster at {self.address}: "
                                      f"{type(exc).__name__}: {exc}", settings=self._settings(job))
        for i, job in enumerate(jobs):
            future, sent[i] = sent[i], None  # dropped as soon as collected: the worker may free its result
            if future is not None:
                results[i] = self._collect(job, future, generation)
        return [r for r in results if r is not None]

    def cancel_all(self) -> None:
        """Kill every running script on the workers and drop queued jobs; returns without waiting."""
        with self._lock:
            generation, self._generation = self._generation, self._generation + 1
            futures = list(self._inflight)
        try:
            self.client.run(_cancel_on_worker, self._id, generation, wait=False)
            if futures:
                self.client.cancel(futures)
        except Exception as exc:  # scheduler gone: nothing runs there that we could reach anyway
            log.warning("could not cancel the jobs on the Dask cluster at %s: %s", self.address, exc)

    def close(self) -> None:
        """Cancel whatever runs, release the shipped inputs and disconnect (the cluster itself stays up)."""
        if self._closed:
            return
        with self._lock:
            busy = bool(self._inflight)
        if busy:
            self.cancel_all()
        self._closed = True
        self._input_futures.clear()
        try:
            self.client.close()
        except Exception as exc:
            log.warning("closing the Dask client failed: %s", exc)

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------------------------

    def _settings(self, job: Job) -> dict[str, Any]:
        return {**self._limits, "timeout": job.timeout if job.timeout is not None else self.timeout}

    def _submit(self, job: Job, generation: int) -> Any:
        shared = self.shared
        payload = _Payload(code=job.code, script_name=job.script_name, env=dict(job.env), timeout=job.timeout,
                           label=job.label, stop_check=job.stop_check, settings=self._limits,
                           max_output_bytes=self.max_output_bytes, executor_id=self._id, generation=generation)
        blob = None
        if shared:
            payload.workdir = str(Path(job.workdir).absolute())
            payload.inputs = str(Path(job.inputs).absolute()) if job.inputs is not None else None
        elif job.inputs is not None:
            payload.inputs_hash, blob = self._shipped_inputs(Path(job.inputs))
        name = "".join(c if c.isalnum() else "-" for c in (job.label or job.script_name))[:40].strip("-")
        future = self.client.submit(_remote_job, payload, blob,
                                    key=f"mlestar-{name or 'job'}-{uuid.uuid4().hex[:12]}", pure=False, retries=0)
        with self._lock:
            self._inflight[future] = generation
        return future

    def _shipped_inputs(self, folder: Path) -> tuple[str, Any]:
        """The task holding the folder's zip: built once per content hash and kept while this executor lives."""
        folder = folder.absolute()
        if not folder.is_dir():
            raise ExecutorError(f"job inputs must be an existing folder: {folder}")
        signature = (str(folder), _signature(folder))
        with self._lock:
            known = self._digests.get(signature)
            if known is not None and known[0] in self._input_futures:
                return known[0], self._input_futures[known[0]]
        digest, blob = _zip_folder(folder)
        if len(blob) > self.max_input_bytes:
            raise ExecutorError(f"the input folder {folder} is {len(blob) / 2**20:.0f} MB zipped, over the "
                                f"{self.max_input_bytes // 2**20} MB that may be shipped through the scheduler: "
                                "put the run store on storage every worker mounts and use ?shared=1")
        with self._lock:
            # A folder whose files changed (e.g. the run wrote its folds) no longer needs its old copy held here;
            # tasks still using it keep it alive on the cluster until they finish.
            old = self._folders.get(str(folder))
            self._folders[str(folder)] = digest
            if old is not None and old != digest and old not in self._folders.values():
                self._input_futures.pop(old, None)
            if digest not in self._input_futures:
                # A task, not scatter(): its spec holds the bytes, so the scheduler recomputes it when the worker
                # that held the result dies.
                self._input_futures[digest] = self.client.submit(_identity, blob, key=f"mlestar-inputs-{digest}",
                                                                 pure=True)
            self._digests[signature] = (digest, len(blob))
            return digest, self._input_futures[digest]

    def _collect(self, job: Job, future: Any, generation: int) -> ExecResult:
        try:
            remote = self._await(future)
        except Exception as exc:
            return self._lost(job, exc, generation)
        finally:
            with self._lock:
                self._inflight.pop(future, None)
        result = remote.result
        if remote.outputs is not None:
            _safe_extract(remote.outputs, Path(job.workdir).absolute())
        if remote.skipped:
            note = (f"[mlestar: {len(remote.skipped)} output files were left on Dask worker {remote.worker}, over "
                    f"the {self.max_output_bytes // 2**20} MB that come back per job: "
                    f"{', '.join(remote.skipped[:10])}]")
            log.warning("job %s: %s", job.label, note)
            result = dataclasses.replace(result, stderr=(result.stderr + "\n" + note).lstrip("\n"))
        return result

    def _await(self, future: Any) -> _Remote:
        """The task's result; gives up when the cluster has had no worker for `no_worker_grace` seconds."""
        alone_since: float | None = None
        while True:
            try:
                return future.result(timeout=_WAIT_STEP)
            except TimeoutError:
                pass
            if self.client.nthreads():
                alone_since = None
                continue
            alone_since = alone_since or time.monotonic()
            if time.monotonic() - alone_since > self.no_worker_grace:
                self.client.cancel([future])
                raise _NoWorkers(f"no worker has been connected to the Dask scheduler at {self.address} for "
                                 f"{self.no_worker_grace:g}s")

    def _lost(self, job: Job, exc: BaseException, generation: int) -> ExecResult:
        """The result of a job the cluster did not finish: cancelled by us, given up by the scheduler, or lost."""
        from distributed.scheduler import KilledWorker

        settings = self._settings(job)
        with self._lock:
            cancelled = self._generation != generation
        if cancelled:
            return _failure("cancelled before it finished (the run was stopped)", reason="cancelled",
                            settings=settings)
        if isinstance(exc, KilledWorker):
            message = (f"The Dask workers running this script died {exc.allowed_failures + 1} times (last: "
                       f"{getattr(exc.last_worker, 'address', exc.last_worker)}), so the scheduler gave up on it "
                       "(KilledWorker). Look at the workers' logs: a worker killed by its nanny for memory, or "
                       "machines that went away.")
        elif isinstance(exc, _NoWorkers):
            message = f"{exc}: the script never ran. Start workers with `dask worker {self.address}`."
        else:
            message = (f"The Dask cluster at {self.address} lost this script ({type(exc).__name__}: {exc}); the "
                       "connection to the scheduler may have dropped.")
        log.warning("job %s: %s", job.label, message)
        return _failure(message, settings=settings)


class _NoWorkers(Exception):
    pass


def _identity(blob: bytes) -> bytes:
    return blob
