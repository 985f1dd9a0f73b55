"""Writes the chart-API responses under recordings/ in Yahoo's v8 chart JSON layout (run once; committed).

`python -m tests.ingest.make_recordings` rebuilds them. The values are constructed, not downloaded:
this machine has no route to Yahoo; the layout follows what yfinance's history scraper reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

RECORDINGS = Path(__file__).parent / "recordings"
SESSIONS = ["2025-03-03", "2025-03-04", "2025-03-05", "2025-03-06", "2025-03-07", "2025-03-10", "2025-03-11"]
DIVIDEND_FACTOR = 0.995  # adj close below close before an ex-dividend date: adjusted != raw


def _meta(symbol: str, granularity: str, first_ts: int, last_ts: int) -> dict:
    regular = {"timezone": "EST", "start": first_ts, "end": last_ts + 23400, "gmtoffset": -18000}
    return {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": "NMS",
        "fullExchangeName": "NasdaqGS",
        "instrumentType": "EQUITY",
        "firstTradeDate": 345479400,
        "regularMarketTime": last_ts,
        "hasPrePostMarketData": True,
        "gmtoffset": -18000,
        "timezone": "EST",
        "exchangeTimezoneName": "America/New_York",
        "regularMarketPrice": 230.0,
        "chartPreviousClose": 228.0,
        "priceHint": 2,
        "currentTradingPeriod": {"pre": regular, "regular": regular, "post": regular},
        "dataGranularity": granularity,
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }


def daily(symbol: str, base: float) -> dict:
    stamps, o, h, lo, c, adj, v = [], [], [], [], [], [], []
    for i, day in enumerate(SESSIONS):
        ts = int(datetime.fromisoformat(day).replace(hour=14, minute=30, tzinfo=UTC).timestamp())
        price = base + i
        stamps.append(ts)
        o.append(price)
        h.append(price + 2.5)
        lo.append(price - 1.5)
        c.append(price + 1.0)
        adj.append(round((price + 1.0) * (DIVIDEND_FACTOR if i < 4 else 1.0), 6))
        v.append(50_000_000 + i * 1_000_000)
    result = {
        "meta": _meta(symbol, "1d", stamps[0], stamps[-1]),
        "timestamp": stamps,
        "indicators": {
            "quote": [{"open": o, "high": h, "low": lo, "close": c, "volume": v}],
            "adjclose": [{"adjclose": adj}],
        },
    }
    return {"chart": {"result": [result], "error": None}}


def intraday(symbol: str, base: float, day: str = "2025-03-11", bars: int = 12) -> dict:
    start = datetime.fromisoformat(day).replace(hour=13, minute=30, tzinfo=UTC)  # 09:30 EDT
    stamps, o, h, lo, c, v = [], [], [], [], [], []
    for i in range(bars):
        ts = int((start + timedelta(minutes=5 * i)).timestamp())
        price = base + 0.1 * i
        stamps.append(ts)
        o.append(price)
        h.append(price + 0.3)
        lo.append(price - 0.2)
        c.append(price + 0.1)
        v.append(200_000 + 1000 * i)
    result = {
        "meta": {
            **_meta(symbol, "5m", stamps[0], stamps[-1]),
            "tradingPeriods": [
                [{"timezone": "EDT", "start": stamps[0], "end": stamps[0] + 23400, "gmtoffset": -14400}]
            ],
        },
        "timestamp": stamps,
        "indicators": {"quote": [{"open": o, "high": h, "low": lo, "close": c, "volume": v}]},
    }
    return {"chart": {"result": [result], "error": None}}


def main() -> None:
    RECORDINGS.mkdir(exist_ok=True)
    for symbol, base in (("AAPL", 230.0), ("MSFT", 390.0)):
        (RECORDINGS / f"chart_{symbol}_1d.json").write_text(json.dumps(daily(symbol, base)))
        (RECORDINGS / f"chart_{symbol}_5m.json").write_text(json.dumps(intraday(symbol, base)))


if __name__ == "__main__":
    main()
