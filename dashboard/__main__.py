"""`python -m dashboard`: serve the dashboard with Streamlit on DASHBOARD_HOST:DASHBOARD_PORT, and the
process's Prometheus metrics on DASHBOARD_METRICS_PORT (dashboard/metrics.py)."""

from __future__ import annotations

import os
import sys

import typer

from common.settings import PROJECT_ROOT
from dashboard.settings import dashboard_settings

APP = PROJECT_ROOT / "dashboard" / "app.py"


def streamlit_args(host: str, port: int) -> list[str]:
    """`streamlit run` arguments that serve the app (headless, no usage statistics, no file watcher)."""
    return [
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def command(host: str, port: int) -> list[str]:
    """The command line of a dashboard server on host:port (this module)."""
    return [sys.executable, "-m", "dashboard", "--host", host, "--port", str(port)]


def main(
    host: str = typer.Option(None, help="Address to bind (default DASHBOARD_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default DASHBOARD_PORT, 8501)."),
) -> None:
    """Serve the dashboard (Market, Compare, Data quality, System health) as market_reader."""
    from streamlit.web import cli as streamlit_cli

    from dashboard import metrics

    settings = dashboard_settings()
    host = host or settings.host
    port = port or settings.port
    print(f"dashboard on http://{host}:{port}", flush=True)
    if metrics.serve(host, settings.metrics_port):
        print(f"dashboard metrics on http://{host}:{settings.metrics_port}/metrics", flush=True)
    # the pages import the project's packages: the project root on the path, here and in Streamlit's
    # script runner (same process)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])
    )
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    sys.argv = ["streamlit", *streamlit_args(host, port)]
    streamlit_cli.main()


if __name__ == "__main__":
    typer.run(main)
