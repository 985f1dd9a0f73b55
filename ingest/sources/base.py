"""The one source interface: something that yields raw records for a contract topic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol, runtime_checkable

from common.contract import Source, Topic


class RawRecord(NamedTuple):
    """One record as a source read it, before validation.

    `value` is either the original bytes (JSON text off a file or socket) or a mapping of contract
    field names the source already decoded (yfinance frames, CSV rows, synthetic prices).
    """

    topic: Topic
    value: bytes | dict[str, Any]
    source: Source
    received_ms: int


@runtime_checkable
class RecordSource(Protocol):
    """A source of raw records. Iterating may block (live sources) and ends when the source is done."""

    name: Source

    def records(self) -> Iterator[RawRecord]: ...

    def close(self) -> None: ...
