"""`python -m ingest stream|backfill|replay|synthetic`: run one source through validation into Kafka."""

from __future__ import annotations

import logging
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common.contract import BarInterval, Source, Topic
from ingest import metrics
from ingest.errors import IngestError
from ingest.instruments import Instruments, load_instruments
from ingest.pipeline import RunStats
from ingest.service import build_pipeline, finish_run, metrics_sync, run_records, stop_on_signals
from ingest.settings import DEFAULT_METRICS_PORT, IngestSettings
from ingest.sources.replay import ReplaySource
from ingest.sources.synthetic import SyntheticSource
from ingest.sources.yahoo import YahooHistorySource, YahooLiveSource

app = typer.Typer(
    help="Ingest market data from Yahoo Finance, files or a synthetic generator into the Kafka contract "
    "topics. Every record is validated; refused ones go to the dead-letter topic with their reason.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

Bootstrap = Annotated[
    str | None,
    typer.Option(help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS from .env)."),
]
MetricsPort = Annotated[
    int | None,
    typer.Option(
        help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics (default INGEST_METRICS_PORT, "
        f"{DEFAULT_METRICS_PORT}; 0 = off; backfill serves them only when a port is given)."
    ),
]
SymbolsFile = Annotated[
    Path | None,
    typer.Option(
        help="Instruments CSV with columns symbol, asset_class[, calendar, tick_size, currency] "
        "(default: INGEST_INSTRUMENTS_FILE, the bundled list)."
    ),
]
Symbols = Annotated[
    str | None, typer.Option(help="Comma-separated symbols (default: every symbol in the instruments file).")
]
TopicPrefix = Annotated[
    str | None,
    typer.Option(
        help="Write to '<prefix>.ticks', '<prefix>.bars' and '<prefix>.deadletter' "
        "instead of the contract topics (the topics must exist)."
    ),
]
LogLevel = Annotated[str, typer.Option(help="Log level: DEBUG, INFO, WARNING, ERROR.")]


def _setup(
    log_level: str, metrics_port: int | None, settings: IngestSettings, long_running: bool = True
) -> None:
    """Logging, and the metrics endpoint: on by default for long-running commands; a batch command
    serves it only when a port is given (flag or INGEST_METRICS_PORT)."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    if metrics_port is None:
        explicit = "metrics_port" in settings.model_fields_set
        metrics_port = settings.metrics_port if long_running or explicit else 0
    try:
        metrics.serve(metrics_port, settings.metrics_host)
    except IngestError as exc:
        raise _fail(exc) from exc


def _topics(prefix: str | None) -> dict[Topic, str] | None:
    if not prefix:
        return None
    return {
        Topic.TICKS: f"{prefix}.ticks",
        Topic.BARS: f"{prefix}.bars",
        Topic.DEADLETTER: f"{prefix}.deadletter",
    }


def _instruments(path: Path | None, settings: IngestSettings) -> Instruments:
    return load_instruments(path or settings.instruments_file)


def _symbols(symbols: str | None, instruments: Instruments) -> list[str]:
    if not symbols:
        return instruments.symbols
    return [s.strip().upper() for s in symbols.split(",") if s.strip()]


def _report(stats: RunStats, pending: int = 0) -> None:
    rejected = ", ".join(f"{k}={v}" for k, v in sorted(stats.rejected.items())) or "none"
    console.print(
        f"[bold]read[/] {stats.read}  [green]accepted[/] {stats.accepted}  "
        f"[yellow]dead-lettered[/] {stats.dead_lettered} ({rejected})"
    )
    if pending:
        console.print(f"[red]{pending} records were still unacknowledged at exit[/]")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/] {exc}", soft_wrap=True)  # one line, however long
    return typer.Exit(code=2)


@app.command()
def stream(
    symbols: Symbols = None,
    symbols_file: SymbolsFile = None,
    url: Annotated[str | None, typer.Option(help="Streaming URL (default: INGEST_YAHOO_STREAM_URL).")] = None,
    max_records: Annotated[
        int | None, typer.Option(help="Stop after this many records (default: run).")
    ] = None,
    bootstrap: Bootstrap = None,
    metrics_port: MetricsPort = None,
    topic_prefix: TopicPrefix = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Stream live Yahoo quotes (yfinance's WebSocket client) into the ticks topic until Ctrl-C/SIGTERM."""
    settings = IngestSettings()
    _setup(log_level, metrics_port, settings)
    try:
        instruments = _instruments(symbols_file, settings)
        pipeline = build_pipeline(
            Source.YAHOO,
            bootstrap=bootstrap,
            settings=settings,
            instruments=instruments,
            topics=_topics(topic_prefix),
        )
        source = YahooLiveSource(
            _symbols(symbols, instruments), settings, instruments, url=url, max_records=max_records
        )
        stop = threading.Event()
        watcher = threading.Thread(target=lambda: (stop.wait(), source.close()), daemon=True)
        watcher.start()
        stats = run_records(pipeline, source.records(), Source.YAHOO, stop=stop)
        source.close()
    except IngestError as exc:
        raise _fail(exc) from exc
    _report(stats, pipeline.sink.pending())


@app.command()
def backfill(
    symbols: Symbols = None,
    symbols_file: SymbolsFile = None,
    interval: Annotated[
        BarInterval, typer.Option(help="Bar interval: 1m, 5m, 15m, 30m, 1h or 1d.")
    ] = BarInterval.D1,
    start: Annotated[
        datetime | None, typer.Option(help="First day (YYYY-MM-DD), in the exchange's zone.")
    ] = None,
    end: Annotated[
        datetime | None, typer.Option(help="Day after the last one (YYYY-MM-DD), exclusive.")
    ] = None,
    bootstrap: Bootstrap = None,
    metrics_port: MetricsPort = None,
    topic_prefix: TopicPrefix = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Fetch history bars through yfinance (raw OHLC plus adjusted close) into the bars topic.

    Yahoo keeps 1m bars for about 7 days and other intraday bars for about 60 days; daily bars go back
    decades. Calls are rate limited (INGEST_YAHOO_REQUESTS_PER_MINUTE), retried with backoff and
    guarded by a circuit breaker.
    """
    settings = IngestSettings()
    _setup(log_level, metrics_port, settings, long_running=False)
    try:
        instruments = _instruments(symbols_file, settings)
        chosen = _symbols(symbols, instruments)
        pipeline = build_pipeline(
            Source.YAHOO,
            bootstrap=bootstrap,
            settings=settings,
            instruments=instruments,
            topics=_topics(topic_prefix),
            live=False,
        )
        source = YahooHistorySource(chosen, interval, start, end, settings)
        with _progress() as progress:
            task = progress.add_task("backfill", total=len(chosen))

            def records():
                for symbol in chosen:
                    source.symbols = [symbol]
                    progress.update(task, description=f"backfill {symbol}")
                    yield from source.records()
                    progress.advance(task)

            stats = run_records(pipeline, records(), Source.YAHOO)
    except IngestError as exc:
        raise _fail(exc) from exc
    _report(stats, pipeline.sink.pending())
    for symbol, reason in source.failed.items():
        console.print(f"[red]failed[/] {symbol}: {reason}")
    if source.failed:
        raise typer.Exit(code=1)


@app.command()
def replay(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet file of ticks or OHLCV bars.")],
    kind: Annotated[
        str | None,
        typer.Option(help="'ticks' or 'bars' (default: bars when open/high/low/close columns exist)."),
    ] = None,
    speed: Annotated[
        float, typer.Option(help="1 = recorded pace, 10 = ten times faster, 0 = as fast as possible.")
    ] = 0.0,
    rebase: Annotated[bool, typer.Option(help="Shift event times so the first record happens now.")] = False,
    symbols_file: SymbolsFile = None,
    bootstrap: Bootstrap = None,
    metrics_port: MetricsPort = None,
    topic_prefix: TopicPrefix = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Replay recorded ticks (symbol, event_time_ms, price, size, ...) or bars (symbol, interval,
    event_time_ms, open, high, low, close, volume, ...) from a file."""
    settings = IngestSettings()
    _setup(log_level, metrics_port, settings)
    try:
        topic = {None: None, "ticks": Topic.TICKS, "bars": Topic.BARS}.get(kind, "bad")
        if topic == "bad":
            raise IngestError(f"--kind must be 'ticks' or 'bars', got {kind!r}")
        source = ReplaySource(path, kind=topic, speed=speed, rebase=rebase)
        instruments = _instruments(symbols_file, settings)
        pipeline = build_pipeline(
            Source.REPLAY,
            bootstrap=bootstrap,
            settings=settings,
            instruments=instruments,
            topics=_topics(topic_prefix),
            live=rebase,
        )
        with _progress() as progress:
            task = progress.add_task(f"replay {path.name}", total=source.count())
            stats = run_records(
                pipeline,
                source.records(),
                Source.REPLAY,
                on_progress=lambda n: progress.update(task, completed=n),
            )
    except IngestError as exc:
        raise _fail(exc) from exc
    _report(stats, pipeline.sink.pending())


@app.command()
def synthetic(
    rate: Annotated[float, typer.Option(help="Target ticks per second over all symbols.")] = 1_000.0,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (default: until Ctrl-C/SIGTERM).")
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many ticks.")] = None,
    symbols: Annotated[int, typer.Option(help="Number of generated symbols SYN0000, SYN0001, ...")] = 50,
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed gives the same prices and sizes.")
    ] = 42,
    max_speed: Annotated[
        bool, typer.Option(help="Ignore --rate pacing and produce as fast as possible.")
    ] = False,
    bootstrap: Bootstrap = None,
    metrics_port: MetricsPort = None,
    topic_prefix: TopicPrefix = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Generate seeded ticks (geometric Brownian motion with jumps, U-shaped intraday volume)."""
    settings = IngestSettings()
    _setup(log_level, metrics_port, settings)
    try:
        source = SyntheticSource(
            symbols, rate=rate, seed=seed, count=count, duration_s=duration, paced=not max_speed
        )
        pipeline = build_pipeline(
            Source.SYNTHETIC,
            bootstrap=bootstrap,
            settings=settings,
            instruments=source.instruments(),
            topics=_topics(topic_prefix),
        )
        stop = threading.Event()
        with stop_on_signals(stop), metrics_sync(pipeline, Source.SYNTHETIC, stop=stop):
            try:
                pipeline.run_arrays(source.arrays(), Source.SYNTHETIC, stop=stop)
            finally:
                pending = finish_run(pipeline, Source.SYNTHETIC)
    except IngestError as exc:
        raise _fail(exc) from exc
    _report(pipeline.stats, pending)


def main() -> None:
    app()
