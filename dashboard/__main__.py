"""`python -m dashboard`: serve the dashboard with Streamlit on DASHBOARD_HOST:DASHBOARD_PORT."""

from __future__ import annotations

import os
import sys

import typer

from common.settings import PROJECT_ROOT
from dashboard.settings import dashboard_settings

APP = PROJECT_ROOT / "dashboard" / "app.py"


def command(host: str, port: int) -> list[str]:
    """The Streamlit command line that serves the app (headless, no usage statistics, no file watcher)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
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


def main(
    host: str = typer.Option(None, help="Address to bind (default DASHBOARD_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default DASHBOARD_PORT, 8501)."),
) -> None:
    """Serve the dashboard (Market, Compare, Data quality, System health) as market_reader."""
    settings = dashboard_settings()
    host = host or settings.host
    port = port or settings.port
    print(f"dashboard on http://{host}:{port}", flush=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }
    os.execve(sys.executable, command(host, port), env)


if __name__ == "__main__":
    typer.run(main)
