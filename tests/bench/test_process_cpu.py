"""CPU time of a process tree from /proc: a grandchild that burns CPU is found and counted."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.process_cpu import CpuMeter, cpu_ms, label, process_tree

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(30)"


def test_a_grandchild_that_burns_cpu_is_in_the_tree_and_measured():
    # A shell whose child burns 0.3 s of CPU, then idles until killed.
    parent = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "$0"; sleep 30', BURN],
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(process_tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        tree = process_tree(parent.pid)
        assert tree[0] == parent.pid and len(tree) == 2
        meter = CpuMeter(parent.pid)
        meter.start()
        time.sleep(1.0)  # the child burns its 0.3 s meanwhile (it may have begun already)
        used = meter.stop()
        burner = [name for name in used if name.startswith("-c import time")]
        assert burner, used
        assert 50 <= used[burner[0]] <= 400  # ms of the 300 it burns; the shell used ~none
        assert label(tree[1]).startswith("-c import time")  # the interpreter's path dropped
    finally:
        subprocess.run(["pkill", "-KILL", "-g", str(parent.pid)], check=False)
        parent.wait(timeout=10)


def test_a_process_that_is_gone_has_no_cpu_time():
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    assert cpu_ms(finished.pid) is None
    assert process_tree(finished.pid) == []
