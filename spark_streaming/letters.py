"""Rows for raw.dead_letters written by the stream: records its parser refused, late ticks, and rows
PostgreSQL refused. Every row is safe to store by construction: the payload is the original bytes as
text (base64 when not UTF-8 or when it holds NUL), the symbol is a valid one or null, the detail has
no NUL."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd

from common.contract import RejectReason, Stage, clean_symbol_or_none, payload_text

DEAD_COPY = (
    "failed_at_ms",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "stage",
    "reason",
    "detail",
    "source",
    "intended_topic",
    "symbol",
    "payload",
    "payload_encoding",
)


_EMPTY = pd.DataFrame(columns=list(DEAD_COPY))


def empty() -> pd.DataFrame:
    """No dead letters (a copy: building the frame anew costs more than the rest of a quiet batch's
    dead-letter handling)."""
    return _EMPTY.copy()


def payload(value: object) -> tuple[str, str]:
    """The original Kafka value as stored text: UTF-8, or base64 when it is not UTF-8 or holds NUL."""
    raw = bytes(value) if value is not None else b""
    text, encoding = payload_text(raw)
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        return base64.b64encode(raw).decode("ascii"), "base64"
    return text, encoding


def _safe_detail(text: object) -> str:
    return str(text).replace("\x00", "\\x00")[:2000]


def letters(rows: pd.DataFrame, reasons: list[str] | np.ndarray, details: list[str]) -> pd.DataFrame:
    """Dead-letter rows for Kafka records (rows carry kafka_*, value and maybe symbol) refused by the
    stream with `reasons` and `details`."""
    if rows.empty:
        return empty()
    payloads = [payload(v) for v in rows["value"]]
    symbols = rows["symbol"] if "symbol" in rows else pd.Series([None] * len(rows))
    return pd.DataFrame(
        {
            "failed_at_ms": rows["kafka_ms"].to_numpy(np.int64),
            "kafka_topic": rows["kafka_topic"].to_numpy(object),
            "kafka_partition": rows["kafka_partition"].to_numpy(np.int64),
            "kafka_offset": rows["kafka_offset"].to_numpy(np.int64),
            "stage": Stage.STREAM.value,
            "reason": np.asarray(reasons, dtype=object),
            "detail": [_safe_detail(d) for d in details],
            "source": rows["kafka_topic"].to_numpy(object),
            "intended_topic": rows["kafka_topic"].to_numpy(object),
            "symbol": [clean_symbol_or_none(s) for s in symbols],
            "payload": [p for p, _ in payloads],
            "payload_encoding": [e for _, e in payloads],
        }
    )


def rejected_letters(rows: pd.DataFrame) -> pd.DataFrame:
    """Dead-letter rows for records refused by the parser (rows carry reason and detail)."""
    if rows.empty:
        return empty()
    return letters(rows, rows["reason"].to_numpy(object), list(rows["detail"]))


def late_letters(late: pd.DataFrame, allowed_lateness_ms: int) -> pd.DataFrame:
    """Dead-letter rows for late ticks (rows carry the ``threshold`` each one missed)."""
    if late.empty:
        return empty()
    details = [
        f"event_time_ms {t} is before {th}, the earliest time its symbol still accepts (its newest "
        f"event minus the allowed lateness of {allowed_lateness_ms} ms, or the end of its last final bar)"
        for t, th in zip(late["event_time_ms"], late["threshold"], strict=True)
    ]
    return letters(late, [RejectReason.STALE_TIME.value] * len(late), details)


def database_letters(rows: pd.DataFrame, messages: list[str]) -> pd.DataFrame:
    """Dead-letter rows for records PostgreSQL refused, with the database's own message."""
    return letters(rows, [RejectReason.REJECTED_BY_DATABASE.value] * len(rows), messages)


def last_resort(rows: pd.DataFrame, messages: list[str]) -> pd.DataFrame:
    """Dead-letter rows that PostgreSQL refused themselves, reduced to what it can always store: the
    payload as base64, no symbol, ASCII text."""
    out = rows.copy()
    out["payload"] = [
        base64.b64encode(p.encode("utf-8", "surrogatepass") if e == "utf-8" else base64.b64decode(p)).decode()
        for p, e in zip(rows["payload"], rows["payload_encoding"], strict=True)
    ]
    out["payload_encoding"] = "base64"
    out["symbol"] = None
    out["detail"] = [
        (f"{d} | the dead letter itself was refused: {m}").encode("ascii", "backslashreplace").decode()[:2000]
        for d, m in zip(rows["detail"], messages, strict=True)
    ]
    for col in ("source", "intended_topic", "kafka_topic"):
        out[col] = [str(v).encode("ascii", "backslashreplace").decode() for v in rows[col]]
    return out
