"""Load and soak: N runs at once and several browser sessions following them, for a sustained period.

What it does, all on a fresh temporary store folder (`MLESTAR_HOME`, the folder the app and the CLI both
resolve, see `cli.default_store_dir`; the CLI also gets it as `--store`):

- starts `streamlit run app.py` on a free port (its RunManager owns the runs started in the app);
- keeps `--runs` runs live for the whole period (default 4, offline brain, the small bundled demo tasks,
  small knobs: M=2 T=1 K=1 L=1 R=1, one worker, a `--budget` time budget so a run takes ~2-3 minutes here),
  starting a new one as soon as one ends: `--app-share` of them (default half) through the app, the way a
  user does it (a thread with its own headless chromium on the New run page: bundled demo task, knobs, run
  name, Start run; Home's one-click demo run if that fails), the others as `python -m mlestar_core run ...`
  CLI processes on the same store. A UI start takes 15 s to 2 min on a loaded machine: meanwhile CLI runs
  fill the free slot, so at least `--runs` are live (one more for a while when the app's run lands);
- holds `--browsers` Chromium sessions (default 3; each a thread with its own Playwright and chromium)
  following the live runs: every `--nav-every` seconds one reloads, opens another run's dashboard, or
  another page of the run (Refinement, Ablation, Brain calls, Models, Ensemble, Home, History), timing the
  first element drawn and the end of the script run, and noting any exception box; in between, the pages'
  live fragments poll the store on their own;
- a follower thread in this process polls `events_after` for every run, as a page does;
- samples every `--sample-every` seconds the streamlit server's RSS (and its children's), open files,
  threads and CPU, the WAL and database sizes, the live runs (by their status in the store) and the load.

The measured period (`--minutes`, default 5) starts once `--runs` runs are live (or after `--ramp-timeout`).
Then the live runs are stopped (Stop button in the app, SIGINT for the CLI), the server killed, and the store
checked:

- per run: seqs strictly increasing; every `script_executed` event's execution row exists and every
  execution row has its event; `run_finished` and each `step_done` key at most once, no two identical
  (kind, payload) events of those kinds; every step stored as done has its `step_done` event;
- the follower saw every run's events in order, none skipped (a later seq seen before an earlier one);
- "database is locked" anywhere: the server's log, the CLI logs, run errors, events, rendered pages;
- memory: the server's RSS first/last/max and its slope (MB/min) over the period ("flat": the second half
  grows by less than max(1 MB, 2 % of the mean) per minute; periods under 2.5 min are too short to tell).

Figures: runs held concurrently, browser sessions held, page times, events written and events/s sustained by
the store (the pipeline writes few: ~1 event/s for 4 runs; the micro-benchmark shows the store's ceiling).

`--restart-every M` also restarts the app server every M minutes: its runs must resume (the
checks above then also cover a resume), the CLI's must not be taken over.

Finally the pure-store micro-benchmark (`bench/bench_store.py`: K processes x threads writing events and
executions, readers following) runs for `--store-seconds` (0 skips it).

    .venv/bin/python bench/bench_soak.py [--minutes 5] [--runs 4] [--browsers 3] [--app-share 0.5]
                                         [--budget 120] [--store-seconds 10] [--keep]

Figures are printed and written to bench/results/soak-<time>.json. Exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests", ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import bench_store  # noqa: E402
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, free_port, wait_for_port  # noqa: E402

from mlestar_core.store import Store  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEMOS = ["breast-cancer", "wine-cultivar", "diabetes-progression"]  # the small ones
ACTIVE = ("created", "running", "waiting", "paused")
LOCKED = "database is locked"
ONCE_KINDS = ("run_finished", "step_done")  # run_started comes again on a resume (its `resumed` may be false)
# What a watching session does, in turn, every --nav-every seconds.
WATCH_CYCLE = ["run", "reload", "attempts", "next_run", "ablation", "home", "brain_calls", "reload", "run",
               "history", "models", "next_run", "ensemble"]
RUN_PAGES = ("run", "attempts", "ablation", "brain_calls", "models", "ensemble")
VERDICT = {True: "flat", False: "GROWING", None: "too short to tell"}
FIRST_ELEMENT = '[data-testid="stMain"] [data-testid="stElementContainer"]'  # the page's first element drawn
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


@dataclass
class Knobs:
    models: int = 2
    outer: int = 1
    inner: int = 1
    solutions: int = 1
    rounds: int = 1
    budget: int = 120
    workers: int = 1

    def ui(self) -> list[tuple[str, int]]:
        """New run page labels and values."""
        return [("M · models", self.models), ("T · outer steps", self.outer), ("K · attempts per block", self.inner),
                ("L · solution tracks", self.solutions), ("R · ensemble rounds", self.rounds),
                ("Time budget (s)", self.budget), ("Workers", self.workers)]

    def cli(self) -> list[str]:
        return ["-M", str(self.models), "-T", str(self.outer), "-K", str(self.inner), "-L", str(self.solutions),
                "-R", str(self.rounds), "--time-budget", str(self.budget), "--workers", str(self.workers)]


@dataclass
class Launched:
    """One run this bench started."""

    via: str  # "app" or "cli"
    demo: str
    started: float
    run_id: str | None = None
    proc: subprocess.Popen | None = None  # CLI only
    log: Path | None = None  # CLI stderr
    start_seconds: float | None = None  # how long starting it took (the UI flow, or the CLI until its run row)
    method: str = ""  # "new_run page", "home demo button", "cli"
    ended: float | None = None
    stop_requested: bool = False


class Watcher(threading.Thread):
    """One browser session following the live runs, in its own thread with its own Playwright and chromium
    (Playwright's sync API is per thread): a navigation every `every` seconds, the page's fragments polling
    in between. It follows the runs the store says are live; `soak.url` changes when the server restarts."""

    def __init__(self, idx: int, soak: Soak, every: float, first_at: float) -> None:
        super().__init__(daemon=True, name=f"watcher-{idx}")
        self.idx, self.soak, self.every, self.next_at = idx, soak, every, first_at
        self.step = 0
        self.rotation = 0
        self.run_id: str | None = None
        self.kind = ""  # the navigation in progress
        self.page: Any = None
        self.navigations = 0
        self.errors: list[str] = []
        self.exceptions: list[str] = []  # st.exception boxes seen in pages
        self.crashes = 0
        self.last_failed = False
        self.held = False  # the session was open and working when the period ended
        self.opened = threading.Event()
        self.halt = threading.Event()
        self.latency: dict[str, list[float]] = {}  # s from the navigation until the script run is over
        self.first: dict[str, list[float]] = {}  # s until its first element is drawn

    def run(self) -> None:
        from playwright.sync_api import sync_playwright

        try:
            store = Store(self.soak.store_dir)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport=VIEWPORT)
                self._new_page(context)
                self.opened.set()
                with contextlib.suppress(Exception):  # a session of the app while the runs are being started
                    self.page.goto(self.soak.url)
                while not self.halt.is_set():
                    if time.time() >= self.next_at:
                        self.next_at = time.time() + self.every
                        try:
                            live = [r["id"] for r in reversed(store.list_runs()) if r["status"] in ACTIVE]
                            watcher_step(self, self.soak.url, live)
                            self.last_failed = False
                        except Exception as exc:
                            self.last_failed = True
                            self.errors.append(f"{self.kind} {self.run_id}: {type(exc).__name__}: {str(exc)[:300]}")
                            if self.page.is_closed() or self.crashes:
                                self._new_page(context)
                    self.halt.wait(0.5)
                self.held = not self.page.is_closed() and self.navigations > 0 and not self.last_failed
                browser.close()
        except Exception as exc:
            self.errors.append(f"session: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            self.opened.set()

    def _new_page(self, context: Any) -> None:
        self.page = context.new_page()
        self.page.set_default_timeout(90_000)
        self.page.on("crash", lambda _p: setattr(self, "crashes", self.crashes + 1))


# -- processes -------------------------------------------------------------------------------------


class Server:
    """`streamlit run app.py` in its own process group, MLESTAR_HOME = the temporary store."""

    def __init__(self, store_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "MLESTAR_HOME": str(store_dir), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(self.port),
               "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_for_port(self.port, timeout=90, proc=self.proc)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        self._out.close()


def process_figures(p: psutil.Process) -> dict[str, Any]:
    """RSS of the process and of all its descendants (MB), its open files and threads, its CPU % since the last
    call (100 = one core)."""
    try:
        with p.oneshot():
            own, fds, threads = p.memory_info().rss / 2**20, p.num_fds(), p.num_threads()
            cpu = p.cpu_percent(None)
        kids = 0.0
        for c in p.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                kids += c.memory_info().rss / 2**20
        return {"rss_mb": own, "children_rss_mb": round(kids, 1), "fds": fds, "threads": threads, "cpu_pct": cpu}
    except psutil.Error:
        return {"rss_mb": None, "children_rss_mb": 0.0, "fds": None, "threads": None, "cpu_pct": None}


class Sampler(threading.Thread):
    """Every few seconds: server RSS, WAL/db size, live runs, events so far."""

    def __init__(self, store_dir: Path, server_pid: int, every: float) -> None:
        super().__init__(daemon=True, name="sampler")
        self.store_dir, self.pid, self.every = store_dir, server_pid, every
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        store = Store(self.store_dir)
        process: psutil.Process | None = None
        while not self.halt.is_set():
            try:
                if process is None or process.pid != self.pid:  # the server restarted
                    process = psutil.Process(self.pid)
                proc = process_figures(process)
                runs = store.list_runs()
                row = store._one("SELECT COALESCE(MAX(seq), 0) AS n FROM events")
                wal = self.store_dir / "mlestar.db-wal"
                self.samples.append({
                    "t": time.time(), "pid": self.pid, "load1": os.getloadavg()[0], **proc,
                    "live_runs": sum(r["status"] in ACTIVE for r in runs),
                    "max_seq": int(row["n"]) if row else 0,
                    "wal_mb": round(wal.stat().st_size / 1e6, 2) if wal.exists() else 0.0,
                    "db_mb": round((self.store_dir / "mlestar.db").stat().st_size / 1e6, 2),
                })
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.halt.wait(self.every)


class Follower(threading.Thread):
    """Follows every run's events with events_after, as a page does; records what it saw, in order."""

    def __init__(self, store_dir: Path, every: float = 1.0) -> None:
        super().__init__(daemon=True, name="follower")
        self.store_dir, self.every = store_dir, every
        self.seen: dict[str, list[int]] = {}
        self.problems: list[str] = []
        self.errors: list[str] = []
        self.polls = 0
        self.halt = threading.Event()

    def run(self) -> None:
        store = Store(self.store_dir)
        while True:
            final = self.halt.is_set()
            try:
                for run in store.list_runs():
                    seen = self.seen.setdefault(run["id"], [])
                    for e in store.events_after(run["id"], seen[-1] if seen else 0):
                        if seen and e["seq"] <= seen[-1]:
                            self.problems.append(f"{run['id']}: seq {e['seq']} after {seen[-1]}")
                        seen.append(e["seq"])
                self.polls += 1
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            if final:
                return
            self.halt.wait(self.every)


# -- the browser -----------------------------------------------------------------------------------


def wait_drawn(page: Any, timeout: float = 90_000) -> None:
    page.wait_for_selector('[data-testid="stMain"]', timeout=timeout)
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_timeout(200)


def choose(page: Any, label: str, option: str) -> None:
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).locator('[role="combobox"]').click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()
    wait_drawn(page)


def set_number(page: Any, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_drawn(page)


def run_id_from_url(url: str) -> str:
    m = re.search(r"[?&]run=([^&#]+)", url)
    if not m:
        raise RuntimeError(f"no run id in {url}")
    return m.group(1)


def start_in_app(page: Any, url: str, demo: str, knobs: Knobs, name: str) -> str:
    """What a user does: New run, bundled demo task, small knobs, a name, Start run. Returns the run id."""
    page.goto(f"{url}/new_run")
    wait_drawn(page)
    page.get_by_text("Bundled demo task", exact=True).click()
    wait_drawn(page)
    page.get_by_label("M · models", exact=True).wait_for(timeout=90_000)
    if demo != DEMOS[0]:  # the first demo task (sorted) is the selectbox's default
        choose(page, "Demo task", demo)
    for label, value in knobs.ui():
        set_number(page, label, value)
    name_box = page.get_by_label("Run name", exact=True)
    name_box.fill(name)
    name_box.press("Enter")
    wait_drawn(page)
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/run\?run="), timeout=90_000)
    return run_id_from_url(page.url)


def start_in_app_home(page: Any, url: str, demo: str) -> str:
    """The fallback: Home's one-click demo run (the demo knobs: longer runs)."""
    page.goto(url)
    wait_drawn(page)
    choose(page, "Demo task", demo)
    page.get_by_role("button", name="Start a demo run").click()
    page.wait_for_url(re.compile(r"/run\?run="), timeout=90_000)
    return run_id_from_url(page.url)


def stop_in_app(page: Any, url: str, run_id: str) -> None:
    page.goto(f"{url}/run?run={run_id}")
    wait_drawn(page)
    button = page.get_by_role("button", name="Stop")
    if button.is_enabled():
        button.click()
        wait_drawn(page)


def watcher_step(w: Watcher, url: str, live: list[str]) -> None:
    """One navigation of a watching session; times it and looks for error boxes in the page."""
    kind = WATCH_CYCLE[w.step % len(WATCH_CYCLE)]
    w.step += 1
    if w.run_id is None or kind == "next_run" or (kind == "run" and w.run_id not in live and live):
        if live:
            w.run_id = live[(w.idx + w.rotation) % len(live)]
            w.rotation += 1
        kind = "run"
    w.kind = kind
    page = w.page
    t0 = time.monotonic()
    if kind == "reload":
        page.reload()
    elif kind == "home":
        page.goto(url)
    elif kind == "history":
        page.goto(f"{url}/history")
    else:
        page.goto(f"{url}/{kind}" + (f"?run={w.run_id}" if w.run_id else ""))
    page.wait_for_selector(FIRST_ELEMENT)
    w.first.setdefault(kind, []).append(time.monotonic() - t0)
    wait_drawn(page)
    w.latency.setdefault(kind, []).append(time.monotonic() - t0)
    w.navigations += 1
    boxes = page.locator('[data-testid="stException"]')
    for i in range(boxes.count()):
        w.exceptions.append(f"{kind} {w.run_id}: {boxes.nth(i).inner_text()[:400]}")
    if LOCKED in page.locator('[data-testid="stMain"]').inner_text():
        w.exceptions.append(f"{kind} {w.run_id}: '{LOCKED}' in the page")


class AppStarter(threading.Thread):
    """Starts the app's share of the runs through the UI, one at a time, in its own browser session (a UI start
    takes from ~15 s to 2 minutes on a loaded machine; the CLI runs are replaced meanwhile). When halted, it
    stops the app's live runs with the run dashboard's Stop button."""

    def __init__(self, soak: Soak) -> None:
        super().__init__(daemon=True, name="app-starter")
        self.soak = soak
        self.errors: list[str] = []
        self.opened = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        from playwright.sync_api import sync_playwright

        soak = self.soak
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.set_default_timeout(90_000)
                self.opened.set()
                while not self.halt.is_set():
                    if soak.app_deficit() > 0:
                        before = len(soak.launched)
                        soak.start_app(page, soak.url)
                        if len(soak.launched) == before:  # the app refused: try again a little later
                            self.halt.wait(10)
                    else:
                        self.halt.wait(0.5)
                with soak.lock:
                    soak.refresh()
                    live = soak.live("app")
                for r in live:
                    r.stop_requested = True
                    try:
                        stop_in_app(page, soak.url, str(r.run_id))
                    except Exception as exc:
                        self.errors.append(f"stop {r.run_id}: {type(exc).__name__}: {str(exc)[:200]}")
                        soak.store.set_control(str(r.run_id), "stop")
                browser.close()
        except Exception as exc:
            self.errors.append(f"app starter: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            self.opened.set()


# -- the soak --------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.store_dir = tmp / "store"
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True)
        self.knobs = Knobs(budget=args.budget)
        self.launched: list[Launched] = []
        self.store = Store(self.store_dir)  # created before the server: both open an existing store
        self.app_start_failures: list[str] = []
        self.cli_count = 0
        self.app_count = 0
        self.demo_turn = 0
        self.url = ""  # the app server's, read by the browser threads
        self.lock = threading.Lock()  # over `launched`: the main thread starts CLI runs, the AppStarter app runs
        self.target_app = round(args.runs * args.app_share)

    # -- runs --------------------------------------------------------------------------------------
    def _next_demo(self) -> str:
        demo = DEMOS[self.demo_turn % len(DEMOS)]
        self.demo_turn += 1
        return demo

    def _cli_run_id(self, r: Launched) -> str | None:
        if r.log is None or not r.log.exists():
            return None
        m = re.search(r"^run (\S+): ", r.log.read_text(encoding="utf-8", errors="replace"), re.M)
        return m.group(1) if m else None

    def refresh(self) -> None:
        """Learn CLI run ids, mark ended runs."""
        for r in self.launched:
            if r.ended is not None:
                continue
            if r.via == "cli" and r.run_id is None:
                r.run_id = self._cli_run_id(r)
                if r.run_id:
                    r.start_seconds = time.time() - r.started
            alive = True
            if r.via == "cli" and r.proc is not None and r.proc.poll() is not None:
                alive = False
                r.run_id = r.run_id or self._cli_run_id(r)
            elif r.run_id:
                run = self.store.get_run(r.run_id)
                alive = run is not None and run["status"] in ACTIVE
            if not alive:
                r.ended = time.time()

    def live(self, via: str | None = None) -> list[Launched]:
        return [r for r in self.launched if r.ended is None and (via is None or r.via == via)]

    def start_cli(self) -> None:
        self.cli_count += 1
        demo = self._next_demo()
        log = self.logs / f"cli-{self.cli_count}.stderr"
        out = self.tmp / "out" / f"cli-{self.cli_count}"
        cmd = [sys.executable, "-m", "mlestar_core", "--store", str(self.store_dir), "run",
               "--task", str(ROOT / "demo_tasks" / demo), "--out", str(out), *self.knobs.cli()]
        env = {**os.environ, "MLESTAR_HOME": str(self.store_dir), "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as err, open(log.with_suffix(".stdout"), "wb") as so:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=so, stderr=err, start_new_session=True)
        self.launched.append(Launched("cli", demo, time.time(), proc=proc, log=log, method="cli"))
        print(f"  [{self._clock()}] CLI run {self.cli_count} started on {demo}", flush=True)

    def start_app(self, page: Any, url: str) -> None:
        """Start one run through the app's UI (called by the AppStarter thread)."""
        with self.lock:
            self.app_count += 1
            demo = self._next_demo()
        name = f"soak-app-{self.app_count}"  # only this thread changes app_count
        t0 = time.time()
        method = "new_run page"
        try:
            run_id = start_in_app(page, url, demo, self.knobs, name)
        except Exception as exc:
            self.app_start_failures.append(f"new_run page: {type(exc).__name__}: {str(exc)[:300]}")
            run = next((r for r in self.store.list_runs() if r["name"] == name), None)
            if run is not None:  # started all the same (only the redirect was slow)
                run_id = run["id"]
            else:
                method = "home demo button"
                try:
                    run_id = start_in_app_home(page, url, demo)
                except Exception as exc2:
                    self.app_start_failures.append(f"home: {type(exc2).__name__}: {str(exc2)[:300]}")
                    print(f"  [{self._clock()}] app run {self.app_count} could not start: {exc2}", flush=True)
                    return
        r = Launched("app", demo, t0, run_id=run_id, start_seconds=time.time() - t0, method=method)
        with self.lock:
            self.launched.append(r)
        print(f"  [{self._clock()}] app run {self.app_count} started on {demo} via the {method} "
              f"in {r.start_seconds:.0f} s: {run_id}", flush=True)

    def top_up_cli(self, ramping: bool) -> None:
        """While ramping up, CLI runs take their share of the slots only. Then they fill every slot the app's
        runs do not hold: at least --runs live, even while the UI is busy starting the next app run (when it
        lands, one more is live until a CLI run ends)."""
        with self.lock:
            self.refresh()
            if ramping:
                while len(self.live("cli")) < self.args.runs - self.target_app:
                    self.start_cli()
            else:
                while len(self.live()) < self.args.runs:
                    self.start_cli()

    def app_deficit(self) -> int:
        with self.lock:
            self.refresh()
            return self.target_app - len(self.live("app"))

    def _clock(self) -> str:
        return time.strftime("%H:%M:%S")

    # -- main loop ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        a = self.args
        print(f"store {self.store_dir}; starting streamlit...", flush=True)
        server = Server(self.store_dir, self.logs / "streamlit.log")
        self.url = server.url
        sampler = Sampler(self.store_dir, server.proc.pid, a.sample_every)
        follower = Follower(self.store_dir)
        sampler.start()
        follower.start()
        t_server = time.time()
        restarts: list[float] = []
        next_restart = float("inf")
        window: tuple[float, float] = (0.0, 0.0)
        ramp_seconds: float | None = None
        concurrency: list[tuple[float, int]] = []
        starter = AppStarter(self)
        watchers = [Watcher(i, self, a.nav_every, time.time() + 10 + i * a.nav_every / max(1, a.browsers))
                    for i in range(a.browsers)]
        try:
            for t in [starter, *watchers]:
                t.start()
            for t in [starter, *watchers]:
                t.opened.wait(timeout=120)
            print(f"server {server.url} up in {time.time() - t_server:.0f} s (pid {server.proc.pid}); "
                  f"{a.browsers} browser sessions open; ramping up to {a.runs} runs...", flush=True)
            t_ramp = time.time()
            ramp_deadline = t_ramp + a.ramp_timeout
            start: float | None = None
            while True:
                now = time.time()
                with self.lock:
                    self.refresh()
                    n_live = len(self.live())
                concurrency.append((now, n_live))
                if start is None and (n_live >= a.runs or now >= ramp_deadline):
                    start = now
                    ramp_seconds = now - t_ramp
                    print(f"  [{self._clock()}] {n_live} runs live after {ramp_seconds:.0f} s: "
                          f"measuring for {a.minutes:g} min", flush=True)
                    if a.restart_every:
                        next_restart = start + a.restart_every * 60
                if start is not None and now >= next_restart and now < start + a.minutes * 60 - 30:
                    print(f"  [{self._clock()}] restarting the app server (its runs must resume, the CLI's "
                          "must not be taken over)...", flush=True)
                    server.stop()
                    server = Server(self.store_dir, self.logs / f"streamlit-{len(restarts) + 1}.log")
                    sampler.pid = server.proc.pid
                    self.url = server.url
                    restarts.append(time.time())
                    next_restart = time.time() + a.restart_every * 60
                if start is not None and now >= start + a.minutes * 60:
                    window = (start, now)
                    break
                self.top_up_cli(ramping=start is None)
                time.sleep(0.5)
            print(f"  [{self._clock()}] period over: stopping the live runs...", flush=True)
            for w in watchers:  # each finishes its navigation in flight, then says whether it is held
                w.halt.set()
            starter.halt.set()  # finishes a start in flight, then stops the app's live runs with its Stop button
            with self.lock:
                for r in self.live("cli"):
                    r.stop_requested = True
                    with contextlib.suppress(ProcessLookupError):
                        r.proc.send_signal(signal.SIGINT)  # the CLI marks the run stopped and cancels its scripts
            for t in [starter, *watchers]:
                t.join(timeout=300)
            deadline = time.time() + 120
            while self.live() and time.time() < deadline:
                time.sleep(1)
                with self.lock:
                    self.refresh()
            for r in self.live():
                starter.errors.append(f"{r.via} run {r.run_id} still live 120 s after the stop")
        finally:
            for r in self.launched:  # whatever is left
                if r.proc is not None and r.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(r.proc.pid, signal.SIGKILL)
            sampler.halt.set()
            sampler.join(timeout=30)
            server_alive = server.proc.poll() is None
            server.stop()
            follower.halt.set()
            follower.join(timeout=60)
        return self._report(window, ramp_seconds, concurrency, sampler, follower, watchers, server_alive,
                            starter.errors, sum(w.held for w in watchers), restarts)

    # -- checks and figures ------------------------------------------------------------------------
    def _report(self, window: tuple[float, float], ramp_seconds: float | None,
                concurrency: list[tuple[float, int]], sampler: Sampler, follower: Follower,
                watchers: list[Watcher], server_alive: bool, browser_errors: list[str], held: int,
                restarts: list[float]) -> dict[str, Any]:
        a = self.args
        t0, t1 = window
        minutes = (t1 - t0) / 60 if t1 > t0 else 0.0
        store = Store(self.store_dir)
        runs = {r["id"]: r for r in store.list_runs()}
        checks = check_store(store, list(runs), follower)

        # throughput
        n_window = store._one("SELECT COUNT(*) AS n FROM events WHERE ts >= ? AND ts < ?", (t0, t1))["n"]
        n_total = store._one("SELECT COUNT(*) AS n FROM events")["n"]
        rows_window = {t: store._one(f"SELECT COUNT(*) AS n FROM {t} WHERE created >= ? AND created < ?",
                                     (t0, t1))["n"] for t in ("scripts", "executions", "brain_calls", "attempts")}
        buckets = [r["n"] for r in store._rows(
            "SELECT CAST((ts - ?) / 10 AS INTEGER) AS b, COUNT(*) AS n FROM events WHERE ts >= ? AND ts < ? "
            "GROUP BY b", (t0, t0, t1))]
        per_s = n_window / (t1 - t0) if t1 > t0 else 0.0

        # concurrency
        in_window = [n for t, n in concurrency if t0 <= t <= t1]
        samples = [s for s in sampler.samples if t0 <= s["t"] <= t1]
        store_live = [s["live_runs"] for s in samples]

        # memory
        last_pid = sampler.samples[-1]["pid"] if sampler.samples else None  # after restarts: the last server
        rss = [(s["t"], s["rss_mb"]) for s in samples if s["rss_mb"] is not None and s["pid"] == last_pid]
        memory = memory_figures(rss)
        all_rss = [s["rss_mb"] for s in sampler.samples if s["rss_mb"] is not None]
        memory["at_server_start_mb"] = round(all_rss[0], 1) if all_rss else None
        memory["children_rss_max_mb"] = max((s["children_rss_mb"] for s in samples), default=None)
        fds = [s["fds"] for s in samples if s.get("fds") is not None and s["pid"] == last_pid]
        threads = [s["threads"] for s in samples if s.get("threads") is not None and s["pid"] == last_pid]
        cpu = [s["cpu_pct"] for s in samples if s.get("cpu_pct") is not None and s["pid"] == last_pid][1:]
        memory["server_cpu_pct_mean_max"] = [round(statistics.fmean(cpu)), round(max(cpu))] if cpu else None
        memory["server_fds_first_last_max"] = [fds[0], fds[-1], max(fds)] if fds else None
        memory["server_threads_first_last_max"] = [threads[0], threads[-1], max(threads)] if threads else None
        memory["wal_max_mb"] = max((s["wal_mb"] for s in sampler.samples), default=None)
        memory["db_mb_end"] = sampler.samples[-1]["db_mb"] if sampler.samples else None

        # locks and errors in logs
        logs = scan_logs(sorted(self.logs.glob("streamlit*.log")) + sorted(self.logs.glob("cli-*")))
        locked_runs = [rid for rid, r in runs.items() if r.get("error") and LOCKED in r["error"]]
        locked_events = store._one("SELECT COUNT(*) AS n FROM events WHERE payload_json LIKE ?",
                                   (f"%{LOCKED}%",))["n"]
        lease_lost = store._one("SELECT COUNT(*) AS n FROM events WHERE kind = 'lease_lost'")["n"]
        page_exceptions = [e for w in watchers for e in w.exceptions]
        locked_total = (logs["locked"] + len(locked_runs) + locked_events
                        + sum(LOCKED in e for e in page_exceptions + follower.errors + sampler.errors))

        for r in self.launched:  # a CLI run starts when its row is written, whenever this loop noticed it
            if r.via == "cli" and r.run_id in runs:
                r.start_seconds = runs[r.run_id]["created"] - r.started
        launched = [{"via": r.via, "method": r.method, "demo": r.demo, "run_id": r.run_id,
                     "start_seconds": None if r.start_seconds is None else round(r.start_seconds, 1),
                     "lasted_s": None if r.ended is None else round(r.ended - r.started),
                     "status": (runs.get(r.run_id) or {}).get("status"),
                     "stopped_at_end": r.stop_requested,
                     "exit_code": None if r.proc is None else r.proc.returncode} for r in self.launched]
        statuses: dict[str, int] = {}
        for r in runs.values():
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        lat_all: dict[str, list[float]] = {}
        first_all: dict[str, list[float]] = {}
        for w in watchers:
            for k, v in w.latency.items():
                lat_all.setdefault(k, []).extend(v)
            for k, v in w.first.items():
                first_all.setdefault(k, []).extend(v)
        result: dict[str, Any] = {
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "config": {"minutes": a.minutes, "runs": a.runs, "browsers": a.browsers, "app_share": a.app_share,
                       "restart_every_min": a.restart_every,
                       "knobs": vars(self.knobs), "nav_every_s": a.nav_every, "demos": DEMOS,
                       "cpu_count": os.cpu_count(),
                       "load1_mean_in_period": round(statistics.fmean(s["load1"] for s in samples), 1)
                       if samples else None},
            "ramp_seconds": None if ramp_seconds is None else round(ramp_seconds, 1),
            "window_minutes": round(minutes, 2),
            "runs": {
                "target_live": a.runs,
                # what the store says (status of the runs, sampled every --sample-every s) ...
                "live": live_figures(store_live, a.runs),
                # ... and what the orchestrator counts (a CLI process that has not written its run yet included)
                "live_launched": live_figures(in_window, a.runs),
                "started": len(self.launched), "started_in_app": sum(r.via == "app" for r in self.launched),
                "started_by_cli": sum(r.via == "cli" for r in self.launched),
                "finished": statuses.get("finished", 0), "statuses": statuses,
                "app_start_seconds": [x["start_seconds"] for x in launched if x["via"] == "app"],
                "app_start_failures": self.app_start_failures,
                "launched": launched,
            },
            "browsers": {
                "sessions": len(watchers),
                "sessions_held": held,
                "navigations": sum(w.navigations for w in watchers),
                "navigation_errors": sum(len(w.errors) for w in watchers),
                "error_samples": [e for w in watchers for e in w.errors][:10] + browser_errors[:5],
                "crashes": sum(w.crashes for w in watchers),
                "page_exceptions": len(page_exceptions), "page_exception_samples": page_exceptions[:10],
                "seconds_to_drawn": {k: {"n": len(v), "median": round(statistics.median(v), 2),
                                         "max": round(max(v), 2)} for k, v in sorted(lat_all.items())},
                "seconds_to_first_element": {k: {"n": len(v), "median": round(statistics.median(v), 2),
                                                 "max": round(max(v), 2)} for k, v in sorted(first_all.items())},
            },
            "store": {
                "events_in_window": n_window, "events_total": n_total, "events_per_s": round(per_s, 2),
                "events_per_10s_min_max": [min(buckets, default=0), max(buckets, default=0)],
                "rows_in_window": rows_window,
                "follower_polls": follower.polls,
            },
            "integrity": checks,
            "locks": {"database_is_locked": locked_total, "in_logs": logs["locked"], "in_run_errors": locked_runs,
                      "in_events": locked_events, "log_tracebacks": logs["tracebacks"],
                      "lease_lost_events": lease_lost,
                      "takeover_messages_in_logs": logs["takeovers"],
                      "inotify_overflows_in_server_log": logs["inotify_overflows"],
                      "log_samples": logs["samples"]},
            "memory": memory,
            "server_alive_at_end": server_alive,
            "server_restarts": len(restarts),
            "sampler_errors": sampler.errors[:5], "follower_errors": follower.errors[:5],
            "samples": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in s.items()}
                        for s in sampler.samples],
        }
        return result


def live_figures(counts: list[int], target: int) -> dict[str, Any]:
    if not counts:
        return {"min": 0, "mean": 0, "max": 0, "share_at_target": 0}
    return {"min": min(counts), "mean": round(statistics.fmean(counts), 2), "max": max(counts),
            "share_at_target": round(sum(n >= target for n in counts) / len(counts), 3)}


def check_store(store: Store, run_ids: list[str], follower: Follower) -> dict[str, Any]:
    """Per-run integrity of the events (see the module doc)."""
    problems: list[str] = []
    for rid in run_ids:
        events = store.events_after(rid, 0, limit=10_000_000)
        seqs = [e["seq"] for e in events]
        if any(b <= a for a, b in zip(seqs, seqs[1:], strict=False)):
            problems.append(f"{rid}: event seqs not strictly increasing")
        announced = [e["payload"].get("execution_id") for e in events if e["kind"] == "script_executed"]
        rows = [r["id"] for r in store.table("executions", rid)]
        missing_rows = sorted(set(announced) - set(rows))
        silent_rows = sorted(set(rows) - set(announced))
        if missing_rows:
            problems.append(f"{rid}: script_executed events without an execution row: {missing_rows[:5]}")
        if silent_rows:
            problems.append(f"{rid}: execution rows without a script_executed event: {silent_rows[:5]}")
        if len(announced) != len(set(announced)):
            problems.append(f"{rid}: an execution announced twice")
        once: dict[tuple[str, str], int] = {}
        for e in events:
            if e["kind"] in ONCE_KINDS:
                key = (e["kind"], e["payload"].get("key", "") if e["kind"] == "step_done" else "")
                once[key] = once.get(key, 0) + 1
        dups = [f"{k}{'/' + s if s else ''} x{n}" for (k, s), n in once.items() if n > 1]
        once_events = [e for e in events if e["kind"] in ONCE_KINDS]
        identical = len(once_events) - len({(e["kind"], json.dumps(e["payload"], sort_keys=True))
                                            for e in once_events})
        if dups or identical:
            problems.append(f"{rid}: emitted more than once: {dups[:5]} ({identical} identical)")
        done_steps = {s["key"] for s in store.steps(rid) if s["status"] == "done"}
        step_events = {k for (kind, k) in once if kind == "step_done"}
        if done_steps - step_events:
            problems.append(f"{rid}: steps done without a step_done event: {sorted(done_steps - step_events)[:5]}")
        seen = follower.seen.get(rid, [])
        if seen != seqs:
            skipped = sorted(set(seqs) - set(seen))
            problems.append(f"{rid}: the follower saw {len(seen)} of {len(seqs)} events"
                            f"{f', skipped {skipped[:5]}' if skipped else ''}")
    problems += [f"follower: {p}" for p in follower.problems]
    return {"runs_checked": len(run_ids), "ok": not problems, "problems": problems[:50]}


def memory_figures(rss: list[tuple[float, float]]) -> dict[str, Any]:
    """First/last/max RSS and the slope (least squares, MB/min) over the period and its second half."""
    if len(rss) < 3:
        return {"samples": len(rss)}

    def slope(points: list[tuple[float, float]]) -> float:
        if len(points) < 2:
            return 0.0
        xs = [(t - points[0][0]) / 60 for t, _ in points]
        ys = [v for _, v in points]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        den = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0

    values = [v for _, v in rss]
    whole, second = slope(rss), slope(rss[len(rss) // 2:])
    minutes = (rss[-1][0] - rss[0][0]) / 60
    mean = statistics.fmean(values)
    # "flat": the second half does not keep growing by more than 1 MB/min and 2 % of the mean per minute;
    # None when the period is too short to tell (runs starting in the server's process step it up).
    flat = None if minutes < 2.5 else second <= max(1.0, 0.02 * mean)
    return {"samples": len(rss), "first_mb": round(values[0], 1), "last_mb": round(values[-1], 1),
            "max_mb": round(max(values), 1), "min_mb": round(min(values), 1), "mean_mb": round(mean, 1),
            "slope_mb_per_min": round(whole, 2), "slope_second_half_mb_per_min": round(second, 2),
            "minutes": round(minutes, 2), "flat": flat}


def scan_logs(paths: list[Path]) -> dict[str, Any]:
    locked, tracebacks, inotify, takeovers, samples = 0, 0, 0, 0, []
    for p in paths:
        if not p.exists():
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        n = text.count(LOCKED)
        locked += n
        tracebacks += text.count("Traceback (most recent call last)")
        inotify += text.count("Inotify queue overflowed")  # streamlit's file watcher on the source tree
        takeovers += text.count("took it over") + text.count("owned elsewhere")
        if n:
            i = text.index(LOCKED)
            samples.append(f"{p.name}: ...{text[max(0, i - 600):i + 100]}")
        elif "Traceback (most recent call last)" in text:
            i = text.index("Traceback (most recent call last)")
            samples.append(f"{p.name}: {text[i:i + 700]}")
    return {"locked": locked, "tracebacks": tracebacks, "inotify_overflows": inotify, "takeovers": takeovers,
            "samples": samples[:6]}


def print_report(r: dict[str, Any]) -> None:
    runs, br, st, mem, locks, integ = (r["runs"], r["browsers"], r["store"], r["memory"], r["locks"],
                                       r["integrity"])
    print(f"\nsoak: {r['window_minutes']} min measured after a {r['ramp_seconds']} s ramp "
          f"({r['config']['cpu_count']} cores, mean 1-min load average {r['config']['load1_mean_in_period']}; the "
          "machine is shared)")
    for label, key in (("runs live (store)", "live"), ("runs live (launched)", "live_launched")):
        f = runs[key]
        print(f"  {label:<21}target {runs['target_live']}: min {f['min']}, mean {f['mean']}, max {f['max']} "
              f"({f['share_at_target']:.0%} of the time at target or above)")
    print(f"  runs started         {runs['started']} ({runs['started_in_app']} in the app, {runs['started_by_cli']} "
          f"by CLI), {runs['finished']} finished; statuses {runs['statuses']}")
    print(f"  app start (UI) s     {runs['app_start_seconds']}; failures {len(runs['app_start_failures'])}")
    print(f"  browser sessions     {br['sessions_held']}/{br['sessions']} held, {br['navigations']} navigations, "
          f"{br['navigation_errors']} errors, {br['crashes']} crashes, {br['page_exceptions']} exception boxes")
    print("    page           n   first element (median / max)   script run done (median / max)")
    for k, v in br["seconds_to_drawn"].items():
        f = br["seconds_to_first_element"].get(k, {"median": float("nan"), "max": float("nan")})
        print(f"    {k:<12} {v['n']:>3}   {f['median']:6.2f} s / {f['max']:6.2f} s"
              f"              {v['median']:6.2f} s / {v['max']:6.2f} s")
    print(f"  store events         {st['events_in_window']} in the period ({st['events_per_s']}/s; per 10 s "
          f"{st['events_per_10s_min_max'][0]}..{st['events_per_10s_min_max'][1]}); rows {st['rows_in_window']}")
    print(f"  integrity            {'ok' if integ['ok'] else 'PROBLEMS'} ({integ['runs_checked']} runs)")
    for p in integ["problems"][:8]:
        print(f"    {p}")
    print(f"  database is locked   {locks['database_is_locked']} (logs {locks['in_logs']}, run errors "
          f"{len(locks['in_run_errors'])}, events {locks['in_events']}); tracebacks in logs {locks['log_tracebacks']}")
    print(f"  leases               {locks['lease_lost_events']} lease_lost events, "
          f"{locks['takeover_messages_in_logs']} take-over messages in logs; server restarts {r['server_restarts']}")
    if mem.get("samples", 0) >= 3:
        print(f"  server RSS MB        first {mem['first_mb']}, last {mem['last_mb']}, max {mem['max_mb']}; slope "
              f"{mem['slope_mb_per_min']} MB/min (second half {mem['slope_second_half_mb_per_min']}): "
              f"{VERDICT[mem['flat']]}; children max {mem['children_rss_max_mb']} MB; "
              f"WAL max {mem['wal_max_mb']} MB")
        print(f"  server fds / threads first, last, max {mem['server_fds_first_last_max']} / "
              f"{mem['server_threads_first_last_max']}; CPU % mean, max {mem['server_cpu_pct_mean_max']}")
    print(f"  server alive at end  {r['server_alive_at_end']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="measured period (default 5)")
    parser.add_argument("--runs", type=int, default=4, help="runs kept live (default 4)")
    parser.add_argument("--browsers", type=int, default=3, help="browser sessions following them (default 3)")
    parser.add_argument("--app-share", type=float, default=0.5, help="share of the runs started in the app")
    parser.add_argument("--budget", type=int, default=120, help="time budget of each run, s (default 120)")
    parser.add_argument("--nav-every", type=float, default=15.0, help="s between a session's navigations")
    parser.add_argument("--sample-every", type=float, default=3.0, help="s between memory samples")
    parser.add_argument("--ramp-timeout", type=float, default=240.0, help="s to reach --runs live runs")
    parser.add_argument("--store-seconds", type=float, default=10.0,
                        help="seconds of the store micro-benchmark afterwards (0 = skip)")
    parser.add_argument("--store-procs", type=int, default=4, help="its writer processes")
    parser.add_argument("--store-threads", type=int, default=3, help="its threads per process")
    parser.add_argument("--restart-every", type=float, default=0.0,
                        help="restart the app server every N minutes of the period (default 0: never); its runs "
                             "must resume, the CLI's must not be taken over")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store and logs")
    parser.add_argument("--json", default=None, help="where to write the figures (default bench/results/)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: bash scripts/setup_browser.sh", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    try:
        result = Soak(args, tmp).run()
        if args.store_seconds > 0:
            print(f"\nstore micro-benchmark ({args.store_seconds:g} s)...", flush=True)
            result["store_bench"] = bench_store.run_bench(tmp / "store-bench", args.store_procs, args.store_threads,
                                                          args.store_seconds)
    except Exception:
        traceback.print_exc()
        print(f"logs kept in {tmp / 'logs'}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp / "store-bench", ignore_errors=True)
    print_report(result)
    if "store_bench" in result:
        print()
        bench_store.print_report(result["store_bench"])
    out = Path(args.json) if args.json else RESULTS / f"soak-{time.strftime('%Y-%m-%d_%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result["kept"] = str(tmp) if args.keep else None
    out.write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    print(f"\nwritten to {out}" + (f"; store and logs in {tmp}" if args.keep else ""))
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    failed = (not result["integrity"]["ok"] or result["locks"]["database_is_locked"]
              or result["memory"].get("flat") is False or not result["server_alive_at_end"]
              or (result.get("store_bench") or {}).get("lost_or_duplicated")
              or (result.get("store_bench") or {}).get("errors"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
