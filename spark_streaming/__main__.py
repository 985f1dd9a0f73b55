"""CLI: `python -m spark_streaming [run] [options]` starts the streaming job (see --help)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from spark_streaming.settings import StreamingSettings

app = typer.Typer(
    help="Spark Structured Streaming job: Kafka ticks/bars/dead letters -> PostgreSQL raw and rt tables, "
    "exactly once. Every option is also a STREAM_<NAME> setting (environment or .env).",
    no_args_is_help=False,
    add_completion=False,
)


def _settings(**overrides) -> StreamingSettings:
    given = {k: v for k, v in overrides.items() if v is not None}
    return StreamingSettings(**given)


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context) -> None:
    """Without a command: run the job with the settings from the environment."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@app.command()
def run(
    master: str = typer.Option(None, help="Spark master URL (default local[2])."),
    query_name: str = typer.Option(None, help="Query name: ledger, heartbeat and log key."),
    checkpoint_dir: Path = typer.Option(None, help="Checkpoint folder (default .state/checkpoints/...)."),
    database: str = typer.Option(None, help="PostgreSQL database (default PG_DATABASE)."),
    starting_offsets: str = typer.Option(None, help="Kafka startingOffsets for a new checkpoint."),
    ticks_topic: str = typer.Option(None, help="Ticks topic (default from the contract)."),
    bars_topic: str = typer.Option(None, help="Bars topic (default from the contract)."),
    deadletter_topic: str = typer.Option(None, help="Dead-letter topic (default from the contract)."),
    metrics_port: int = typer.Option(None, help="Prometheus port; 0 disables it."),
    shards: int = typer.Option(None, help="Split the input into this many queries (default 1)."),
    shard: int = typer.Option(None, help="The shard to run (0..shards-1); unset: every shard, one app."),
    log_level: str = typer.Option("INFO", help="Python log level."),
) -> None:
    """Run the streaming query until SIGTERM/SIGINT, restarting it from its checkpoint after failures."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
    )
    from spark_streaming.job import run as run_job

    s = _settings(
        master=master,
        query_name=query_name,
        checkpoint_dir=checkpoint_dir,
        database=database,
        starting_offsets=starting_offsets,
        ticks_topic=ticks_topic,
        bars_topic=bars_topic,
        deadletter_topic=deadletter_topic,
        metrics_port=metrics_port,
        shards=shards,
        shard=shard,
    )
    raise typer.Exit(run_job(s))


@app.command()
def settings() -> None:
    """Show the effective settings (a shard's own query name, checkpoint and port with STREAM_SHARD)."""
    from spark_streaming.shards import shard_settings

    s = StreamingSettings()
    if s.shards == 1 or s.shard is not None:
        s = shard_settings(s)
    table = Table("setting", "value", title="spark_streaming settings")
    for k, v in s.model_dump().items():
        table.add_row(k, str(v))
    Console().print(table)


if __name__ == "__main__":
    app()
