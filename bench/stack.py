"""Local stack footprint: memory of the idle services (goal: under 2 GiB together).

Proportional set size (PSS) per process tree: shared pages (PostgreSQL's shared buffers, mapped by
every backend) count once in total instead of once per process, as plain RSS would."""

from __future__ import annotations

import time

from devstack import stack
from devstack.process import tree_pss


def run(quick: bool = False) -> dict:
    stack.up()
    samples = 3 if quick else 10
    peak: dict[str, int] = {}
    for _ in range(samples):
        for status in stack.status():
            if status.pid and not status.optional:  # Airflow has its own figure (bench/airflow.py)
                peak[status.name] = max(peak.get(status.name, 0), tree_pss(status.pid))
        time.sleep(1)
    mib = {name: round(size / 2**20, 1) for name, size in peak.items()}
    return {"idle_pss_mib": mib, "idle_pss_total_mib": round(sum(mib.values()), 1), "goal_mib": 2048}
