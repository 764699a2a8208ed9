"""Isolation for generated scripts: a bubblewrap sandbox, per-job cgroups, and a launcher that sets limits.

Three independent layers, each probed once per process and reported honestly in `SandboxStatus`:

* **bubblewrap** (`bwrap`): the script runs in its own user, PID, network, IPC and UTS namespaces as
  uid/gid 65534 with no capabilities. Its file system is a fresh tmpfs holding only read-only binds of
  what the interpreter needs (/usr, the /lib and /bin links, a handful of /etc files, the interpreter's
  prefixes and sys.path entries), its own working folder read-write and the task inputs read-only at
  `<workdir>/input`. Killing the app kills the whole sandbox (`--die-with-parent` on both bwrap
  processes; the kernel kills every process of a PID namespace when its init dies, so children that
  called setsid() or double-forked die too).
* **cgroups**: one cgroup per job (v2 if the memory controller is delegated to us, else v1) caps the
  memory and the number of tasks of the whole script tree, not each process; an OOM kill in it is
  what marks `memory_exceeded`. Without them the executor's summed-RSS watchdog kills the tree.
* **the launcher**: rlimits are set between fork and exec by a tiny launcher (`sh` + util-linux
  `prlimit`, or a few lines of Python where prlimit is missing), never by `preexec_fn`: the app is
  threaded, and running Python code in a forked child of a threaded process can deadlock on a lock
  another thread held at fork time. The launcher also joins the job's cgroups *before* exec, so no
  process of the script ever runs outside them.

Nothing here imports Streamlit; `executor.LocalExecutor` puts the pieces together.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SANDBOX_ENV = "MLESTAR_SANDBOX"  # none | bwrap | auto: overrides LocalExecutor's default mode
MODES = ("auto", "bwrap", "none")
SANDBOX_UID = SANDBOX_GID = 65534  # "nobody": owns nothing the sandbox can see
SANDBOX_HOSTNAME = "mlestar-sandbox"
PROBE_TIMEOUT = 30.0  # seconds for a probe (bwrap, cgroups, interpreter discovery)
CGROUP_PREFIX = "mlestar-"  # job cgroups are "<prefix><app pid>-<n>" under the app's own cgroup

# The project folder (holding mlestar_core, the run store, .streamlit/secrets.toml): never bound.
PROJECT_DIR = Path(__file__).resolve().parents[1]

# What the interpreter may need from /etc; everything else there stays invisible. passwd and group
# are generated (only "nobody"), so the host's account names are not shown either.
_ETC_ENTRIES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d",  # the dynamic loader
    "alternatives",  # targets of /usr/bin links such as awk or python3 on Debian
    # Certificates, should a script use TLS; not all of /etc/ssl: its private/ folder is root's, and
    # the sandbox's uid maps to the app's (root here), so it would be readable.
    "ssl/certs", "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf", "pki/tls/certs", "pki/ca-trust",
    "localtime", "timezone",  # time zone for datetime/pandas
    "nsswitch.conf", "host.conf", "hosts", "gai.conf",  # name service lookups (localhost only; no network)
    "mime.types", "os-release",
)  # fmt: skip
_TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


# ---------------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxStatus:
    """What is enforced for the scripts of one executor, and a plain-language `message` about it."""

    requested: str  # "auto", "bwrap" or "none" (after the MLESTAR_SANDBOX override)
    mode: str  # what runs: "bwrap" or "none"
    user_namespace: bool  # own user namespace, uid 65534, no capabilities
    pid_namespace: bool  # own PID namespace: the app and other processes are invisible
    network_isolated: bool  # own network namespace with only a loopback device
    filesystem_isolated: bool  # only the interpreter, the working folder and the inputs are visible
    inputs_read_only: str  # "read-only bind mount" or "tamper detection only"
    memory_limit: str  # "cgroup v1", "cgroup v2" or "summed RSS"
    process_limit: str  # "pids cgroup v1/v2", "RLIMIT_NPROC" or "none"
    disk_limit: str  # how disk writes in the working folder are capped
    cpu_backstop: str  # how CPU time is bounded when the app's own timeout cannot act
    dies_with_app: str  # what happens to a script's processes when the app is killed
    app_environ_hidden: bool  # whether scripts are unable to read the app's /proc/<pid>/environ
    problems: tuple[str, ...] = ()  # why a layer is missing (probe failures), for the log and the UI
    message: str = ""  # one paragraph for the UI and README: what is and is NOT protected

    @property
    def sandboxed(self) -> bool:
        return self.mode == "bwrap"

    @property
    def fully_enforced(self) -> bool:
        """Sandbox and cgroup limits both active: the configuration the issue asks for."""
        return self.sandboxed and self.memory_limit.startswith("cgroup") and self.process_limit.startswith("pids")

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "sandboxed": self.sandboxed, "fully_enforced": self.fully_enforced}


def resolve_mode(sandbox: str | None) -> str:
    """The requested mode: the argument if given, else $MLESTAR_SANDBOX, else "auto"."""
    value = sandbox if sandbox is not None else os.environ.get(SANDBOX_ENV, "").strip().lower() or "auto"
    if value not in MODES:
        source = "sandbox" if sandbox is not None else SANDBOX_ENV
        raise ValueError(f"{source} must be one of {', '.join(MODES)}, got {value!r}")
    return value


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def build_status(requested: str, *, use_cgroups: bool = True, network: bool = False,
                 strict: bool = True) -> SandboxStatus:
    """Probe (once per process) and describe what an executor with these settings enforces.

    With `strict`, raises RuntimeError when "bwrap" is requested explicitly and bubblewrap does not
    work here (an explicit request is never downgraded silently); otherwise that is reported.
    """
    problems: list[str] = []
    bwrap_ok, bwrap_why = probe_bwrap() if requested != "none" else (False, "sandbox='none' was requested")
    if requested == "bwrap" and not bwrap_ok and strict:
        raise RuntimeError(f"sandbox='bwrap' was requested but bubblewrap does not work here: {bwrap_why}")
    if not bwrap_ok:
        problems.append(f"bubblewrap sandbox off: {bwrap_why}")
    elif "cannot forbid" in bwrap_why:
        problems.append(bwrap_why)
    groups = probe_cgroups() if use_cgroups else CgroupSupport(problems=("cgroups disabled by the caller",))
    problems.extend(groups.problems)
    mode = "bwrap" if bwrap_ok else "none"
    sandboxed = mode == "bwrap"
    root = is_root()
    memory = f"cgroup {groups.memory_kind}" if groups.memory_kind else "summed RSS"
    if groups.pids_kind:
        procs = f"pids cgroup {groups.pids_kind}"
    elif root:
        procs = "none"  # RLIMIT_NPROC does not apply to root (nor to root mapped into a user namespace)
    else:
        procs = "RLIMIT_NPROC"
    launcher = "prlimit" if _prlimit() else "python launcher"
    disk = f"RLIMIT_FSIZE ({launcher}) + working-folder watchdog"
    cpu = f"RLIMIT_CPU ({launcher})"
    if sandboxed:
        dies = "whole tree (bwrap --die-with-parent + PID namespace)"
    elif groups.memory_kind or groups.pids_kind:
        dies = "direct child only; leftovers are killed through their cgroup at the next app start"
    else:
        dies = "direct child only (parent-death signal); escaped grandchildren live on to their RLIMIT_CPU"
    environ_hidden = sandboxed or not root  # root reads non-dumpable processes' /proc files anyway
    status = SandboxStatus(
        requested=requested, mode=mode, user_namespace=sandboxed, pid_namespace=sandboxed,
        network_isolated=sandboxed and not network, filesystem_isolated=sandboxed,
        inputs_read_only="read-only bind mount" if sandboxed else "tamper detection only",
        memory_limit=memory, process_limit=procs, disk_limit=disk, cpu_backstop=cpu, dies_with_app=dies,
        app_environ_hidden=environ_hidden, problems=tuple(problems),
    )
    return _with_message(status, root=root, network=network)


def _with_message(s: SandboxStatus, *, root: bool, network: bool) -> SandboxStatus:
    memory = f"Memory is capped per script tree by {s.memory_limit}" + (
        " (the watchdog kills the tree when the sum of its processes' RSS passes the cap)"
        if s.memory_limit == "summed RSS" else "")
    procs = ("the number of processes is NOT capped (no pids cgroup, and RLIMIT_NPROC does not bind root)"
             if s.process_limit == "none" else f"processes by {s.process_limit}")
    limits = f"{memory}, {procs}, disk writes by {s.disk_limit}, CPU time by {s.cpu_backstop}."
    if s.sandboxed:
        net = ("Network: shared with the host (network=True)." if network
               else "They have no network (own network namespace with only loopback).")
        text = (
            "Scripts run in a bubblewrap sandbox: own user, PID, network, IPC and UTS namespaces, as uid 65534 "
            "with no capabilities. They see only the system libraries, the Python interpreter and its packages, "
            "their own working folder and, read-only, their inputs: not the run store, other runs, hold-out "
            f"answers, the project folder, secrets or other processes. {net} {limits} Killing the app kills "
            "every script process. NOT protected: bugs in the kernel (the sandbox shares it), CPU side channels, "
            "and a script using all the CPU, memory and disk it is allowed within its limits.")
        if not s.memory_limit.startswith("cgroup") or s.process_limit == "none":
            text += " Without cgroups, limits are weaker than intended: " + "; ".join(s.problems) + "."
        return dataclasses.replace(s, message=text)
    why = "; ".join(p for p in s.problems if p.startswith("bubblewrap")) or "sandbox off"
    text = (
        f"SANDBOX OFF ({why}). Scripts run as this app's own OS user"
        + (" (root)" if root else "")
        + " with the host's file system and network: they CAN read every file this user can read - the run "
        "store (mlestar.db), other runs, hold-out answers, .streamlit/secrets.toml - and send it anywhere. "
        "Still enforced: a scrubbed environment (no API keys passed), secrets scrubbed from their output, "
        f"timeouts. {limits} Writes to the task inputs are detected (size, mtime, ctime, inode), not prevented. "
        f"When the app dies: {s.dies_with_app}."
        + (" As root, scripts can also read the app's /proc/<pid>/environ despite it being non-dumpable."
           if root else "")
        + " Install bubblewrap (scripts/setup_sandbox.sh) to isolate scripts.")
    return dataclasses.replace(s, message=text)


def status(sandbox: str | None = None, *, use_cgroups: bool = True, network: bool = False) -> SandboxStatus:
    """The status a LocalExecutor with these arguments would have (default: $MLESTAR_SANDBOX or auto).

    Never raises for "bwrap": when it cannot work here, `mode` is "none" and `problems`/`message` say why.
    The probes behind it run once per process.
    """
    return build_status(resolve_mode(sandbox), use_cgroups=use_cgroups, network=network, strict=False)


# ---------------------------------------------------------------------------------------------------
# bubblewrap
# ---------------------------------------------------------------------------------------------------

_probe_lock = threading.Lock()
_bwrap_probe: tuple[bool, str] | None = None


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def _system_binds() -> list[str]:
    """Read-only /usr, the top-level /bin, /lib* links (as links when they are links) and a minimal /etc."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _TOP_LEVEL_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in _ETC_ENTRIES:
        path = Path("/etc") / name
        if path.is_symlink():  # e.g. localtime -> /usr/share/zoneinfo/..., os-release -> ../usr/lib/os-release
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.exists():
            args += ["--ro-bind", str(path), str(path)]
    for path in sorted(Path("/etc").glob("python3*")):  # Debian's interpreter imports its sitecustomize there
        if path.is_dir() and not path.is_symlink():
            args += ["--ro-bind", str(path), str(path)]
    return args


# bwrap >= 0.8 (Debian 12) knows --disable-userns; the probe drops it for older ones (Ubuntu 22.04: 0.6).
_disable_userns = True


def _base_flags(network: bool) -> list[str]:
    flags = [
        "--unshare-all",  # user, pid, net, ipc, uts and cgroup namespaces
        "--unshare-user",  # required, not just "try": --uid and --cap-drop mean nothing without it
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
        "--hostname", SANDBOX_HOSTNAME,
        "--cap-drop", "ALL",
        "--die-with-parent",  # both bwrap processes get SIGKILL as parent-death signal
        "--new-session",  # no controlling terminal: no TIOCSTI keystroke injection
        "--proc", "/proc",  # a procfs of the new PID namespace: only the sandbox's own processes
        "--dev", "/dev",  # null, zero, random, urandom, tty, shm: no host devices
        "--tmpfs", "/tmp",
    ]  # fmt: skip
    if _disable_userns:
        flags.insert(2, "--disable-userns")  # no nested user namespaces: less of the kernel within reach
    if network:
        flags.insert(1, "--share-net")
    return flags


def probe_bwrap() -> tuple[bool, str]:
    """Whether bubblewrap works here with the exact flags jobs use (cached); the reason when not."""
    global _bwrap_probe
    with _probe_lock:
        if _bwrap_probe is None:
            _bwrap_probe = _probe_bwrap_uncached()
            log.info("bubblewrap probe: %s", _bwrap_probe)
        return _bwrap_probe


def _probe_bwrap_uncached() -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, f"bubblewrap needs Linux (this is {sys.platform})"
    bwrap = bwrap_path()
    if bwrap is None:
        return False, "bwrap is not installed (run scripts/setup_sandbox.sh)"
    true = shutil.which("true", path="/usr/bin:/bin")
    if true is None:
        return False, "no /usr/bin/true to probe with"
    global _disable_userns
    with tempfile.TemporaryDirectory(prefix="mlestar-probe-") as tmp:
        work = Path(tmp).resolve()
        for _ in range(2):
            argv = [bwrap, *_base_flags(network=False), *_system_binds(),
                    "--bind", str(work), str(work), "--chdir", str(work), "--", true]
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT,
                                      env={"PATH": os.defpath, "LANG": "C.UTF-8"})
            except (OSError, subprocess.SubprocessError) as exc:
                return False, f"bwrap could not run: {type(exc).__name__}: {exc}"
            err = proc.stderr.decode("utf-8", "replace").strip() or f"exit code {proc.returncode}"
            if proc.returncode != 0 and _disable_userns and "disable-userns" in err:
                _disable_userns = False  # an older bwrap: the rest of the sandbox still holds
                continue
            break
    if proc.returncode != 0:
        return False, f"bwrap failed ({err}); unprivileged user namespaces may be disabled"
    extra = "" if _disable_userns else "; this bwrap cannot forbid nested user namespaces (--disable-userns)"
    return True, f"bubblewrap works ({bwrap}){extra}"


@dataclass(frozen=True)
class InterpreterLayout:
    """What of the host an interpreter needs inside the sandbox (found by running it once)."""

    python: str  # the interpreter path as given (a venv's bin/python stays a venv path)
    binds: tuple[str, ...]  # directories to bind read-only at their own path
    executable: str  # the real file behind `python`


_layouts: dict[str, InterpreterLayout] = {}
_layout_lock = threading.Lock()

_DISCOVER = (
    "import json, os, sys; print(json.dumps({'prefixes': [sys.prefix, sys.base_prefix, sys.exec_prefix, "
    "sys.base_exec_prefix], 'executable': os.path.realpath(sys.executable), 'path': sys.path}))"
)


def _covered(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _forbidden(path: str, prefixes: Sequence[str]) -> str | None:
    """Why `path` must not be bound into the sandbox, or None when it may."""
    p = Path(path)
    if p == Path("/"):
        return "it is the root folder"
    for secret in (PROJECT_DIR, Path.home().resolve(), Path.cwd().resolve()):
        if secret.is_relative_to(p):  # binding it (or a parent of it) would expose that folder
            return f"it is or contains {secret}"
    # A venv inside the project folder is fine; anything else there (an editable install's source) is not.
    if p.is_relative_to(PROJECT_DIR) and not any(p.is_relative_to(Path(pre)) for pre in prefixes):
        return "it lies in the project folder outside the interpreter's environment"
    return None


def interpreter_layout(python: str) -> InterpreterLayout:
    """Run `python` once (cached per path) and list the folders it needs: prefixes and sys.path entries.

    The project folder is never bound even when the venv lives inside it (only the venv is), and no
    entry that contains the project folder, the user's home or our working directory is bound.
    Raises OSError when the interpreter cannot be run.
    """
    with _layout_lock:
        if python in _layouts:
            return _layouts[python]
    try:
        proc = subprocess.run([python, "-c", _DISCOVER], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=PROBE_TIMEOUT, cwd="/", env={"PATH": os.defpath, "LANG": "C.UTF-8"})
    except (OSError, subprocess.SubprocessError) as exc:
        raise OSError(f"could not run {python!r} to find its files: {type(exc).__name__}: {exc}") from exc
    if proc.returncode != 0:
        raise OSError(f"{python!r} failed to report its files: {proc.stderr.decode('utf-8', 'replace')[-500:]}")
    info = json.loads(proc.stdout.decode("utf-8").strip().splitlines()[-1])
    prefixes = [str(Path(p).resolve()) for p in info["prefixes"]]
    # Entries of a venv are kept at their own (unresolved) path too, so the venv's bin/python link resolves.
    wanted = [*info["prefixes"], *prefixes, str(Path(info["executable"]).parent)]
    wanted += [p for p in info["path"] if p and os.path.isabs(p)]
    system = ["/usr", *(f"/{n}" for n in _TOP_LEVEL_LINKS), "/etc"]
    binds: list[str] = []
    for entry in wanted:
        path = os.path.normpath(entry)
        if not os.path.isdir(path):  # e.g. python311.zip that does not exist
            continue
        real = str(Path(path).resolve())
        for candidate in dict.fromkeys((path, real)):
            if _covered(candidate, system) or _covered(candidate, binds):
                continue
            why = _forbidden(candidate, prefixes)
            if why:
                log.warning("not binding %s into the sandbox: %s", candidate, why)
                continue
            binds = [b for b in binds if not _covered(b, [candidate])] + [candidate]
    layout = InterpreterLayout(python=python, binds=tuple(binds), executable=info["executable"])
    with _layout_lock:
        _layouts[python] = layout
    log.info("sandbox binds for %s: %s", python, ", ".join(layout.binds))
    return layout


def _depth(path: str) -> int:
    return len(Path(path).parts)


def bwrap_argv(
    layout: InterpreterLayout,
    workdir: Path,
    inputs: Path | None,
    command: Sequence[str],
    *,
    passwd_fd: int | None = None,
    group_fd: int | None = None,
    network: bool = False,
) -> list[str]:
    """The bwrap command line that runs `command` in `workdir` with only what it needs visible."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise OSError("bwrap is not installed")
    args = [bwrap, *_base_flags(network), *_system_binds()]
    if passwd_fd is not None:
        args += ["--ro-bind-data", str(passwd_fd), "/etc/passwd"]
    if group_fd is not None:
        args += ["--ro-bind-data", str(group_fd), "/etc/group"]
    workdir = Path(workdir).absolute()
    real_work = workdir.resolve()
    mounts: list[tuple[str, str, str]] = [("--ro-bind", p, p) for p in layout.binds]
    mounts.append(("--bind", str(real_work), str(real_work)))
    if workdir != real_work:  # the script's cwd keeps the path the caller used
        mounts.append(("--bind", str(real_work), str(workdir)))
    # Parents before children, like a mount table: a venv inside the working folder stays read-only and a
    # working folder inside an interpreter folder stays writable. The inputs go on top of everything.
    mounts.sort(key=lambda m: _depth(m[2]))
    if inputs is not None:
        mounts.append(("--ro-bind", str(Path(inputs).resolve()), str(workdir / "input")))
    for kind, src, dest in mounts:
        args += [kind, src, dest]
    args += ["--chdir", str(workdir), "--", *command]
    return args


def account_files(home: Path) -> tuple[bytes, bytes]:
    """/etc/passwd and /etc/group for the sandbox: only the sandbox's own user."""
    passwd = f"nobody:x:{SANDBOX_UID}:{SANDBOX_GID}:nobody:{home}:/usr/sbin/nologin\n".encode()
    group = f"nogroup:x:{SANDBOX_GID}:\n".encode()
    return passwd, group


def data_pipe(data: bytes) -> int:
    """A pipe's read end holding `data` (for --ro-bind-data); the caller closes it after the spawn."""
    r, w = os.pipe()
    try:
        if len(data) > 60_000:  # a pipe buffer holds at least 64 KiB; more would block this write
            raise ValueError("data too large for a pipe")
        os.write(w, data)
    finally:
        os.close(w)
    return r


# ---------------------------------------------------------------------------------------------------
# Launcher: rlimits and cgroup membership without preexec_fn
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Per-process rlimits for a job; None = leave as inherited. Values in bytes / seconds / counts."""

    address_space: int | None = None  # RLIMIT_AS
    cpu_seconds: int | None = None  # RLIMIT_CPU soft; the hard limit is a few seconds later (SIGKILL)
    open_files: int | None = None  # RLIMIT_NOFILE
    file_size: int | None = None  # RLIMIT_FSIZE
    processes: int | None = None  # RLIMIT_NPROC (only when no pids cgroup: it is per user, not per tree)
    core: int = 0  # RLIMIT_CORE: a crashing script must not dump gigabytes of core

    def pairs(self) -> list[tuple[str, int, int]]:
        """(resource name, soft, hard), each clamped to what this process may grant its children."""
        out: list[tuple[str, int, int]] = []
        wanted = {"as": (self.address_space, self.address_space),
                  "cpu": (self.cpu_seconds, None if self.cpu_seconds is None else self.cpu_seconds + CPU_HARD_GRACE),
                  "nofile": (self.open_files, self.open_files),
                  "fsize": (self.file_size, self.file_size),
                  "nproc": (self.processes, self.processes),
                  "core": (self.core, self.core)}
        for name, (soft, hard) in wanted.items():
            if soft is None or hard is None:
                continue
            _, cur_hard = resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}"))
            if cur_hard != resource.RLIM_INFINITY:  # a child may only lower its hard limit
                soft, hard = min(soft, cur_hard), min(hard, cur_hard)
            out.append((name, soft, hard))
        return out


CPU_HARD_GRACE = 5  # seconds between SIGXCPU (soft RLIMIT_CPU) and SIGKILL (hard)

_SH_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 126; shift; done; shift; exec "$@"'

# Used where util-linux prlimit is missing (e.g. macOS): same job, ~20 ms more per start.
_PY_LAUNCHER = r"""
import os, resource, sys
args = sys.argv[1:]
cut = args.index("--")
spec, cmd = args[:cut], args[cut + 1:]
key = ""
try:
    for item in spec:
        key, _, value = item.partition("=")
        if key == "cgroup":
            with open(value, "w") as f:
                f.write(str(os.getpid()))
        elif key == "pdeathsig":
            import ctypes, signal
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
            if os.getppid() != int(value):  # the app died before prctl: do not start at all
                os._exit(126)
        else:
            soft, _, hard = value.partition(":")
            resource.setrlimit(getattr(resource, "RLIMIT_" + key.upper()), (int(soft), int(hard)))
except Exception as exc:
    sys.stderr.write(f"mlestar-launch: could not set {key}: {exc}\n")
    os._exit(126)
try:
    os.execv(cmd[0], cmd)
except OSError as exc:
    sys.stderr.write(f"mlestar-launch: could not start {cmd[0]!r}: {exc}\n")
    os._exit(127)
"""


def _prlimit() -> str | None:
    return shutil.which("prlimit") if sys.platform.startswith("linux") else None


def launcher_argv(
    command: Sequence[str],
    limits: Limits,
    cgroup_procs: Sequence[str] = (),
    *,
    parent_death: bool = False,
    force_python: bool = False,
) -> list[str]:
    """argv that joins the cgroups, sets the rlimits (and a parent-death SIGKILL), then execs `command`."""
    prlimit, sh = _prlimit(), shutil.which("sh")
    setpriv = shutil.which("setpriv") if parent_death else None
    if prlimit and sh and (setpriv or not parent_death) and not force_python:
        out = [sh, "-c", _SH_JOIN, "mlestar-launch", *cgroup_procs, "--"]
        if setpriv:
            out += [setpriv, "--pdeathsig", "KILL", "--"]
        out.append(prlimit)
        out += [f"--{name}={soft}:{hard}" for name, soft, hard in limits.pairs()]
        return [*out, "--", *command]
    spec = [f"cgroup={p}" for p in cgroup_procs]
    if parent_death and sys.platform.startswith("linux"):
        spec.append(f"pdeathsig={os.getpid()}")
    spec += [f"{name}={soft}:{hard}" for name, soft, hard in limits.pairs()]
    return [sys.executable, "-I", "-S", "-c", _PY_LAUNCHER, *spec, "--", *command]


# ---------------------------------------------------------------------------------------------------
# cgroups
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hierarchy:
    kind: str  # "v1" or "v2"
    path: Path  # the app's own cgroup in this hierarchy; job cgroups go directly below it


@dataclass(frozen=True)
class CgroupSupport:
    memory: _Hierarchy | None = None
    pids: _Hierarchy | None = None
    problems: tuple[str, ...] = ()

    @property
    def memory_kind(self) -> str | None:
        return self.memory.kind if self.memory else None

    @property
    def pids_kind(self) -> str | None:
        return self.pids.kind if self.pids else None


_cgroup_probe: CgroupSupport | None = None
_seq = itertools.count(1)


def _own_cgroups() -> tuple[dict[str, Path], Path | None, list[str]]:
    """(v1 controller -> the app's cgroup folder, the app's v2 cgroup folder, problems)."""
    try:
        own = Path("/proc/self/cgroup").read_text()
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError as exc:
        return {}, None, [f"cgroups unreadable: {exc}"]
    v1, v2 = parse_cgroups(own, mountinfo)
    return v1, v2, []


def parse_cgroups(proc_cgroup: str, mountinfo: str) -> tuple[dict[str, Path], Path | None]:
    """Where this process's cgroups are, from /proc/self/cgroup and /proc/self/mountinfo.

    Handles hierarchies mounted at their root and container mounts whose root is the container's
    own cgroup (then the process's path is taken relative to that root).
    """
    mounts: list[tuple[str, str, str, set[str]]] = []  # (fstype, root, mount point, super options)
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(parts) >= 5 and len(rparts) >= 3 and rparts[0] in ("cgroup", "cgroup2"):
            mounts.append((rparts[0], parts[3], parts[4].replace("\\040", " "), set(rparts[2].split(","))))
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for line in proc_cgroup.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        for fstype, root, point, opts in mounts:
            if path != root and not path.startswith(root.rstrip("/") + "/"):
                continue
            rel = path[len(root):].lstrip("/") if root != "/" else path.lstrip("/")
            if hid == "0" and controllers == "" and fstype == "cgroup2":
                v2 = Path(point) / rel
            elif fstype == "cgroup":
                for c in controllers.split(","):
                    if c in ("memory", "pids") and c in opts:
                        v1[c] = Path(point) / rel
    return v1, v2


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _try_hierarchy(controller: str, v1: dict[str, Path], v2: Path | None) -> tuple[_Hierarchy | None, str]:
    """The hierarchy to use for one controller (v2 preferred), after a real mkdir/limit/rmdir test."""
    reasons: list[str] = []
    candidates: list[_Hierarchy] = []
    if v2 is not None:
        try:
            available = (v2 / "cgroup.controllers").read_text().split()
        except OSError:
            available = []
        if controller in available:
            candidates.append(_Hierarchy("v2", v2))
        else:
            reasons.append(f"the {controller} controller is not delegated to cgroup v2 {v2}")
    if controller in v1:
        candidates.append(_Hierarchy("v1", v1[controller]))
    else:
        reasons.append(f"no cgroup v1 {controller} hierarchy")
    for h in candidates:
        test = h.path / f"{CGROUP_PREFIX}probe-{os.getpid()}"
        try:
            if h.kind == "v2":
                enabled = (h.path / "cgroup.subtree_control").read_text().split()
                if controller not in enabled:  # EBUSY while the app's cgroup holds processes (no-internal rule)
                    _write(h.path / "cgroup.subtree_control", f"+{controller}")
            test.mkdir(exist_ok=True)
            try:
                limit_file = {"memory": {"v1": "memory.limit_in_bytes", "v2": "memory.max"},
                              "pids": {"v1": "pids.max", "v2": "pids.max"}}[controller][h.kind]
                _write(test / limit_file, str(64 * 2**20) if controller == "memory" else "64")
                if not os.access(test / "cgroup.procs", os.W_OK):
                    raise PermissionError(f"{test / 'cgroup.procs'} is not writable")
            finally:
                test.rmdir()
            return h, ""
        except OSError as exc:
            reasons.append(f"cgroup {h.kind} {controller} at {h.path} not writable ({exc.strerror or exc})")
    return None, "; ".join(reasons)


def probe_cgroups() -> CgroupSupport:
    """Which controllers we can use for per-job cgroups (cached); cleans stale job cgroups on first call."""
    global _cgroup_probe
    with _probe_lock:
        if _cgroup_probe is not None:
            return _cgroup_probe
        if not sys.platform.startswith("linux"):
            _cgroup_probe = CgroupSupport(problems=(f"no cgroups on {sys.platform}",))
            return _cgroup_probe
        v1, v2, problems = _own_cgroups()
        memory, why_mem = _try_hierarchy("memory", v1, v2)
        pids, why_pids = _try_hierarchy("pids", v1, v2)
        if memory is None:
            problems.append(f"no memory cgroup ({why_mem}): memory is capped by summed RSS")
        if pids is None:
            problems.append(f"no pids cgroup ({why_pids})")
        _cgroup_probe = CgroupSupport(memory=memory, pids=pids, problems=tuple(problems))
        log.info("cgroup probe: memory=%s pids=%s %s", _cgroup_probe.memory_kind, _cgroup_probe.pids_kind,
                 "; ".join(problems))
    cleanup_stale_cgroups()
    return _cgroup_probe


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pids(folder: Path) -> list[int]:
    try:
        return [int(x) for x in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _kill_and_remove(folder: Path, wait: float = 2.0) -> bool:
    """SIGKILL whatever is left in a job cgroup and remove it; False if it could not be removed."""
    deadline = time.monotonic() + wait
    while True:
        pids = _read_pids(folder)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            folder.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def cleanup_stale_cgroups() -> int:
    """Remove job cgroups left by a crashed app (their owner pid is gone), killing what still runs there."""
    support = _cgroup_probe
    if support is None:
        return 0
    removed = 0
    for h in {support.memory, support.pids} - {None}:
        assert h is not None
        try:
            entries = list(h.path.glob(f"{CGROUP_PREFIX}*"))
        except OSError:
            continue
        for entry in entries:
            owner = entry.name[len(CGROUP_PREFIX):].split("-")[0]
            if not entry.is_dir() or not owner.isdigit() or int(owner) == os.getpid() or _pid_alive(int(owner)):
                continue
            if _kill_and_remove(entry):
                removed += 1
                log.info("removed stale job cgroup %s", entry)
            else:
                log.warning("could not remove stale job cgroup %s", entry)
    return removed


@dataclass
class JobCgroup:
    """The cgroups of one job: created before it starts, removed (killing leftovers) after it ends."""

    folders: dict[str, Path] = field(default_factory=dict)  # controller -> folder
    kinds: dict[str, str] = field(default_factory=dict)  # controller -> "v1" / "v2"
    memory_bytes: int | None = None

    @classmethod
    def create(cls, support: CgroupSupport, memory_bytes: int | None, max_procs: int | None) -> JobCgroup:
        """Make the job's cgroup(s) and set their limits. Raises OSError when that fails."""
        name = f"{CGROUP_PREFIX}{os.getpid()}-{next(_seq)}"
        cg = cls(memory_bytes=memory_bytes)
        try:
            if support.memory is not None and memory_bytes:
                cg._make("memory", support.memory, name)
                cg._set_memory(memory_bytes)
            if support.pids is not None and max_procs:
                cg._make("pids", support.pids, name)
                _write(cg.folders["pids"] / "pids.max", str(int(max_procs)))
        except OSError:
            cg.remove()
            raise
        return cg

    def _make(self, controller: str, h: _Hierarchy, name: str) -> None:
        folder = h.path / name
        if h.kind == "v2" and any(f == folder for f in self.folders.values()):
            self.folders[controller], self.kinds[controller] = folder, h.kind
            return
        folder.mkdir()
        self.folders[controller], self.kinds[controller] = folder, h.kind

    def _set_memory(self, limit: int) -> None:
        folder, kind = self.folders["memory"], self.kinds["memory"]
        if kind == "v1":
            _write(folder / "memory.limit_in_bytes", str(limit))
            try:  # memory + swap: without it the cap could be dodged by swapping
                _write(folder / "memory.memsw.limit_in_bytes", str(limit))
            except OSError:
                pass
        else:
            _write(folder / "memory.max", str(limit))
            for fname, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                try:  # oom.group: an OOM kill takes the whole job, like our v1 watchdog does
                    _write(folder / fname, value)
                except OSError:
                    pass

    @property
    def procs_files(self) -> list[str]:
        return list(dict.fromkeys(str(f / "cgroup.procs") for f in self.folders.values()))

    @property
    def memory_kind(self) -> str | None:
        return self.kinds.get("memory")

    def pids(self) -> set[int]:
        out: set[int] = set()
        for folder in dict.fromkeys(self.folders.values()):
            out.update(_read_pids(folder))
        return out

    def oom_kills(self) -> int:
        """How many processes the kernel killed for this job's memory cap (0 when not known)."""
        folder = self.folders.get("memory")
        if folder is None:
            return 0
        name = "memory.oom_control" if self.kinds["memory"] == "v1" else "memory.events"
        try:
            lines = (folder / name).read_text().splitlines()
        except OSError:
            return 0
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        for folder in dict.fromkeys(self.folders.values()):
            if not _kill_and_remove(folder):
                log.warning("could not remove job cgroup %s (it is cleaned at the next start)", folder)
        self.folders.clear()
