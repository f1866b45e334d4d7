"""Keeping ``tta serve``'s processes alive: a child that exits is started again after a backoff
that doubles while it keeps failing (1 s up to 30 s) and resets once it has run a minute. Only
SIGTERM or Ctrl-C (to the supervisor) stops the whole thing."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("tta")

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0
"""A child that ran this long is healthy again: its next restart waits the shortest backoff."""


@dataclass
class Child:
    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = BACKOFF_START_S
    restart_at: float | None = None
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    stop_last: bool = False
    """Stopped after the others (a private Redis the others still write to as they stop)."""

    def launch(self) -> None:
        self.process = self.start()
        self.started_at = time.monotonic()
        self.restart_at = None


class Supervisor:
    def __init__(self, children: list[Child], *, poll_s: float = 0.5) -> None:
        self.children = children
        self.poll_s = poll_s
        self.stopping = False

    def install_signal_handlers(self) -> None:
        def stop(_signum: int, _frame: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self) -> None:
        """Start every child and keep them running until asked to stop; then stop them all."""
        for child in self.children:
            self.launch(child, time.monotonic())
        try:
            while not self.stopping:
                self.check(time.monotonic())
                time.sleep(self.poll_s)
        finally:
            self.stop_all()

    def launch(self, child: Child, now: float) -> None:
        try:
            child.launch()
        except (OSError, RuntimeError) as exc:  # e.g. the port is still taken: try again later
            print(f"warning: {child.name} did not start ({exc}); retrying in {child.backoff_s:.0f}s",
                  flush=True)
            child.restart_at = now + child.backoff_s
            child.backoff_s = min(BACKOFF_MAX_S, child.backoff_s * 2)

    def check(self, now: float) -> None:
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    log.warning("restarting %s (restart %d)", child.name, child.restarts + 1)
                    child.restarts += 1
                    self.launch(child, now)
                continue
            code = child.process.poll() if child.process else None
            if code is None:
                continue
            child.exit_codes.append(code)
            if now - child.started_at >= STABLE_AFTER_S:
                child.backoff_s = BACKOFF_START_S
            child.restart_at = now + child.backoff_s
            print(f"warning: {child.name} exited with code {code}; restarting it in "
                  f"{child.backoff_s:.0f}s", flush=True)
            child.backoff_s = min(BACKOFF_MAX_S, child.backoff_s * 2)

    def stop_all(self, timeout_s: float = 30.0) -> None:
        for last in (False, True):
            self._stop([c for c in self.children if c.stop_last == last], timeout_s)

    @staticmethod
    def _stop(children: list[Child], timeout_s: float) -> None:
        running = [c.process for c in children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
