"""No poison record and no other symbol's clock stops the running job (real Kafka, Spark, PostgreSQL).

Poison rows: the contract refuses what it knows PostgreSQL cannot store (a NUL, a lone surrogate, a time
out of range), so a record that passes it can only be refused by the database for a reason the contract
cannot see. To make PostgreSQL refuse contract-valid rows with each data error it raises for such
values, the test database gets a trigger on raw.ticks and raw.bars that evaluates the offending
expression when a row carries a marker: a NUL in text (``invalid byte sequence ... 0x00``), a timestamp
out of range, a number out of range for double precision. The sink must find those rows, dead-letter
them with the database's message, land every other row exactly once, and never restart the query.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid

import pytest

from common.contract import Topic, encode
from common.migrate import drop_database
from spark_streaming.feed import delete_topics, tick_value
from tests.conftest import free_ports
from tests.spark_streaming.helpers import (
    JobProcess,
    private_database,
    private_topics,
    produce,
    query,
    wait_for,
)

pytestmark = pytest.mark.slow

TAG = uuid.uuid4().hex[:6].upper()
POISON_SYMBOL = f"PSN{TAG}"
FAST, SLOW = f"FST{TAG}", f"SLW{TAG}"
POISONS = {  # exchange marker -> (the expression PostgreSQL refuses, words of its message)
    "PG-NUL": ("convert_from('\\x4100'::bytea, 'UTF8')", "0x00"),
    "PG-TS": ("to_timestamp(1e15)", "timestamp out of range"),
    "PG-NUM": ("'1e400'::float8", "out of range for type double precision"),
}
BAR_POISON_VOLUME = 424242.0

_TRIGGERS = """
create function raw.test_poison() returns trigger language plpgsql as $$
begin
    if tg_table_name like 'ticks%%' then
        case new.exchange
            when 'PG-NUL' then perform {nul};
            when 'PG-TS' then perform {ts};
            when 'PG-NUM' then perform {num};
            else null;
        end case;
    elsif new.volume = {bar_volume} then
        perform {num};
    end if;
    return new;
end
$$;
create trigger test_poison before insert or update on raw.ticks
    for each row execute function raw.test_poison();
create trigger test_poison before insert or update on raw.bars
    for each row execute function raw.test_poison();
"""


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} not exported"
    return float(match.group(1))


def _poison_tick(now: int, i: int, exchange: str) -> bytes:
    fields = {
        "schema_version": 1,
        "symbol": POISON_SYMBOL,
        "event_time_ms": now - 500_000 + i * 1000,
        "price": 10.0 + i,
        "size": 1.0,
        "exchange": exchange,
        "source": "synthetic",
        "ingest_time_ms": now,
    }
    return json.dumps(fields).encode()


def _bar(now: int, day: int, volume: float) -> bytes:
    from common.contract import Bar

    start = (now // 86_400_000 - day) * 86_400_000
    bar = Bar(
        symbol=POISON_SYMBOL,
        interval="1d",
        event_time_ms=start,
        open=10.0,
        high=11.0,
        low=9.0,
        close=10.5,
        volume=volume,
        source="replay",
        ingest_time_ms=now,
    )
    return encode(bar)


@pytest.fixture(scope="module")
def running_job(bootstrap_servers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream-poison")
    topics = private_topics(bootstrap_servers, f"psn{TAG.lower()}")
    pg = private_database(f"test_stream_poison_{TAG.lower()}")
    nul, ts, num = (POISONS[k][0] for k in ("PG-NUL", "PG-TS", "PG-NUM"))
    query(pg, _TRIGGERS.format(nul=nul, ts=ts, num=num, bar_volume=BAR_POISON_VOLUME) + " select 1")
    port = free_ports(1)[0]
    job = JobProcess(tmp, topics, pg, metrics_port=port)
    job.start()
    yield {"job": job, "pg": pg, "topics": topics, "port": port, "bootstrap": bootstrap_servers}
    job.stop()
    delete_topics(bootstrap_servers, topics.values())
    drop_database(pg)


def _ledger_rows(pg) -> int:
    return query(pg, "select coalesce(sum(input_rows), 0) from rt.stream_ledger")[0][0]


def _wait_consumed(ctx, total: int, what: str) -> None:
    try:
        wait_for(lambda: _ledger_rows(ctx["pg"]) >= total, 240, what)
    except AssertionError:
        raise AssertionError(ctx["job"].log_tail()) from None


def test_poison_rows_become_dead_letters_with_the_databases_reason_and_the_query_never_restarts(running_job):
    ctx, now = running_job, int(time.time() * 1000)
    items, valid_prices = [], []
    for i in range(40):  # valid ticks with a poison row of each kind among them
        marker = list(POISONS)[i // 10] if i % 10 == 5 and i < 30 else "XNAS"
        items.append((POISON_SYMBOL, _poison_tick(now, i, marker)))
        if marker == "XNAS":
            valid_prices.append(10.0 + i)
    produce(ctx["bootstrap"], ctx["topics"][Topic.TICKS], items)
    bars = [(POISON_SYMBOL, _bar(now, 3, 1000.0)), (POISON_SYMBOL, _bar(now, 2, BAR_POISON_VOLUME))]
    bars.append((POISON_SYMBOL, _bar(now, 1, 2000.0)))
    produce(ctx["bootstrap"], ctx["topics"][Topic.BARS], bars)
    before = _ledger_rows(ctx["pg"])
    _wait_consumed(ctx, before + len(items) + len(bars), "the job to consume the poisoned records")

    pg = ctx["pg"]
    landed = query(
        pg, "select price, count(*) from raw.ticks where symbol = %s group by price", (POISON_SYMBOL,)
    )
    assert sorted(p for p, _ in landed) == valid_prices and {c for _, c in landed} == {1}
    letters = query(
        pg,
        "select reason, detail, stage, payload from raw.dead_letters where symbol = %s"
        " order by kafka_topic = %s desc, kafka_offset",
        (POISON_SYMBOL, ctx["topics"][Topic.TICKS]),
    )
    assert [r[0] for r in letters] == ["rejected_by_database"] * 4
    for (_, detail, stage, payload), words in zip(
        letters[:3], [POISONS[k][1] for k in ("PG-NUL", "PG-TS", "PG-NUM")], strict=True
    ):
        assert words in detail and stage == "stream"
        assert json.loads(payload)["symbol"] == POISON_SYMBOL  # the original record, kept whole
    assert POISONS["PG-NUM"][1] in letters[3][1] and json.loads(letters[3][3])["volume"] == BAR_POISON_VOLUME
    volumes = query(pg, "select volume from raw.bars where symbol = %s order by bar_start", (POISON_SYMBOL,))
    assert [v for (v,) in volumes] == [1000.0, 2000.0]
    # the refusal hit a batch (it was written again in careful mode) and the query never restarted
    assert "event=batch_refused_by_database" in ctx["job"].log_path.read_text()
    assert _metric(ctx["port"], "streaming_query_restarts_total") == 0
    assert ctx["job"].alive()
    batches = query(pg, "select batch_id from rt.stream_ledger order by batch_id")
    assert [b for (b,) in batches] == list(range(len(batches)))  # each batch committed once, none skipped


def test_a_future_stamped_tick_of_one_symbol_does_not_make_current_ticks_of_others_late(running_job):
    ctx = running_job
    pg = ctx["pg"]
    now = int(time.time() * 1000)
    before = _ledger_rows(pg)
    fast_ms = now + 3_000  # within the contract's 5 s future tolerance
    produce(ctx["bootstrap"], ctx["topics"][Topic.TICKS], [(FAST, tick_value(FAST, fast_ms, 50.0, 1.0, now))])
    _wait_consumed(ctx, before + 1, "the future-stamped tick")
    assert query(pg, "select count(*) from raw.ticks where symbol = %s", (FAST,))[0][0] == 1

    # then ticks of another symbol 6-8 s behind it: more than the allowed lateness (5 s) behind FAST's
    # newest event, which a query-wide watermark would refuse as stale; against their own symbol they
    # are on time
    slow = [(SLOW, tick_value(SLOW, fast_ms - 8_000 + i * 100, 20.0 + i, 1.0, now)) for i in range(20)]
    produce(ctx["bootstrap"], ctx["topics"][Topic.TICKS], slow)
    _wait_consumed(ctx, before + 1 + len(slow), "the other symbol's ticks")
    assert query(pg, "select count(*) from raw.ticks where symbol = %s", (SLOW,))[0][0] == len(slow)
    assert query(pg, "select count(*) from raw.dead_letters where symbol = %s", (SLOW,))[0][0] == 0

    # far ahead of its Kafka time the contract refuses it (the same 5 s as ingest), and it moves nothing
    before = _ledger_rows(pg)
    far = tick_value(FAST, now + 200_000, 51.0, 1.0, now)
    produce(ctx["bootstrap"], ctx["topics"][Topic.TICKS], [(FAST, far)])
    _wait_consumed(ctx, before + 1, "the far-future tick")
    reasons = query(pg, "select reason from raw.dead_letters where symbol = %s", (FAST,))
    assert reasons == [("future_time",)]
