"""`python -m devstack`: start, stop and inspect the local stack."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from common.db import DatabaseUnavailable
from common.migrate import MigrationError, migrate
from devstack import stack
from devstack.errors import StackError

app = typer.Typer(
    help="The local stack (PostgreSQL, Kafka in KRaft mode, Prometheus) as local processes, "
    "with state under the project's .state/ folder.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(1)


@app.callback()
def _logging(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("confluent_kafka").setLevel(logging.WARNING)


@app.command()
def up(timeout: float = typer.Option(90.0, help="Seconds to wait for each service to answer.")) -> None:
    """Start PostgreSQL, Kafka and Prometheus (already running ones are kept), apply database
    migrations and create the contract's Kafka topics."""
    started = time.monotonic()
    try:
        with console.status("starting the local stack..."):
            reports = stack.up(timeout)
    except (StackError, MigrationError, DatabaseUnavailable) as exc:
        _fail(str(exc))
    for r in reports:
        if r.was_running:
            console.print(f"[green]✓[/] {r.name} was already running and answers")
        else:
            console.print(f"[green]✓[/] {r.name} started, healthy after {r.seconds_to_healthy:.1f} s")
    console.print(f"stack up in {time.monotonic() - started:.1f} s")


@app.command()
def down() -> None:
    """Stop every service of the local stack (data is kept)."""
    try:
        stopped = stack.down()
    except StackError as exc:
        _fail(str(exc))
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status(
    check: bool = typer.Option(False, "--check", help="Exit 1 unless every service is healthy."),
) -> None:
    """Show each service, its address, pid and whether it answers."""
    rows = stack.status()
    table = Table(title="local stack")
    for col in ("service", "address", "pid", "state"):
        table.add_column(col)
    table.add_column("memory (PSS)", justify="right")
    for row in rows:
        state = (
            "[green]healthy[/]"
            if row.healthy
            else ("[yellow]not answering[/]" if row.running else "[red]stopped[/]")
        )
        memory = f"{row.pss_bytes / 2**20:,.0f} MiB" if row.pss_bytes else "-"
        table.add_row(row.name, row.address, str(row.pid or "-"), state, memory)
    total = sum(r.pss_bytes for r in rows)
    table.add_section()
    table.add_row("total", "", "", f"{sum(r.running for r in rows)} running", f"{total / 2**30:,.2f} GiB")
    Console().print(table)
    health = stack.kafka_health() if any(r.name.startswith("kafka") and r.healthy for r in rows) else None
    if health is not None:
        leaders = ", ".join(f"{broker}: {n}" for broker, n in health.leaders.items())
        Console().print(
            f"kafka brokers {', '.join(map(str, health.brokers))}; partitions led by broker: {leaders}; "
            f"under-replicated partitions: {health.under_replicated}; offline: {health.offline}",
            highlight=False,
        )
    if check and not all(r.healthy for r in rows if r.running or not r.optional):
        raise typer.Exit(1)


@app.command()
def airflow(
    unpause: bool = typer.Option(False, "--unpause", help="Unpause the project's DAGs once it runs."),
    timeout: float = typer.Option(180.0, help="Seconds to wait for each Airflow process to answer."),
) -> None:
    """Start Airflow (api-server, scheduler, dag-processor; the triggerer if AF_TRIGGERER) and
    statsd_exporter; the local stack must be up. Prints the UI's address, its user and where the
    generated password is."""
    from common.settings import stack_settings
    from devstack import airflow as af
    from devstack.process import wait_until
    from devstack.statsd import StatsdExporter
    from orchestration.settings import airflow_settings

    settings = airflow_settings()
    instance = af.Airflow(settings)
    started = time.monotonic()
    try:
        exporter = StatsdExporter(settings, stack_settings().state_dir)
        exporter.start()
        if not wait_until(exporter.healthy, 20):
            raise StackError(f"statsd-exporter did not become healthy; {exporter.failure_hint()}")
        with console.status("starting Airflow (first start: database migration and dbt parse)..."):
            names = af.start(instance, timeout)
        if unpause:
            af.unpause(instance, list(af.PROJECT_DAGS))
    except (StackError, DatabaseUnavailable) as exc:
        _fail(str(exc))
    verb = f"started {', '.join(names)} in {time.monotonic() - started:.1f} s" if names else "was running"
    console.print(f"[green]✓[/] Airflow {verb}" + ("; DAGs unpaused" if unpause else ""))
    console.print(
        f"Airflow UI: {settings.api_url}  user: {settings.ui_user}  "
        f"password: in {instance.passwords_file} (mode 0600)"
    )


@app.command()
def spark(stop: bool = typer.Option(False, "--stop", help="Stop the master and the workers.")) -> None:
    """Start a Spark standalone cluster on loopback from pyspark's own jars: a master and
    SPARK_CLUSTER_WORKERS workers. The streaming job runs on it with STREAM_MASTER=<the master URL>."""
    from common.settings import stack_settings
    from devstack import spark as spark_cluster
    from devstack.process import wait_until

    settings = spark_cluster.SparkClusterSettings()
    master, workers = spark_cluster.cluster(settings, stack_settings().state_dir)
    if stop:
        stopped = [d.name for d in [*workers, master] if d.stop()]
        console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return
    started = time.monotonic()
    try:
        for group in ([master], workers):  # workers register with the master: it answers first
            for daemon in group:
                daemon.start()
            for daemon in group:
                if not wait_until(daemon.healthy, 180):
                    raise StackError(f"{daemon.name} did not become healthy; {daemon.failure_hint()}")
    except StackError as exc:
        _fail(str(exc))
    took = time.monotonic() - started
    console.print(
        f"[green]✓[/] Spark master {settings.master_url} (UI http://{settings.host}:"
        f"{settings.master_webui_port}) and {len(workers)} workers of {settings.worker_cores} core(s) up "
        f"in {took:.1f} s; run the job on it with STREAM_MASTER={settings.master_url}",
        highlight=False,
    )


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending database migrations (db/migrations) and set role passwords from .env."""
    try:
        applied = migrate()
    except (MigrationError, StackError, DatabaseUnavailable) as exc:
        _fail(str(exc))
    console.print(f"applied: {', '.join(applied) or 'nothing, already up to date'}")


@app.command()
def demo(
    symbols: int = typer.Option(20, help="Number of synthetic symbols (SYN0000, ...)."),
    rate: float = typer.Option(1_000.0, help="Synthetic ticks per second over all symbols."),
    history_days: int = typer.Option(320, help="Trading days of daily history replayed first."),
    wait: float = typer.Option(300.0, help="Seconds to wait for the streaming job to land the data."),
    source: str = typer.Option(
        "synthetic", help="synthetic (offline), or yahoo: live quotes and daily history from Yahoo Finance."
    ),
    yahoo_symbols: str = typer.Option(
        "BTC-USD,ETH-USD,AAPL,MSFT,SPY", help="Symbols of the yahoo source (in the instruments file)."
    ),
) -> None:
    """Run the whole pipeline on the offline source: daily history replay and live synthetic ticks
    through ingest -> Kafka -> Spark -> PostgreSQL, then dbt build. Ingest and stream keep running."""
    from devstack import demo as demo_run

    if source not in ("synthetic", "yahoo"):
        _fail(f"--source {source!r}: synthetic or yahoo")
    plan = demo_run.DemoPlan(
        symbols=symbols, history_days=history_days, tick_rate=rate, source=source, yahoo_symbols=yahoo_symbols
    )
    try:
        demo_run.run(plan, console, wait_s=wait)
    except (StackError, DatabaseUnavailable) as exc:
        _fail(str(exc))


@app.command()
def chaos(
    hold: list[str] = typer.Option(
        None,
        help="Seconds a fault is held, as FAULT=S (repeatable) or S for every fault (default: each its "
        "own, long enough for its alert to fire).",
    ),
    only: list[str] = typer.Option(None, help="Only these faults: kafka, stream, postgres, scheduler."),
    report: Path = typer.Option(None, help="Also write the faults and the accounting to this JSON file."),
) -> None:
    """Break each part of the running demo in turn (Kafka, the streaming job, PostgreSQL, Airflow's
    scheduler), time the alerts and the catch-up, then account for every tick written meanwhile."""
    from dataclasses import asdict

    from devstack import chaos as chaos_run

    holds: dict[str, float] = {}
    for item in hold or []:
        name, _, seconds = item.rpartition("=")
        try:
            holds[name or "*"] = float(seconds)
        except ValueError:
            _fail(f"--hold {item!r}: expected seconds or FAULT=seconds")
    reports, accounting = chaos_run.run(console, holds=holds, only=only or None)
    if report:
        report.write_text(
            json.dumps({"faults": [asdict(r) for r in reports], "accounting": asdict(accounting)}, indent=2)
        )
    if accounting.lost or accounting.landed_twice or accounting.bars_differing:
        _fail("ticks were lost or landed twice, or closed bars differ from their ticks (see above)")


@app.command("demo-stop")
def demo_stop() -> None:
    """Stop the demo's background ingest and streaming processes (the stack keeps running)."""
    from devstack import demo as demo_run

    stopped = demo_run.stop(demo_run.DemoPlan.current())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def partitions() -> None:
    """Make partitions ahead and drop those past retention, as raw.partition_policy says."""
    try:
        actions = stack.maintain_partitions()
    except DatabaseUnavailable as exc:
        _fail(str(exc))
    for action, name in actions:
        console.print(f"{action}: {name}")
    console.print(f"{len(actions)} partition actions")


@app.command()
def topics() -> None:
    """Create the contract's Kafka topics (common/contract.py) on the configured broker."""
    from common.settings import kafka_settings, stack_settings
    from devstack.kafka import Kafka

    try:
        created = Kafka(kafka_settings(), stack_settings().state_dir).ensure_topics()
    except StackError as exc:
        _fail(str(exc))
    console.print(f"created: {', '.join(created) or 'nothing, all topics exist'}")


if __name__ == "__main__":
    app()
