"""pipeline.pool: the liveness check a pool's worker and a stale scratch folder are judged by."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.pool import alive


def test_alive_tells_a_running_process_from_an_ended_one() -> None:
    assert alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process now
    assert not alive(child.pid)  # pids are handed out in turn: not reused at once
    assert not alive(2 ** 22 + 12345)  # above any Linux pid_max
