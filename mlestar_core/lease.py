"""One owner per run: a lease in the store, taken atomically and kept alive by a heartbeat.

A run driven by two processes at once (a second `resume`, the Studio starting while a CLI run is
going) would run every step twice and delete work folders under the other. So whoever drives a
run first takes its lease (a compare-and-set on `runs.lease_holder`) and renews it every few
seconds; a second driver is refused with a message naming the holder. A lease is stale when its
heartbeat is older than `STALE_AFTER`, or at once when its holder was a process on this machine
that no longer exists (a kill -9 must not keep a run locked for long).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass

import psutil

from .store import Store

HEARTBEAT = 3.0  # seconds between renewals
STALE_AFTER = 20.0  # a lease not renewed for this long is free to take


class RunOwnedElsewhere(RuntimeError):
    """Another live process drives this run."""


class LeaseLost(Exception):
    """This process stopped driving the run: another one took its lease over (ours had gone stale)."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started: float  # the process's start time: a reused pid is not mistaken for the holder
    token: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.started:.2f}:{self.token}"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            host, pid, started, token = text.rsplit(":", 3)
            return cls(host, int(pid), float(started), token)
        except ValueError:
            return None

    @classmethod
    def me(cls) -> Holder:
        proc = psutil.Process(os.getpid())
        return cls(socket.gethostname(), os.getpid(), round(proc.create_time(), 2), secrets.token_hex(4))

    def alive(self) -> bool:
        """False only when we can tell for sure: the holder was a process of this machine that is gone."""
        if self.host != socket.gethostname():
            return True
        try:
            return abs(psutil.Process(self.pid).create_time() - self.started) < 1.0
        except psutil.Error:
            return False

    def describe(self) -> str:
        where = "this machine" if self.host == socket.gethostname() else self.host
        return f"process {self.pid} on {where}"


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    heartbeat: float | None
    live: bool  # someone live drives the run right now
    description: str  # for messages: who, and how long ago they were last heard of


def lease_state(store: Store, run_id: str, now: float | None = None) -> LeaseState:
    run = store.get_run(run_id) or {}
    text, beat = run.get("lease_holder"), run.get("lease_heartbeat")
    if not text:
        return LeaseState(None, None, False, "nobody")
    now = time.time() if now is None else now
    holder = Holder.parse(text)
    fresh = beat is not None and now - float(beat) < STALE_AFTER
    live = fresh and (holder is None or holder.alive())
    who = holder.describe() if holder else text
    ago = f", last heard of {max(0.0, now - float(beat)):.0f} s ago" if beat is not None else ""
    return LeaseState(text, beat, live, who + ago)


class RunLease:
    """Held while a process drives a run: `acquire()` or raise, a heartbeat thread, `release()`."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.holder = str(Holder.me())
        self.lost = threading.Event()  # set when another process took the lease over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> RunLease:
        for _ in range(3):  # a lost compare-and-set means someone else moved: look again
            state = lease_state(self.store, self.run_id)
            if state.live and state.holder != self.holder:
                raise RunOwnedElsewhere(
                    f"run {self.run_id} is being driven by another {state.description}; it can be followed "
                    f"read-only, or resumed here once that process has ended (a lease expires "
                    f"{STALE_AFTER:.0f} s after its last heartbeat)")
            if self.store.swap_lease(self.run_id, state.holder, self.holder):
                break
        else:
            raise RunOwnedElsewhere(f"run {self.run_id}: another process is taking it over right now")
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                if not self.store.heartbeat(self.run_id, self.holder):
                    self.lost.set()
                    return
            except Exception:  # a busy database for a moment must not kill the heartbeat
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.lost.is_set():
            self.store.swap_lease(self.run_id, self.holder, None)

    def __enter__(self) -> RunLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
