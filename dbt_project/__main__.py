"""CLI: run dbt on this project with the repo's connection settings.

`build` and `dbt` run dbt in this interpreter (dbtRunner) and leave without Python's interpreter
teardown, which costs about a second after a dbt run (the manifest's objects are freed one by one);
`docs` serves from a `dbt` subprocess.

python -m dbt_project build                 # dbt build (seeds, models, tests, quality hook)
python -m dbt_project build --skip-unit-tests --selector daily      # the daily run
python -m dbt_project build --skip-unit-tests --selector intraday   # the stream marts, more often
python -m dbt_project dbt -- source freshness
python -m dbt_project docs                  # dbt docs generate, then serve on 127.0.0.1:8580
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from dbt_project.runner import run_dbt, run_dbt_in_process
from dbt_project.settings import TransformSettings

app = typer.Typer(help="Run the dbt project (staging, marts, quality) against the pipeline database.")
console = Console(stderr=True)


def _finish(code: int) -> None:
    if code != 0:
        console.print(f"[red]dbt exited with {code}[/red]")
    raise typer.Exit(code)


def _exit_now(code: int) -> None:
    """Flush what dbt and we wrote, then exit at once with `code` (no interpreter teardown).

    The exit handlers still run (they are quick): multiprocessing's releases the semaphores dbt
    created, which its resource tracker would otherwise report as leaked.
    """
    if code != 0:
        console.print(f"[red]dbt exited with {code}[/red]")
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.command()
def build(
    database: str = typer.Option(None, help="Database to build in (default: PG_DATABASE from .env)."),
    full_refresh: bool = typer.Option(False, "--full-refresh", help="Rebuild incremental models."),
    select: str = typer.Option(None, "--select", "-s", help="dbt node selection, e.g. 'fct_daily_prices+'."),
    selector: str = typer.Option(
        None, help="A selector of selectors.yml: 'daily' (the daily marts) or 'intraday' (the stream marts)."
    ),
    skip_unit_tests: bool = typer.Option(
        False,
        "--skip-unit-tests",
        help="Leave out the unit tests (they check the code, not the data): the scheduled daily run.",
    ),
    target_path: Path = typer.Option(
        None, help="Folder for compiled SQL, artifacts and logs (default: dbt_project/target)."
    ),
) -> None:
    """dbt build: seeds, models, data tests, unit tests; the on-run-end hook records the quality score."""
    args = ["build"] + (["--full-refresh"] if full_refresh else []) + (["--select", select] if select else [])
    args += ["--selector", selector] if selector else []
    if skip_unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    # dbt reads a relative --target-path from the project folder; the CLI's user means the current one
    target = target_path.resolve() if target_path else None
    _exit_now(run_dbt_in_process(args, database=database, target_path=target).returncode)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dbt(
    ctx: typer.Context,
    database: str = typer.Option(None, help="Database to use (default: PG_DATABASE from .env)."),
) -> None:
    """Any dbt command, e.g. `python -m dbt_project dbt -- source freshness`."""
    _exit_now(run_dbt_in_process(list(ctx.args), database=database).returncode)


@app.command()
def docs(
    database: str = typer.Option(None, help="Database to document (default: PG_DATABASE from .env)."),
    serve: bool = typer.Option(True, help="Serve the site after generating it."),
) -> None:
    """dbt docs generate, then dbt docs serve on TRANSFORM_DOCS_HOST:TRANSFORM_DOCS_PORT."""
    t = TransformSettings()
    result = run_dbt(["docs", "generate"], database=database, capture=False)
    if result.returncode != 0 or not serve:
        _finish(result.returncode)
    console.print(f"serving dbt docs on http://{t.docs_host}:{t.docs_port}")
    args = ["docs", "serve", "--host", t.docs_host, "--port", str(t.docs_port), "--no-browser"]
    _finish(run_dbt(args, database=database, capture=False).returncode)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s level=%(levelname)s %(name)s %(message)s")
    app()
