"""Local stack footprint: resident memory of the idle services (goal: under 2 GiB together)."""

from __future__ import annotations

import contextlib
import time

import psutil

from devstack import stack


def _tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def run(quick: bool = False) -> dict:
    stack.up()
    samples = 3 if quick else 10
    peak: dict[str, int] = {}
    for _ in range(samples):
        for status in stack.status():
            if status.pid:
                peak[status.name] = max(peak.get(status.name, 0), _tree_rss(status.pid))
        time.sleep(1)
    mib = {name: round(rss / 2**20, 1) for name, rss in peak.items()}
    return {"idle_rss_mib": mib, "idle_rss_total_mib": round(sum(mib.values()), 1), "goal_mib": 2048}
