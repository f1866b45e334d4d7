"""CPU time of a server's processes over a measurement, from Linux's /proc (user + system).

On a machine whose cores are shared by every process of the server and the load generator,
the CPU each request costs says more than throughput alone, and varies less from hour to hour:
it shows which process a server spends its time in. Elsewhere (no /proc) nothing is measured.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # gone, or no /proc
        return None
    return text.rsplit(")", 1)[1].split()  # (the command name may hold spaces and parentheses)


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it that is alive now."""
    parents: dict[int, int] = {}
    for entry in PROC.glob("[0-9]*"):
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return sorted(pid for pid in tree if pid in parents)


def cpu_ms(pid: int) -> float | None:
    """User + system CPU time the process has used, in ms (None if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def label(pid: int) -> str:
    """A short name for the process: its command line without the interpreter's path."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return str(pid)
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    if words and Path(words[0]).name.startswith("python"):
        words = words[1:]
    if words[:2] == ["-m", "service.cli.main"]:
        words = words[2:]
    return " ".join(words)[:48] or str(pid)


class CpuMeter:
    """CPU used by a process tree between ``start`` and ``stop``, per process (by label)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self._before: dict[int, float] = {}

    def start(self) -> None:
        self._before = {pid: ms for pid in process_tree(self.root) if (ms := cpu_ms(pid)) is not None}

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for pid, before in self._before.items():
            after = cpu_ms(pid)
            if after is not None and after > before:
                name = label(pid)
                used[name] = used.get(name, 0.0) + after - before
        return used
