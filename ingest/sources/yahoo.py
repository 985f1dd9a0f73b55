"""Yahoo Finance through yfinance: live quotes (its WebSocket client) and history (its chart API client).

Only yfinance talks to Yahoo; this module turns what yfinance decodes into raw contract records.
- Live: yfinance's ``WebSocket`` decodes each base64 protobuf ``PricingData`` frame into a dict. Yahoo
  reports the *cumulative* session volume (``day_volume``), so a tick's size is the increase since the
  symbol's previous frame; it resets when a new session starts (or the cumulative figure falls).
- History: ``Ticker.history(auto_adjust=False)`` gives raw OHLC plus ``Adj Close`` (split and dividend
  adjusted close) for daily and intraday intervals; each row becomes a bar.
Every call to Yahoo goes through :class:`~ingest.resilience.Guarded` (rate limit, retries, breaker).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import pybreaker
import yfinance as yf
from google.protobuf.json_format import MessageToDict
from websockets.sync.client import connect as sync_connect
from yfinance.live import WebSocket
from yfinance.pricing_pb2 import PricingData

from common.contract import BarInterval, Source, Topic
from ingest import metrics
from ingest.instruments import ALWAYS_OPEN, Instruments, session_key
from ingest.resilience import Guarded, is_transient
from ingest.settings import IngestSettings
from ingest.sources.base import RawRecord

log = logging.getLogger("ingest.yahoo")

YF_INTERVAL = {
    BarInterval.M1: "1m",
    BarInterval.M5: "5m",
    BarInterval.M15: "15m",
    BarInterval.M30: "30m",
    BarInterval.H1: "60m",
    BarInterval.D1: "1d",
}
_STOP = object()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def guard_from(settings: IngestSettings, name: str = "yahoo") -> Guarded:
    return Guarded(
        name,
        per_minute=settings.yahoo_requests_per_minute,
        attempts=settings.yahoo_retry_attempts,
        max_wait_s=settings.yahoo_retry_max_wait_s,
        fail_max=settings.breaker_fail_max,
        reset_s=settings.breaker_reset_s,
    )


# --- live ------------------------------------------------------------------------------------------


@dataclass
class VolumeTracker:
    """Turns cumulative session volume into per-tick sizes, per symbol."""

    last: dict[str, tuple[str, float]] = field(default_factory=dict)

    def size(self, symbol: str, day_volume: float | None, session: str) -> float:
        """Units traded since the symbol's previous frame (0 for the first frame seen mid-session)."""
        if day_volume is None:
            return 0.0
        previous = self.last.get(symbol)
        self.last[symbol] = (session, day_volume)
        if previous is None:
            return 0.0
        prev_session, prev_volume = previous
        if prev_session != session or day_volume < prev_volume:
            return day_volume  # new session: everything traded so far belongs to it
        return day_volume - prev_volume


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def pricing_to_tick(
    decoded: dict[str, Any], tracker: VolumeTracker, instruments: Instruments
) -> dict[str, Any]:
    """A frame as yfinance decodes it (MessageToDict of PricingData) -> raw tick fields.

    Int64 fields arrive as strings (protobuf JSON mapping); proto3 leaves zero values out.
    Values are passed on as they are: the pipeline's rules judge them.
    """
    symbol = str(decoded.get("id", "")).strip().upper()
    event_ms = decoded.get("time")
    raw: dict[str, Any] = {"symbol": symbol, "event_time_ms": event_ms, "price": decoded.get("price")}
    day_volume = _number(decoded.get("day_volume"))
    when = _number(event_ms)
    inst = instruments.get(symbol)
    calendar = inst.calendar if inst else ALWAYS_OPEN
    session = session_key(calendar, int(when)) if when is not None and math.isfinite(when) else ""
    raw["size"] = tracker.size(symbol, day_volume, session)
    if day_volume is not None:
        raw["day_volume"] = day_volume
    for name in ("bid", "ask"):
        if decoded.get(name):
            raw[name] = decoded[name]
    for name in ("currency", "exchange"):
        if decoded.get(name):
            raw[name] = decoded[name]
    return raw


class _StreamClient(WebSocket):
    """yfinance's WebSocket client (its subscribe protocol and its protobuf decoding), with three
    changes so that the source, not yfinance, owns errors and shutdown:

    - connection failures are raised to the source's reconnect guard (which counts and logs them in
      one line) instead of being logged by yfinance with a traceback;
    - the receive loop ends quietly when the connection is closed (by :meth:`YahooLiveSource.close`)
      and raises when it drops, so the guard reconnects only when it should;
    - a frame it cannot decode is handed on (it becomes a dead letter), not raised nor logged.
    """

    def __init__(self, url: str, open_timeout_s: float) -> None:
        super().__init__(url=url, verbose=False)
        self._open_timeout_s = open_timeout_s

    def _connect(self) -> None:
        if self._ws is None:
            self._ws = sync_connect(self.url, open_timeout=self._open_timeout_s, legacy=True)

    def listen(self, message_handler: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Hand each decoded frame to `message_handler` until the connection closes.

        Returns on a normal close; raises ``websockets.ConnectionClosedError`` when it drops.
        """
        if message_handler is None:
            raise ValueError("listen() needs a message handler")
        self._connect()
        for message in self._ws:
            try:
                encoded = json.loads(message).get("message", "")
            except (ValueError, AttributeError) as exc:  # not a JSON object: a dead letter too
                raw = message if isinstance(message, str) else base64.b64encode(message).decode()
                message_handler({"error": f"frame is not a JSON object: {exc}", "raw_base64": raw})
                continue
            message_handler(self._decode_message(encoded))

    def _decode_message(self, base64_message: str) -> dict:
        """yfinance's decoding (base64 -> its ``PricingData`` protobuf -> dict), minus its error log
        with a traceback: an undecodable frame is returned as an error and becomes a dead letter."""
        try:
            pricing = PricingData()
            pricing.ParseFromString(base64.b64decode(base64_message))
            return MessageToDict(pricing, preserving_proto_field_name=True)
        except Exception as exc:
            return {"error": str(exc), "raw_base64": base64_message}


class YahooLiveSource:
    """Live ticks from yfinance's streaming client; reconnects with backoff while the breaker allows.

    :meth:`close` (or reaching `max_records`) closes the connection and waits for the stream thread to
    end: no reconnect attempt and no log line from the stream outlive the source.
    """

    name = Source.YAHOO

    def __init__(
        self,
        symbols: list[str],
        settings: IngestSettings,
        instruments: Instruments,
        url: str | None = None,
        guard: Guarded | None = None,
        max_records: int | None = None,
    ) -> None:
        self.symbols = [s.upper() for s in symbols]
        self.url = url or settings.yahoo_stream_url
        self.instruments = instruments
        self.guard = guard or guard_from(settings, "yahoo_stream")
        self.tracker = VolumeTracker()
        self.max_records = max_records
        self.open_timeout_s = settings.yahoo_timeout_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=100_000)
        self._closed = threading.Event()
        self._reader_gone = threading.Event()
        self._ws: WebSocket | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _on_message(self, decoded: dict[str, Any]) -> None:
        if "error" in decoded:  # yfinance could not decode the frame
            metrics.SOURCE_ERRORS.labels("yahoo", "decode").inc()
            raw = decoded.get("raw_base64", "")
            self._put(RawRecord(Topic.TICKS, str(raw).encode(), Source.YAHOO, _now_ms()))
            return
        tick = pricing_to_tick(decoded, self.tracker, self.instruments)
        self._put(RawRecord(Topic.TICKS, tick, Source.YAHOO, _now_ms()))

    def _put(self, item: Any) -> None:
        """Queue for the reader; waits while the queue is full, unless the reader has gone."""
        while not self._reader_gone.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _listen_once(self) -> None:
        if self._closed.is_set():
            return
        ws = _StreamClient(self.url, self.open_timeout_s)
        with self._lock:
            self._ws = ws
        try:
            ws.subscribe(self.symbols)
            log.info("event=stream_subscribed url=%s symbols=%d", self.url, len(self.symbols))
            if not self._closed.is_set():  # close() may have run while we connected
                ws.listen(self._on_message)  # returns when the connection is closed
        except Exception:
            if self._closed.is_set():
                return  # closing interrupted the connection: not an error
            raise
        finally:
            self._close_client(ws)
        if not self._closed.is_set():
            raise ConnectionError("Yahoo stream connection ended")

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self.guard.call(self._listen_once)
            except pybreaker.CircuitBreakerError:
                metrics.SOURCE_ERRORS.labels("yahoo", "breaker_open").inc()
                self._closed.wait(min(5.0, self.guard.breaker.reset_timeout))
            except Exception as exc:
                if self._closed.is_set():
                    break
                kind = "transient" if is_transient(exc) else type(exc).__name__
                metrics.SOURCE_ERRORS.labels("yahoo", kind).inc()
                log.error("event=stream_error error=%s detail=%s", type(exc).__name__, exc)
                self._closed.wait(1.0)
        self._put(_STOP)

    def records(self) -> Iterator[RawRecord]:
        self._thread = threading.Thread(target=self._run, name="yahoo-stream", daemon=True)
        self._thread.start()
        produced = 0
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                yield item
                produced += 1
                if self.max_records is not None and produced >= self.max_records:
                    return
        finally:
            self._reader_gone.set()
            self.close()

    def _close_client(self, ws: WebSocket) -> None:
        try:
            ws.close()
        except Exception as exc:  # closing a dead socket is fine
            log.debug("event=stream_close_error error=%s", exc)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop streaming: close the connection and wait (up to `timeout_s`) for the thread to end."""
        self._closed.set()
        with self._lock:
            ws = self._ws
        if ws is not None:
            self._close_client(ws)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("event=stream_thread_still_running timeout_s=%.1f", timeout_s)


# --- history -----------------------------------------------------------------------------------------


def history_frame_to_bars(frame: pd.DataFrame, symbol: str, interval: BarInterval) -> list[dict[str, Any]]:
    """A ``Ticker.history(auto_adjust=False)`` frame -> raw bar fields (bar start in UTC epoch ms)."""
    if frame is None or frame.empty:
        return []
    index = pd.DatetimeIndex(frame.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    starts = index.as_unit("ms").asi8.tolist()
    columns = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Adj Close": "adj_close"}
    out: list[dict[str, Any]] = []
    data = {name: frame[col].tolist() for col, name in columns.items() if col in frame}
    volume = frame["Volume"].tolist() if "Volume" in frame else [None] * len(frame)
    for i, start in enumerate(starts):
        bar: dict[str, Any] = {"symbol": symbol, "interval": interval.value, "event_time_ms": start}
        for name, values in data.items():
            bar[name] = values[i]
        bar["volume"] = volume[i]
        out.append(bar)
    return out


class YahooHistorySource:
    """Bars for each symbol over [start, end) at one interval, through ``yf.Ticker(...).history``.

    `session` replaces yfinance's HTTP session (a curl_cffi or requests Session); leave it None in
    production. Symbols that fail after retries are logged, counted and skipped.
    """

    name = Source.YAHOO

    def __init__(
        self,
        symbols: list[str],
        interval: BarInterval,
        start: datetime | str | None,
        end: datetime | str | None,
        settings: IngestSettings,
        guard: Guarded | None = None,
        session: Any = None,
    ) -> None:
        self.symbols = [s.upper() for s in symbols]
        self.interval = interval
        self.start = start
        self.end = end
        self.settings = settings
        self.guard = guard or guard_from(settings, "yahoo_history")
        self.session = session
        self.failed: dict[str, str] = {}
        self._closed = False
        # let yfinance raise (rate limits, timeouts, HTTP errors) instead of logging and returning
        # an empty frame, so the retries and the breaker see failures
        yf.config.debug.hide_exceptions = False

    def fetch(self, symbol: str) -> pd.DataFrame:
        """One symbol's history frame (guarded: rate limit, retries, circuit breaker)."""

        def call() -> pd.DataFrame:
            ticker = yf.Ticker(symbol, session=self.session)
            return ticker.history(
                start=self.start,
                end=self.end,
                interval=YF_INTERVAL[self.interval],
                auto_adjust=False,
                actions=False,
                timeout=self.settings.yahoo_timeout_s,
            )

        return self.guard.call(call)

    def close(self) -> None:
        self._closed = True

    def records(self) -> Iterator[RawRecord]:
        for symbol in self.symbols:
            if self._closed:
                return
            try:
                frame = self.fetch(symbol)
            except pybreaker.CircuitBreakerError as exc:
                metrics.SOURCE_ERRORS.labels("yahoo", "breaker_open").inc()
                self.failed[symbol] = f"circuit breaker open: {exc}"
                log.error("event=history_skipped symbol=%s reason=breaker_open", symbol)
                continue
            except Exception as exc:
                kind = "transient" if is_transient(exc) else type(exc).__name__
                metrics.SOURCE_ERRORS.labels("yahoo", kind).inc()
                self.failed[symbol] = f"{type(exc).__name__}: {exc}"
                log.error(
                    "event=history_failed symbol=%s error=%s detail=%s", symbol, type(exc).__name__, exc
                )
                continue
            received = _now_ms()
            bars = history_frame_to_bars(frame, symbol, self.interval)
            log.info("event=history_fetched symbol=%s interval=%s bars=%d", symbol, self.interval, len(bars))
            for bar in bars:
                yield RawRecord(Topic.BARS, bar, Source.YAHOO, received)
