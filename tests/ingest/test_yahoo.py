"""The yahoo source on recorded/constructed responses, decoded by yfinance's own code.

History: yfinance's Ticker.history runs unchanged over a requests Session whose transport serves
files. Live: yfinance's WebSocket client connects to a loopback WebSocket server that sends frames in
Yahoo's wire format (JSON with a base64 protobuf PricingData).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time

import pybreaker
import pytest
import yfinance as yf
from websockets.sync.server import serve
from yfinance.pricing_pb2 import PricingData

from common.contract import BarInterval, Source, Topic
from ingest.instruments import Instrument, Instruments
from ingest.resilience import Guarded
from ingest.service import build_pipeline, run_records
from ingest.sources.yahoo import VolumeTracker, YahooHistorySource, YahooLiveSource
from tests.ingest.yahoo_transport import RecordedYahoo, recorded_session


@pytest.fixture(autouse=True)
def _yf_caches(tmp_path):
    yf.set_tz_cache_location(str(tmp_path / "yf-cache"))


def fast_guard(name: str, attempts: int = 4, fail_max: int = 5) -> Guarded:
    return Guarded(
        name,
        per_minute=600,
        attempts=attempts,
        max_wait_s=0.05,
        fail_max=fail_max,
        reset_s=60,
        initial_wait_s=0.01,
    )


def test_history_daily_bars_carry_raw_and_adjusted_close(settings):
    source = YahooHistorySource(
        ["AAPL"],
        BarInterval.D1,
        "2025-03-03",
        "2025-03-12",
        settings,
        guard=fast_guard("t_daily"),
        session=recorded_session(RecordedYahoo()),
    )
    bars = [r.value for r in source.records()]
    assert len(bars) == 7
    first = bars[0]
    assert (first["open"], first["high"], first["low"], first["close"]) == (230.0, 232.5, 228.5, 231.0)
    assert first["adj_close"] == pytest.approx(231.0 * 0.995)
    assert bars[-1]["adj_close"] == bars[-1]["close"] == 237.0
    # yfinance labels a daily bar with the session date at midnight in the exchange's zone
    assert first["event_time_ms"] == 1740978000000  # 2025-03-03T00:00-05:00
    assert {b["interval"] for b in bars} == {"1d"}


def test_history_retries_rate_limit_answers_then_succeeds(settings):
    adapter = RecordedYahoo(fail_first=4)  # yfinance asks twice per failure (it switches cookie strategy)
    source = YahooHistorySource(
        ["MSFT"],
        BarInterval.M5,
        "2025-03-11",
        "2025-03-12",
        settings,
        guard=fast_guard("t_retry"),
        session=recorded_session(adapter),
    )
    bars = [r.value for r in source.records()]
    assert len(bars) == 12 and not source.failed
    assert bars[0]["event_time_ms"] == 1741699800000  # 2025-03-11T13:30Z: intraday bars keep their start
    assert sum("/v8/finance/chart/MSFT" in u for u in adapter.requests) >= 3


def test_circuit_breaker_opens_after_repeated_failures_and_stops_calling_yahoo(settings):
    adapter = RecordedYahoo(fail_first=10_000)
    guard = fast_guard("t_breaker", attempts=2, fail_max=3)
    source = YahooHistorySource(
        ["NVDA", "TSLA", "AMZN", "META", "JPM"],
        BarInterval.D1,
        "2025-03-03",
        "2025-03-12",
        settings,
        guard=guard,
        session=recorded_session(adapter),
    )
    assert list(source.records()) == []  # yfinance's in-process cache holds nothing for these symbols
    assert guard.breaker.current_state == pybreaker.STATE_OPEN
    calls_when_open = len(adapter.requests)
    with pytest.raises(pybreaker.CircuitBreakerError):
        guard.call(lambda: None)
    assert len(adapter.requests) == calls_when_open
    assert set(source.failed) == {"NVDA", "TSLA", "AMZN", "META", "JPM"}
    assert all("circuit breaker open" in source.failed[s] for s in ("AMZN", "META", "JPM"))


@pytest.mark.slow
def test_history_backfill_reaches_the_bars_topic(bootstrap_servers, own_topics, reader, settings):
    pipeline = build_pipeline(
        Source.YAHOO,
        bootstrap=bootstrap_servers,
        settings=settings,
        topics=own_topics,
        live=False,
        instruments=Instruments([Instrument("AAPL"), Instrument("MSFT")]),
    )
    source = YahooHistorySource(
        ["AAPL", "MSFT"],
        BarInterval.D1,
        "2025-03-03",
        "2025-03-12",
        settings,
        guard=fast_guard("t_backfill"),
        session=recorded_session(RecordedYahoo()),
    )
    stats = run_records(pipeline, source.records(), Source.YAHOO)
    assert (stats.accepted, stats.dead_lettered) == (14, 0)
    bars = reader.read(Topic.BARS, 14)
    assert sorted({(b["_key"], b["symbol"]) for b in bars}) == [("AAPL", "AAPL"), ("MSFT", "MSFT")]
    assert {b["source"] for b in bars} == {"yahoo"} and all(b["adj_close"] > 0 for b in bars)


def frame(symbol: str, price: float, time_ms: int, day_volume: int, **extra) -> str:
    """One message as Yahoo's streamer sends it: JSON with a base64-encoded protobuf PricingData."""
    msg = PricingData(id=symbol, price=price, time=time_ms, day_volume=day_volume, exchange="NMS", **extra)
    return json.dumps({"type": "pricing", "message": base64.b64encode(msg.SerializeToString()).decode()})


class FakeStreamer:
    """A loopback WebSocket server that waits for the subscription and then sends the frames.

    `frames` may be a list of lists: one list per connection; every connection but the last is then
    dropped (close code 1011) after its frames, as when Yahoo's streamer goes away.
    """

    def __init__(self, frames: list[str] | list[list[str]]) -> None:
        self.batches = frames if frames and isinstance(frames[0], list) else [frames]
        self.subscriptions: list[dict] = []
        self.connections = 0
        self.server = serve(self._handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self, ws) -> None:
        n = self.connections
        self.connections += 1
        self.subscriptions.append(json.loads(ws.recv()))
        for f in self.batches[min(n, len(self.batches) - 1)]:
            ws.send(f)
        if n < len(self.batches) - 1:
            ws.close(1011, "streamer restarting")
            return
        with contextlib.suppress(Exception):  # the client closes the connection when done
            ws.recv(timeout=30)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()


def test_volume_tracker_turns_cumulative_day_volume_into_sizes_and_resets_per_session():
    tracker = VolumeTracker()
    assert tracker.size("X", 1000, "2025-03-11") == 0  # first sight mid-session: unknown, so 0
    assert tracker.size("X", 1250, "2025-03-11") == 250
    assert tracker.size("X", 1250, "2025-03-11") == 0
    assert tracker.size("X", 300, "2025-03-12") == 300  # new session starts from zero


@pytest.mark.slow
def test_live_frames_decoded_by_yfinance_become_ticks_with_size_from_volume_change(
    bootstrap_servers, own_topics, reader, settings, unique_symbol
):
    now = time.time_ns() // 1_000_000
    frames = [
        frame(unique_symbol, 101.25, now - 3000, 10_000, bid=101.2, ask=101.3, currency="USD"),
        frame(unique_symbol, 101.5, now - 2000, 10_400),
        frame(unique_symbol, 101.75, now - 1000, 10_450),
        json.dumps({"type": "pricing", "message": base64.b64encode(b"\x0a\xff\xff").decode()}),  # corrupt
        frame(unique_symbol, -1.0, now - 500, 10_460),  # negative price: dead letter
    ]
    instruments = Instruments([Instrument(unique_symbol, "crypto", "24/7")])
    pipeline = build_pipeline(
        Source.YAHOO,
        bootstrap=bootstrap_servers,
        settings=settings,
        instruments=instruments,
        topics=own_topics,
    )
    with FakeStreamer(frames) as server:
        source = YahooLiveSource(
            [unique_symbol], settings, instruments, url=server.url, max_records=len(frames)
        )
        stats = run_records(pipeline, source.records(), Source.YAHOO)
    assert server.subscriptions[0] == {"subscribe": [unique_symbol]}
    assert (stats.accepted, stats.dead_lettered) == (3, 2)
    ticks = reader.read(Topic.TICKS, 3)
    assert [(t["price"], t["size"], t["day_volume"]) for t in ticks] == [
        (101.25, 0.0, 10_000.0),
        (101.5, 400.0, 10_400.0),
        (101.75, 50.0, 10_450.0),
    ]
    assert ticks[0]["bid"] == pytest.approx(101.2) and ticks[0]["currency"] == "USD"
    assert [t["event_time_ms"] for t in ticks] == [now - 3000, now - 2000, now - 1000]
    letters = reader.read(Topic.DEADLETTER, 2)
    assert sorted(d["reason"] for d in letters) == ["malformed_json", "non_positive_price"]


def test_live_source_ends_its_stream_thread_without_reconnecting_or_logging_errors(
    settings, unique_symbol, caplog, capfd
):
    now = time.time_ns() // 1_000_000
    frames = [frame(unique_symbol, 10.0 + i, now - 1000 + i, 100 * i) for i in range(3)]
    instruments = Instruments([Instrument(unique_symbol, "crypto", "24/7")])
    caplog.set_level("DEBUG")
    with FakeStreamer(frames) as server:
        source = YahooLiveSource([unique_symbol], settings, instruments, url=server.url, max_records=3)
        got = [r.value["price"] for r in source.records()]
        assert not source._thread.is_alive()  # records() ended: the stream thread is gone
    time.sleep(0.5)  # the server is down now: a reconnect attempt would fail and log
    assert got == [10.0, 11.0, 12.0]
    assert server.connections == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "Traceback" not in capfd.readouterr().err


def test_live_source_reconnects_and_resubscribes_when_the_stream_drops(settings, unique_symbol):
    now = time.time_ns() // 1_000_000
    first = [frame(unique_symbol, 10.0, now - 3000, 100), frame(unique_symbol, 11.0, now - 2000, 150)]
    second = [frame(unique_symbol, 12.0, now - 1000, 175)]
    instruments = Instruments([Instrument(unique_symbol, "crypto", "24/7")])
    with FakeStreamer([first, second]) as server:
        source = YahooLiveSource(
            [unique_symbol], settings, instruments, url=server.url, guard=fast_guard("t_drop"), max_records=3
        )
        got = [(r.value["price"], r.value["size"]) for r in source.records()]
    assert got == [(10.0, 0.0), (11.0, 50.0), (12.0, 25.0)]  # the volume tracker survives the reconnect
    assert server.connections == 2
    assert server.subscriptions == [{"subscribe": [unique_symbol]}] * 2
