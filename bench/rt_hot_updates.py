"""Issue 14, the sink's HOT-update lever: rt.bars_1m's index designs, the sink's upsert and dbt's read.

A private database (bench_rt_hot_updates) holds one table per design, each with rt.bars_1m's columns,
key and daily partitions and the same rows: `days` sessions of 1-minute bars (390 a day) for `symbols`
symbols, the last session ending now, and a ledger row per second of those sessions. Then:

  upsert  `batches` upserts with the sink's SQL (spark_streaming/sink.py's _UPSERT_BARS) of the open
          bar of every symbol, the previous minute's bars turned final every 60 batches; the designs
          alternate statement by statement. Figures: statement p50/p90 (ms), the share of HOT
          updates (pg_stat_user_tables), today's partition's size (MiB, heap and indexes).
  read    dbt's incremental read of stg_rt__bars_1m after those batches: the select dbt compiles for
          the model (git revision OLD_REV's model: the updated_at filter alone; the model as it is now:
          the updated_at filter and the bar_start bound from rt.stream_ledger), EXPLAIN (ANALYZE,
          BUFFERS), designs alternated per round. Figures: execution p50/p90 (ms), buffers, rows, and
          a digest of the rows read (every design must read the same rows; updated_at aside: each
          design's upserts ran in transactions of their own).

Designs (table, index besides the key, fillfactor, dbt's SQL):
  brin_updated_at        BRIN on updated_at (V021)   100  old
  no_index               none                        100  old
  no_index_ff70          none                         70  old, and new (the key's btree only)
  brin_bar_start         BRIN on bar_start           100  new
  brin_bar_start_ff70    BRIN on bar_start (V024)     70  new
  btree_bar_start_ff70   btree on bar_start           70  new

Default: 1,000 symbols, 3 sessions, 240 batches, 15 rounds. Quick mode: 200 symbols, 2 sessions, 60
batches, 5 rounds.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import statistics
import subprocess
import tarfile
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.db import connect
from common.migrate import recreate_database
from common.settings import PROJECT_ROOT
from dbt_project.runner import dbt_env, run_dbt
from dbt_project.settings import TransformSettings
from spark_streaming.sink import _UPSERT_BARS

log = logging.getLogger(__name__)

DATABASE = "bench_rt_hot_updates"
OLD_REV = "270c2c4"  # the staging models' read before V024 (updated_at >= watermark, by V021's BRIN)
SESSION_BARS = 390
MODEL = "stg_rt__bars_1m"

# name: (index DDL on the parent or None, fillfactor, dbt SQL variants read against it)
DESIGNS: dict[str, tuple[str | None, int, tuple[str, ...]]] = {
    "brin_updated_at": ("using brin (updated_at)", 100, ("old",)),
    "no_index": (None, 100, ("old",)),
    "no_index_ff70": (None, 70, ("old", "new")),
    "brin_bar_start": ("using brin (bar_start)", 100, ("new",)),
    "brin_bar_start_ff70": ("using brin (bar_start)", 70, ("new",)),
    "btree_bar_start_ff70": ("(bar_start)", 70, ("new",)),
}

_COLUMNS = """
    symbol text not null, bar_start timestamptz not null, open double precision not null,
    high double precision not null, low double precision not null, close double precision not null,
    volume double precision not null, vwap double precision, trade_count integer not null,
    is_final boolean not null default false, updated_at timestamptz not null default now(),
    primary key (symbol, bar_start)
"""


def _q(percentile: float, values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(percentile * len(ordered)))], 3)


def _days(first: datetime, last: datetime) -> list[datetime]:
    day = first.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    while day <= last:
        out.append(day)
        day += timedelta(days=1)
    return out


def _build(db, symbols: int, days: int, session_end: datetime, batches: int) -> None:
    """The designs' tables with the same rows, and the ledger rows of those sessions."""
    first = session_end - timedelta(days=days - 1, minutes=SESSION_BARS)
    last = session_end + timedelta(minutes=batches // 60 + 2)
    conn = connect("admin", db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "create unlogged table bench_src as"
            " select 'S' || lpad(s::text, 4, '0') as symbol, b as bar_start,"
            " 100 + s %% 50 as open, 101 + s %% 50 as high, 99 + s %% 50 as low, 100.5 + s %% 50 as close,"
            " 1000.0 + k as volume, 100.2 + s %% 50 as vwap, 10 + k %% 7 as trade_count, true as is_final,"
            " b + interval '61 seconds' as updated_at"
            " from generate_series(0, %(days)s - 1) d, generate_series(0, %(bars)s - 1) k,"
            " generate_series(1, %(symbols)s) s,"
            " lateral (select %(end)s - d * interval '1 day' - (%(bars)s - k) * interval '1 minute' as b) t"
            " order by b, symbol",
            {"days": days, "bars": SESSION_BARS, "symbols": symbols, "end": session_end},
        )
        for name, (index, fillfactor, _) in DESIGNS.items():
            cur.execute(f"create schema {name}")
            cur.execute(f"create table {name}.bars_1m ({_COLUMNS}) partition by range (bar_start)")
            for day in _days(first, last):
                cur.execute(
                    f"create table {name}.bars_1m_p{day:%Y%m%d} partition of {name}.bars_1m"
                    f" for values from (%s) to (%s) with (fillfactor = {fillfactor})",
                    (day, day + timedelta(days=1)),
                )
            cur.execute(f"insert into {name}.bars_1m select * from bench_src")
            if index:
                cur.execute(f"create index on {name}.bars_1m {index}")
            cur.execute(f"vacuum analyze {name}.bars_1m")
            cur.execute(f"grant usage on schema {name} to market_writer")  # dbt's role reads them
            cur.execute(f"grant select on {name}.bars_1m to market_writer")
        # one batch a second through each session, as the sink writes them: the batch's earliest bar
        # is the one that just closed
        cur.execute(
            "insert into rt.stream_ledger (query_id, batch_id, query_name, input_rows, tick_rows, dead_rows,"
            " committed_at, min_bar_start)"
            " select 'bench', row_number() over (order by t), 'bench', 1400, 1400, 0, t,"
            " date_trunc('minute', t) - interval '1 minute'"
            " from generate_series(0, %(days)s - 1) d,"
            " lateral generate_series(%(end)s - d * interval '1 day' - %(bars)s * interval '1 minute',"
            "   %(end)s - d * interval '1 day', interval '1 second') t",
            {"days": days, "bars": SESSION_BARS, "end": session_end},
        )
        # staging's watermark: one row for dbt's first (full) run to load
        cur.execute(
            "select raw.ensure_partitions('rt.bars_1m', %s, %s)", (first, first + timedelta(minutes=1))
        )
        cur.execute(
            "insert into rt.bars_1m (symbol, bar_start, open, high, low, close, volume, trade_count,"
            " is_final, updated_at) values ('S0001', %s, 1, 1, 1, 1, 1, 1, true, %s)",
            (first, first + timedelta(seconds=61)),
        )
        cur.execute("vacuum analyze rt.stream_ledger")
    conn.close()


def _compile(db, target: Path, project_dir: Path | None = None) -> str:
    """The select dbt compiles for MODEL in `db` (incremental: the model exists there)."""
    if project_dir is None:
        result = run_dbt(["compile", "--select", MODEL], database=db.database, target_path=target)
        if not result.ok:
            raise RuntimeError(result.stdout[-2000:])
        compiled = target
    else:
        t = TransformSettings()
        subprocess.run(
            [str(t.dbt_executable), "compile", "--select", MODEL, "--project-dir", str(project_dir),
             "--profiles-dir", str(project_dir), "--target-path", str(target), "--log-path", str(target)],
            env=dbt_env(database=db.database), cwd=project_dir, check=True, capture_output=True, text=True,
        )  # fmt: skip
        compiled = target
    path = next(compiled.glob(f"compiled/*/models/staging/rt/{MODEL}.sql"))
    return path.read_text()


def _old_project(directory: Path) -> Path:
    """dbt_project/ as of OLD_REV, with the profiles of today (the same connection settings)."""
    archive = subprocess.run(
        ["git", "archive", OLD_REV, "dbt_project"], cwd=PROJECT_ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory / "dbt_project"


def _upserts(db, symbols: int, session_end: datetime, batches: int) -> dict:
    """The sink's upsert into each design, alternated; statement times, HOT share, sizes."""
    names = list(DESIGNS)
    conn = connect("admin", db)
    cur = conn.cursor()
    cur.execute("set time zone 'UTC'")
    cur.execute(
        "create temp table t_bench_out (symbol text, bar_start_ms bigint, open float8, high float8,"
        " low float8, close float8, volume float8, vwap float8, trade_count int, is_final boolean)"
    )
    conn.commit()
    before = _stats(cur, names)
    conn.commit()
    times: dict[str, list[float]] = {n: [] for n in names}
    end_ms = int(session_end.timestamp() * 1000)
    for b in range(batches):
        minute_ms = end_ms + (b // 60) * 60_000
        rows = io.StringIO()
        for s in range(1, symbols + 1):
            price = 100 + s % 50 + (b % 60) / 100
            rows.write(f"S{s:04d}\t{minute_ms}\t{price}\t{price + 1}\t{price - 1}\t{price}\t{b % 60 + 1}\t")
            rows.write(f"{price}\t{b % 60 + 1}\tf\n")
            if b % 60 == 0 and b > 0:  # the previous minute closes
                rows.write(f"S{s:04d}\t{minute_ms - 60_000}\t{price}\t{price + 1}\t{price - 1}\t{price}\t")
                rows.write(f"61\t{price}\t61\tt\n")
        cur.execute("truncate t_bench_out")
        rows.seek(0)
        cur.copy_expert("copy t_bench_out from stdin", rows)
        conn.commit()
        for name in names[b % len(names) :] + names[: b % len(names)]:
            statement = _UPSERT_BARS.replace("rt.bars_1m", f"{name}.bars_1m").replace("t_out", "t_bench_out")
            started = time.perf_counter()
            cur.execute(statement)
            times[name].append((time.perf_counter() - started) * 1000)
            conn.commit()
        cur.execute(
            "insert into rt.stream_ledger (query_id, batch_id, query_name, input_rows, tick_rows, dead_rows,"
            " min_bar_start) values ('bench-upserts', %s, 'bench', 1400, 1400, 0,"
            " timestamptz 'epoch' + %s * interval '1 millisecond')",
            (b, minute_ms - (60_000 if b % 60 == 0 and b > 0 else 0)),
        )
        conn.commit()
    conn.close()  # a backend's statistics are flushed when it ends
    time.sleep(1.5)
    conn = connect("admin", db)
    with conn.cursor() as cur:
        after = _stats(cur, names)
        sizes = {}
        for name in names:
            cur.execute(
                "select pg_relation_size(c.oid), pg_indexes_size(c.oid) from pg_inherits i"
                " join pg_class c on c.oid = i.inhrelid where i.inhparent = %s::regclass"
                " and c.relname = %s",
                (f"{name}.bars_1m", f"bars_1m_p{session_end:%Y%m%d}"),
            )
            heap, indexes = cur.fetchone()
            sizes[name] = (round(heap / 2**20, 1), round(indexes / 2**20, 1))
    conn.close()
    out = {}
    for name in names:
        upd = after[name][0] - before[name][0]
        hot = after[name][1] - before[name][1]
        out[name] = {
            "statement_p50_ms": _q(0.5, times[name]),
            "statement_p90_ms": _q(0.9, times[name]),
            "updates": upd,
            "hot_pct": round(100 * hot / upd, 1) if upd else None,
            "today_heap_mib": sizes[name][0],
            "today_indexes_mib": sizes[name][1],
        }
    return out


def _stats(cur, names: list[str]) -> dict[str, tuple[int, int]]:
    cur.execute("select pg_stat_clear_snapshot()")
    out = {}
    for name in names:
        cur.execute(
            "select coalesce(sum(s.n_tup_upd), 0), coalesce(sum(s.n_tup_hot_upd), 0)"
            " from pg_inherits i join pg_stat_user_tables s on s.relid = i.inhrelid"
            " where i.inhparent = %s::regclass",
            (f"{name}.bars_1m",),
        )
        upd, hot = cur.fetchone()
        out[name] = (int(upd), int(hot))
    return out


_RECENCY = """
with young_enough as (
    select 1 as found from {table} where true and updated_at >= now() - interval '15 minutes' limit 1
),
latest as (
    select max(updated_at) as newest from {table} where true and not exists (select from young_enough)
)
select newest, now() - newest as age from latest where not exists (select from young_enough)
"""

_LATENCY = """
select bar_start as event_time, updated_at as landed_at, updated_at - bar_start as latency
from {table}
where updated_at >= now() - interval '1 day' and updated_at - bar_start > interval '5 minutes'
"""


def _reads(db, sql: dict[str, str], rounds: int) -> dict:
    """dbt's incremental select against each design, EXPLAIN (ANALYZE, BUFFERS), alternated."""
    cases = [(name, variant) for name, (_, _, variants) in DESIGNS.items() for variant in variants]
    conn = connect("writer", db)  # dbt's role
    conn.autocommit = True
    cur = conn.cursor()
    texts = {
        (name, variant): re.sub(r'"rt"\."bars_1m"', f'"{name}"."bars_1m"', sql[variant])
        for name, variant in cases
    }
    # the source tests on rt.bars_1m (models/sources/_rt__sources.yml), as macros/tests/ write them:
    # they filter by updated_at too, and run with the intraday build
    for name in DESIGNS:
        texts[(name, "recency_test")] = _RECENCY.format(table=f"{name}.bars_1m")
        texts[(name, "latency_test")] = _LATENCY.format(table=f"{name}.bars_1m")
        cases += [(name, "recency_test"), (name, "latency_test")]
    digests, plans = {}, {}
    for case, text in texts.items():
        if case[1].endswith("_test"):
            cur.execute(f"select count(*), '' from ({text}) s")
            digests[case] = cur.fetchone()
            cur.execute(f"explain (analyze, buffers, costs off, timing off) {text}")
            plans[case] = "\n".join(r[0] for r in cur.fetchall())
            continue
        cur.execute(
            "select count(*), md5(coalesce(string_agg(symbol || bar_start::text || close::text"
            f" || is_final::text, ',' order by symbol, bar_start), '')) from ({text}) s"
        )
        digests[case] = cur.fetchone()
        cur.execute(f"explain (analyze, buffers, costs off, timing off) {text}")
        plans[case] = "\n".join(r[0] for r in cur.fetchall())
    measured: dict[tuple[str, str], list[tuple[float, int]]] = {c: [] for c in cases}
    for r in range(rounds):
        for case in cases[r % len(cases) :] + cases[: r % len(cases)]:
            cur.execute(f"explain (analyze, buffers, format json) {texts[case]}")
            plan = cur.fetchone()[0][0]
            top = plan["Plan"]
            buffers = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
            measured[case].append((plan["Execution Time"] + plan["Planning Time"], buffers))
    conn.close()
    out = {}
    for case in cases:
        ms = [m for m, _ in measured[case]]
        out[f"{case[0]}/{case[1]}"] = {
            "p50_ms": _q(0.5, ms),
            "p90_ms": _q(0.9, ms),
            "buffers": int(statistics.median(b for _, b in measured[case])),
            "rows": digests[case][0],
            "digest": digests[case][1][:12],
        }
    log.info("plans:\n%s", "\n\n".join(f"== {c[0]} / {c[1]}\n{p}" for c, p in plans.items()))
    return {"reads": out, "plans": {f"{c[0]}/{c[1]}": p for c, p in plans.items()}}


def run(quick: bool = False, symbols: int | None = None, days: int | None = None) -> dict:
    symbols = symbols or (200 if quick else 1_000)
    days = days or (2 if quick else 3)
    batches = 60 if quick else 240
    rounds = 5 if quick else 15
    started = time.time()
    db = recreate_database(DATABASE)
    session_end = datetime.now(UTC).replace(second=0, microsecond=0)
    _build(db, symbols, days, session_end, batches)
    built = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "target"
        first = run_dbt(["run", "--select", MODEL], database=db.database, target_path=target)
        if not first.ok:
            raise RuntimeError(first.stdout[-2000:])
        time.sleep(1)  # the batches land after the run's watermark (less the lookback)
        upserts = _upserts(db, symbols, session_end, batches)
        sql = {"new": _compile(db, target), "old": _compile(db, Path(tmp) / "old", _old_project(Path(tmp)))}
    reads = _reads(db, sql, rounds)
    rows = {v["digest"] for k, v in reads["reads"].items() if not k.endswith("_test")}
    return {
        "symbols": symbols,
        "sessions": days,
        "batches": batches,
        "rounds": rounds,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "build_s": round(built - started, 1),
        "upsert": upserts,
        **reads,
        "same_rows_read_by_every_design": len(rows) == 1,
        "sql": {k: hashlib.sha256(v.encode()).hexdigest()[:12] for k, v in sql.items()},
        "sql_text": sql,
    }


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    result = run(quick="--quick" in sys.argv)
    print(json.dumps(result, indent=1, default=str))
