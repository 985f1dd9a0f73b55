"""Dashboard benchmark: each panel's query, the Market page's first render, and tick-to-screen delay.

Figures:
  query_ms.<panel>       p50/p95 (ms) of each panel's SQL as market_reader, through the dashboard's
                         pool into a DataFrame (server_p50: PostgreSQL's EXPLAIN ANALYZE execution
                         time alone), on the dbt benchmark's
                         database (market_dbt_bench: 500 symbols x 10 years of daily marts; built by
                         bench/dbt.py's steps first when it is missing), plus one stream day of
                         1-minute bars per symbol, ticks and dead letters added here; goal < 50 ms
  render_s.cold/warm     time from navigation start to the Market page's charts drawn and the script
                         done, measured in Debian's Chromium (performance.now()): the first load after
                         the server started, with an empty browser cache (cold), and the median of
                         loads of other symbols in the same browser context (warm: cached files);
                         goal < 1.5 s
  tick_to_screen_s       a private streaming job on private topics (bench/streaming.py's harness),
                         ticks produced at 1,000/s over 20 symbols; the live Market page of one symbol
                         in Chromium; for each change of the page's "As of" (the shown tick's event
                         time, ms, set at produce time) the delay to the moment the browser showed it;
                         p50/p95 over a minute after a warm-up; goal p95 < 1.5 s
Quick mode: 50 symbols, 20 s of ticks.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import numpy as np

from common.contract import Topic
from common.db import connect
from common.migrate import migrate
from common.settings import kafka_settings, postgres_settings, stack_settings
from dashboard import queries
from dashboard.server import serving
from dbt_project import sample_data

log = logging.getLogger(__name__)

DATABASE = "market_dbt_bench"
CHROMIUM = "/usr/bin/chromium"
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHARTS_DRAWN = (
    "document.querySelector(\"[data-testid='stApp'][data-test-script-state='notRunning']\")"
    " && [...document.querySelectorAll('.js-plotly-plot')].some(p => p.querySelector('.cartesianlayer'))"
    " && !document.querySelector('[data-testid=\"stSkeleton\"]')"
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_bench_database(quick: bool) -> list[str]:
    """The dbt benchmark's database with its marts (built by bench.dbt when missing); its symbols."""
    admin = connect("admin", postgres_settings(), database="postgres")
    try:
        with admin.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (DATABASE,))
            exists = cur.fetchone() is not None
    finally:
        admin.close()
    settings = postgres_settings().model_copy(update={"database": DATABASE})
    symbols: list[str] = []
    if exists:
        conn = connect("admin", settings)
        try:
            with conn.cursor() as cur:
                cur.execute("select to_regclass('marts.dim_symbols') is not null")
                if cur.fetchone()[0]:
                    cur.execute("select symbol from marts.dim_symbols where trading_days > 0 order by 1")
                    symbols = [s for (s,) in cur.fetchall()]
        finally:
            conn.close()
    if not symbols:
        from bench import dbt as dbt_bench

        dbt_bench.run(quick=quick)
        return _ensure_bench_database(quick)
    return symbols


def _add_stream_day(symbols: list[str]) -> None:
    """A 390-minute stream day ending now for every symbol, a few ticks each, 30 days of dead letters."""
    settings = postgres_settings().model_copy(update={"database": DATABASE})
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=389)
    writer = connect("writer", settings)
    try:
        with writer.cursor() as cur:
            cur.execute("select count(*) from rt.bars_1m where bar_start >= %s", (start,))
            if cur.fetchone()[0] >= len(symbols) * 300:
                return
            # an earlier run's day overlaps this one: replace it
            for table in ("rt.bars_1m", "rt.indicators_1m"):
                cur.execute(f"delete from {table} where bar_start >= %s - interval '1 day'", (start,))
            cur.execute("delete from rt.signals where signal_time >= %s - interval '1 day'", (start,))
        writer.commit()
        for i, symbol in enumerate(symbols):
            sample_data.load_rt_minutes(writer, symbol, start, 390, seed=i, price=50.0, signal_every=45)
        with writer.cursor() as cur:
            cur.execute(
                "select raw.ensure_partitions('raw.ticks', %s, %s)", (now - timedelta(minutes=5), now)
            )
            cur.execute(
                "select raw.ensure_partitions('raw.dead_letters', %s, %s)", (now - timedelta(days=31), now)
            )
            cur.execute(
                "insert into raw.ticks (symbol, event_time, price, size, source, ingest_time)"
                " select s, %s - make_interval(secs => k), 50 + k / 100.0, 1, 'bench', now()"
                " from unnest(%s::text[]) as s, generate_series(1, 20) as k on conflict do nothing",
                (now, symbols),
            )
            cur.execute(
                "insert into raw.dead_letters (failed_at, kafka_topic, kafka_partition, kafka_offset, stage,"
                " reason, detail, source, intended_topic, payload)"
                " select %s - make_interval(mins => k * 4), 'market.deadletter.v1', 0, k,"
                " case when k %% 3 = 0 then 'ingest' else 'stream' end,"
                " (array['bad_json', 'stale_time', 'bad_symbol', 'out_of_range'])[k %% 4 + 1], 'bench',"
                " 'bench', 'market.ticks.v1', '{}' from generate_series(1, 10000) as k"
                " on conflict do nothing",
                (now,),
            )
        writer.commit()
        with writer.cursor() as cur:
            for table in ("rt.bars_1m", "rt.indicators_1m", "rt.signals", "raw.ticks", "raw.dead_letters"):
                cur.execute(f"analyze {table}")
        writer.commit()
    finally:
        writer.close()


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
    }


def _query_times(symbols: list[str], rounds: int = 40) -> dict[str, dict[str, float]]:
    """Each panel's statement through the dashboard's own connection pool, other symbols each round."""
    os.environ["DASHBOARD_DATABASE"] = DATABASE
    conn = connect("admin", postgres_settings().model_copy(update={"database": DATABASE}))
    with conn.cursor() as cur:
        cur.execute("select max(last_trade_date) from marts.dim_symbols")
        last_day = cur.fetchone()[0]
    conn.close()
    year = (last_day - timedelta(days=365), last_day)
    ten_years = (last_day - timedelta(days=3650), last_day)
    since = datetime.now(UTC) - timedelta(hours=7)
    day = datetime.now(UTC).date()
    panels = {
        "symbols": lambda s: (queries.SYMBOLS_SQL, {}),
        "daily_prices_1y": lambda s: (
            queries.DAILY_PRICES_SQL,
            {"symbol": s, "start": year[0], "end": year[1]},
        ),
        "daily_prices_10y": lambda s: (
            queries.DAILY_PRICES_SQL,
            {"symbol": s, "start": ten_years[0], "end": ten_years[1]},
        ),
        "ma_crosses_10y": lambda s: (
            queries.MA_CROSSES_SQL,
            {"symbol": s, "start": ten_years[0], "end": ten_years[1]},
        ),
        "live_bars": lambda s: (queries.LIVE_BARS_SQL, {"symbol": s}),
        "live_signals": lambda s: (queries.LIVE_SIGNALS_SQL, {"symbol": s, "since": since}),
        "latest_tick": lambda s: (queries.LATEST_TICK_SQL, {"symbol": s}),
        "intraday_bars_mart": lambda s: (
            queries.INTRADAY_BARS_SQL,
            {"symbol": s, "start": day, "end": day + timedelta(days=1)},
        ),
        "compare_5_symbols_1y": lambda s: (
            queries.COMPARE_SQL,
            {"symbols": [s, *symbols[:4]], "start": year[0], "end": year[1]},
        ),
        "quality_scores": lambda s: (queries.QUALITY_SCORES_SQL, {"runs": 200}),
        "failing_tests": lambda s: (queries.FAILING_TESTS_SQL, {"runs": 5}),
        "dead_letters_30d": lambda s: (queries.DEAD_LETTERS_SQL, {"days": 30}),
    }
    out = {}
    for name, make in panels.items():
        times, server = [], []
        for i in range(rounds + 5):
            sql, params = make(symbols[(i * 37) % len(symbols)])
            _, ms = queries.timed(sql, params)
            if i >= 5:  # the pool's first connections and plans
                times.append(ms)
            if i % 8 == 0:  # PostgreSQL's own execution time of the same statement
                plan = queries.run(f"explain (analyze, format json) {sql}", params).iloc[0, 0]
                server.append(plan[0]["Execution Time"])
        out[name] = {**_percentiles(times), "server_p50": round(float(np.percentile(server, 50)), 2)}
    return out


def _render_times(symbols: list[str], warm_loads: int = 5) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    log_file = stack_settings().state_dir / "bench" / "dashboard-render.log"
    loads: list[float] = []
    phases: list[dict[str, float]] = []
    with serving(_free_port(), log_file, {"DASHBOARD_DATABASE": DATABASE}) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        # one browser context: its first load is a first visit (empty cache: 4.7 MB of Plotly alone),
        # the others a returning user's (static files are served immutable), each a new page
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        try:
            for i in range(warm_loads + 1):
                page = context.new_page()
                symbol = symbols[(i * 53 + 1) % len(symbols)]
                page.goto(f"{url}/?symbol={symbol}&timeframe=daily", wait_until="commit")
                marks = page.evaluate(_RENDER_MARKS)  # ms since navigation start
                loads.append(marks["done"] / 1000)
                phases.append(marks)
                page.close()
        finally:
            browser.close()
    warm = phases[1:]
    return {
        "cold": round(loads[0], 3),
        "warm_median": round(statistics.median(loads[1:]), 3),
        "loads": [round(x, 3) for x in loads],
        # where a warm load's time goes (medians, s since navigation start): the app's frame is in
        # the page, the script's first element (the header) arrived, the chart is drawn and done
        "warm_phases_s": {
            key: round(statistics.median(m[key] for m in warm) / 1000, 3) for key in ("app", "metric", "done")
        },
    }


_RENDER_MARKS = """() => new Promise(resolve => {
  const marks = {};
  const tick = () => {
    const now = performance.now();
    if (!marks.app && document.querySelector("[data-testid='stApp']")) marks.app = now;
    if (!marks.metric && document.querySelector('[data-testid="stMetric"]')) marks.metric = now;
    if (CHARTS_DRAWN) { marks.done = now; resolve(marks); return; }
    requestAnimationFrame(tick);
  };
  tick();
})""".replace("CHARTS_DRAWN", CHARTS_DRAWN)


_WATCH_AS_OF = """
() => {
  window.__seen = [];
  let last = null;
  setInterval(() => {
    for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
      const label = m.querySelector('[data-testid="stMetricLabel"]');
      if (label && label.innerText.trim() === 'As of (UTC)') {
        const text = m.querySelector('[data-testid="stMetricValue"]').innerText.trim();
        if (text !== last) { last = text; window.__seen.push([Date.now(), text]); }
      }
    }
  }, 5);
}
"""


def _tick_to_screen(quick: bool) -> dict[str, object]:
    """Ticks at 1,000/s through a private streaming job into bench_streaming; the page in Chromium."""
    from playwright.sync_api import sync_playwright

    from bench import streaming as sb
    from spark_streaming.feed import create_topics, delete_topics
    from spark_streaming.job import build_session
    from spark_streaming.settings import StreamingSettings

    migrate(postgres_settings().model_copy(update={"database": sb.DATABASE}))
    seconds, warmup = (20, 20) if quick else (60, 45)
    rate, symbols = 1_000.0, 20
    tag = uuid.uuid4().hex[:8]
    topics = sb._topics(tag)
    bootstrap = kafka_settings().bootstrap_servers
    create_topics(bootstrap, topics)
    spark = build_session(StreamingSettings())
    log_file = stack_settings().state_dir / "bench" / "dashboard-live.log"
    try:
        with (
            sb._Run(spark, tag, topics) as run,
            serving(_free_port(), log_file, {"DASHBOARD_DATABASE": sb.DATABASE}) as url,
        ):
            sb._wait(lambda: (run.settings.checkpoint_dir / "metadata").exists(), 120)
            producer = mp.get_context("spawn").Process(
                target=sb._paced_producer,
                args=(bootstrap, topics[Topic.TICKS], rate, seconds + warmup + 5, symbols, 11),
            )
            producer.start()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = browser.new_page(viewport={"width": 1500, "height": 1100})
                    page.goto(f"{url}/?symbol=B00000&timeframe=live")
                    page.wait_for_function(CHARTS_DRAWN, timeout=120_000)
                    time.sleep(warmup)  # JIT and the first batches; measuring starts after this
                    page.evaluate(_WATCH_AS_OF)
                    first_batch = len(run.job.outcomes)
                    time.sleep(seconds)
                    seen = page.evaluate("window.__seen")
                    window = list(run.job.outcomes)[first_batch:]
                finally:
                    browser.close()
            producer.join(60)
    finally:
        spark.stop()
        delete_topics(bootstrap, topics.values())
    today = date.today()
    delays, events = [], []
    for shown_ms, text in seen:
        clock = datetime.strptime(text, "%H:%M:%S.%f").time()
        event = datetime.combine(today, clock, tzinfo=UTC)
        if shown_ms / 1000 - event.timestamp() < -43_200:  # shown just after midnight UTC, ticked before
            event -= timedelta(days=1)
        delays.append(shown_ms / 1000 - event.timestamp())
        events.append((event, shown_ms / 1000))
    # the page's own share: from the shown tick's landing (its batch's transaction) to the screen
    conn = connect("admin", postgres_settings().model_copy(update={"database": sb.DATABASE}))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select event_time, landed_at from raw.ticks"
                " where symbol = 'B00000' and event_time = any(%s)",
                ([e for e, _ in events],),
            )
            landed = dict(cur.fetchall())
    finally:
        conn.close()
    page_share = [shown - landed[e].timestamp() for e, shown in events if e in landed]
    if not delays:
        raise RuntimeError("the live page never showed a new tick")
    committed = [o.latencies_ms for o in window if not o.skipped and o.fresh_ticks]
    stream = np.concatenate(committed) / 1000 if committed else np.array([np.nan])
    return {
        "rate_ticks_per_s": rate,
        "symbols": symbols,
        "seconds": seconds,
        "updates_seen": len(delays),
        "p50_s": round(float(np.percentile(delays, 50)), 3),
        "p95_s": round(float(np.percentile(delays, 95)), 3),
        "max_s": round(float(max(delays)), 3),
        # the part of it before the page: tick ingest time to its batch's commit in PostgreSQL
        "stream_commit_p50_s": round(float(np.percentile(stream, 50)), 3),
        "stream_commit_p95_s": round(float(np.percentile(stream, 95)), 3),
        "landed_to_shown_p50_s": round(float(np.percentile(page_share, 50)), 3) if page_share else None,
        "landed_to_shown_p95_s": round(float(np.percentile(page_share, 95)), 3) if page_share else None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "goal_p95_s": 1.5,
    }


def run(quick: bool = False) -> dict:
    symbols = _ensure_bench_database(quick)
    _add_stream_day(symbols)
    results: dict[str, object] = {"symbols": len(symbols), "goal_query_ms": 50, "goal_render_s": 1.5}
    results["query_ms"] = _query_times(symbols)
    results["render_s"] = _render_times(symbols)
    results["tick_to_screen_s"] = _tick_to_screen(quick)
    return results
