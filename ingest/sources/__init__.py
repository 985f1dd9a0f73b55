"""Sources of raw market records: yahoo (live + history), replay (files) and synthetic (load generator)."""

from ingest.sources.base import RawRecord, RecordSource

__all__ = ["RawRecord", "RecordSource"]
