"""Replay source: recorded ticks or OHLCV bars from CSV or Parquet, at 1x, Nx or full speed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from common.contract import Source, Topic
from ingest.errors import ReplayFileError
from ingest.rules import REQUIRED
from ingest.sources.base import RawRecord

BATCH_ROWS = 16_384


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReplaySource:
    """Plays a file's rows in order. `speed` 1.0 keeps the recorded gaps, 10.0 is ten times faster and
    0 (or less) means as fast as possible. `rebase` shifts event times so the first row happens now.
    """

    name = Source.REPLAY

    def __init__(
        self, path: Path | str, kind: Topic | None = None, speed: float = 0.0, rebase: bool = False
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ReplayFileError(f"replay file {self.path} does not exist")
        self.speed = speed
        self.rebase = rebase
        self._closed = False
        self.columns = self._columns()
        self.kind = kind or self._detect_kind()
        missing = [c for c in REQUIRED[self.kind] if c not in self.columns]
        if missing:
            raise ReplayFileError(
                f"{self.path} lacks column(s) {', '.join(missing)} needed for {self.kind.value}; "
                f"found {', '.join(self.columns)}"
            )

    @property
    def is_parquet(self) -> bool:
        return self.path.suffix.lower() in (".parquet", ".pq")

    def _columns(self) -> list[str]:
        try:
            if self.is_parquet:
                return list(pq.ParquetFile(self.path).schema_arrow.names)
            with self.path.open(encoding="utf-8") as fh:
                header = fh.readline().strip()
        except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
            raise ReplayFileError(f"cannot read {self.path}: {exc}") from exc
        if not header:
            raise ReplayFileError(f"{self.path} is empty (no header line)")
        return [c.strip() for c in header.split(",")]

    def _detect_kind(self) -> Topic:
        return Topic.BARS if {"open", "high", "low", "close"} <= set(self.columns) else Topic.TICKS

    def count(self) -> int:
        """Rows in the file (for progress bars)."""
        if self.is_parquet:
            return pq.ParquetFile(self.path).metadata.num_rows
        with self.path.open("rb") as fh:
            return max(0, sum(1 for _ in fh) - 1)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            if self.is_parquet:
                yield from pq.ParquetFile(self.path).iter_batches(batch_size=BATCH_ROWS)
                return
            # every column as text: the pipeline's rules clean numbers and name the bad values
            convert = pacsv.ConvertOptions(column_types=dict.fromkeys(self.columns, pa.string()))
            reader = pacsv.open_csv(
                self.path, read_options=pacsv.ReadOptions(block_size=1 << 20), convert_options=convert
            )
            yield from reader
        except pa.ArrowInvalid as exc:
            raise ReplayFileError(
                f"{self.path} is not valid {'Parquet' if self.is_parquet else 'CSV'}: {exc}"
            ) from exc

    def close(self) -> None:
        self._closed = True

    def records(self) -> Iterator[RawRecord]:
        first_event: int | None = None
        started = time.monotonic()
        shift = 0
        for batch in self._batches():
            for row in batch.to_pylist():
                if self._closed:
                    return
                row = {k: v for k, v in row.items() if v is not None and v != ""}
                event = _event_ms(row.get("event_time_ms"))
                if event is not None:
                    if first_event is None:
                        first_event = event
                        shift = _now_ms() - event if self.rebase else 0
                    if self.speed > 0:
                        due = (event - first_event) / 1000.0 / self.speed - (time.monotonic() - started)
                        if due > 0:
                            time.sleep(due)
                    if shift:
                        row["event_time_ms"] = event + shift
                yield RawRecord(self.kind, row, Source.REPLAY, _now_ms())


def _event_ms(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
