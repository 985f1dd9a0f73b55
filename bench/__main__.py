"""`python -m bench`: run every benchmark module in bench/ and print its figures."""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from common.settings import stack_settings

app = typer.Typer(add_completion=False, help=__doc__)
console = Console()


def discover() -> dict[str, object]:
    package_dir = Path(__file__).parent
    modules = {}
    for info in pkgutil.iter_modules([str(package_dir)]):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "run", None)):
            modules[info.name] = module
    return modules


def _flatten(prefix: str, value, out: dict[str, object]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value


@app.command()
def main(
    only: list[str] = typer.Option(None, "--only", help="Run only these benchmarks (module names)."),
    quick: bool = typer.Option(False, "--quick", help="Smaller sizes, for a smoke run."),
    list_: bool = typer.Option(False, "--list", help="List the benchmarks and exit."),
) -> None:
    """Run the benchmarks and write their figures to .state/bench/<time>.json."""
    modules = discover()
    if list_:
        for name, module in modules.items():
            summary = (module.__doc__ or "").strip().splitlines()[:1]
            console.print(f"{name}: {' '.join(summary)}")
        return
    selected = {n: m for n, m in modules.items() if not only or n in only}
    if not selected:
        raise typer.BadParameter(f"no benchmark named {only}; have {sorted(modules)}")
    results: dict[str, object] = {}
    for name, module in selected.items():
        console.rule(name)
        started = time.monotonic()
        results[name] = module.run(quick=quick)
        console.print(f"{name} took {time.monotonic() - started:.1f} s")
    out_dir = stack_settings().state_dir / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    table = Table(title="benchmark figures")
    table.add_column("figure")
    table.add_column("value", justify="right")
    flat: dict[str, object] = {}
    _flatten("", results, flat)
    for key, value in flat.items():
        table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"written to {out}")


if __name__ == "__main__":
    app()
