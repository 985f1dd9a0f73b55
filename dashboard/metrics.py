"""Prometheus metrics of the dashboard's Streamlit process, served on DASHBOARD_METRICS_PORT.

`python -m dashboard` starts the endpoint before Streamlit's server, in the same process, so the target
is up from the start (not only after a first visitor) and the default registry's process metrics
(`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...) describe the dashboard itself.
Names follow ``dashboard_<thing>_<unit>``.
"""

from __future__ import annotations

import logging
import threading

from prometheus_client import Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

QUERY_SECONDS = Histogram(
    "dashboard_query_duration_seconds",
    "Wall time of one dashboard query as market_reader (cache misses only), by outcome.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PAGE_RUNS = Counter(
    "dashboard_page_runs_total", "Script runs of a page (a visit, a widget change or a rerun).", ["page"]
)

_lock = threading.Lock()
_serving: int | None = None


def serve(host: str, port: int) -> bool:
    """Serve /metrics on host:port once per process; 0 disables it. A taken port is logged, not
    fatal: the dashboard itself matters more than its metrics."""
    global _serving
    with _lock:
        if port == 0 or _serving is not None:
            return False
        try:
            start_http_server(port, addr=host)
        except OSError as exc:
            log.warning("dashboard metrics not served on %s:%s: %s", host, port, exc)
            return False
        _serving = port
        return True
