"""SQL in a parameter and huge date ranges are refused with a message and change nothing; the app's
database role cannot write, whatever it tries."""

from __future__ import annotations

from datetime import date

import psycopg2
import pytest

from dashboard import queries
from tests.dashboard.helpers import no_exception, run_page

INJECTION = "'; drop table raw.ticks; --"


def _state(db) -> tuple:
    return db.query(
        "select (select count(*) from raw.ticks), (select count(*) from marts.fct_daily_prices),"
        " to_regclass('raw.ticks') is not null"
    )[0]


def test_a_symbol_carrying_sql_is_refused_with_a_message_and_changes_nothing(dashboard_db):
    before = _state(dashboard_db)
    at = run_page("market", {"symbol": INJECTION, "timeframe": "daily"})
    no_exception(at)
    assert any("is not a symbol" in e.value and "drop table" in e.value for e in at.error)
    with pytest.raises(queries.InvalidRequest, match="is not a symbol"):
        queries.read_daily(INJECTION, date(2024, 1, 1), date(2024, 2, 1))
    with pytest.raises(queries.InvalidRequest, match="is not a symbol"):
        queries.read_compare(["DASHA", INJECTION], date(2024, 1, 1), date(2024, 2, 1))
    assert _state(dashboard_db) == before


def test_a_huge_or_reversed_date_range_is_refused_with_a_message(dashboard_db):
    at = run_page(
        "market", {"symbol": "DASHA", "timeframe": "daily", "start": "1900-01-01", "end": "2100-01-01"}
    )
    no_exception(at)
    assert any("the longest allowed is" in e.value for e in at.error)
    with pytest.raises(queries.InvalidRequest, match="longest allowed"):
        queries.read_daily("DASHA", date(1900, 1, 1), date(2100, 1, 1))
    with pytest.raises(queries.InvalidRequest, match="before it starts"):
        queries.read_daily("DASHA", date(2024, 2, 1), date(2024, 1, 1))
    at = run_page("market", {"symbol": "DASHA", "timeframe": "daily", "start": "1 or 1=1"})
    assert any("is not a date" in e.value for e in at.error)


@pytest.mark.parametrize(
    "statement",
    [
        "delete from raw.ticks",
        "insert into raw.ticks (symbol, event_time, price, size, source, ingest_time)"
        " values ('X', now(), 1, 1, 'x', now())",
        "drop table raw.ticks",
        "truncate raw.dead_letters",
        "update quality.run_scores set score = 100",
        "create table public.dashboard_was_here (x int)",
        "set transaction read write; delete from raw.ticks",
        "set transaction read write; create temporary table t (x int)",
        "select raw.maintain_partitions(now() + interval '100 years')",
    ],
)
def test_the_apps_role_cannot_write(dashboard_db, statement):
    before = _state(dashboard_db)
    with pytest.raises(psycopg2.Error) as failure:
        queries.run(statement)
    assert failure.value.pgcode in {"42501", "25006"}, failure.value.pgerror  # no privilege / read-only
    assert queries.run("select current_user as who")["who"].iloc[0] == "market_reader"
    assert _state(dashboard_db) == before
