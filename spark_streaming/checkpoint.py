"""Reading a streaming query's checkpoint: which batch Spark committed last and which Kafka offsets a
batch covered (Spark's offset log). Pure file reading, no Spark session.

Layout (Spark 4, offset log version 1): ``offsets/<batch id>`` holds "v1", the batch's metadata, then
one JSON line per source with the batch's *end* offsets; ``commits/<batch id>`` exists once the batch's
sink returned; ``sources/0/0`` holds the Kafka source's initial offsets (the start of batch 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

Offsets = dict[str, dict[int, int]]
"""Kafka offsets per topic and partition."""


def _source_offsets(lines: list[str]) -> Offsets:
    offsets: Offsets = {}
    for line in lines:
        try:
            source = json.loads(line)
        except ValueError:
            continue
        if isinstance(source, dict) and all(isinstance(v, dict) for v in source.values()):
            for topic, parts in source.items():
                offsets.setdefault(topic, {}).update({int(p): int(o) for p, o in parts.items()})
    return offsets


def _batch_ids(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def checkpoint_offsets(checkpoint_dir: Path, batch_id: int) -> Offsets:
    """End offsets of batch `batch_id` per topic and partition, from the checkpoint's offset log."""
    lines = (checkpoint_dir / "offsets" / str(batch_id)).read_text().splitlines()
    return _source_offsets(lines[2:])  # "v1", the batch's metadata, then one JSON line per source


def initial_offsets(checkpoint_dir: Path) -> Offsets:
    """Where the query's first batch started (the Kafka source's initial offsets)."""
    # a version marker (with a leading control byte) on the first line, then the offsets' JSON
    lines = (checkpoint_dir / "sources" / "0" / "0").read_text(errors="replace").splitlines()
    return _source_offsets(lines[1:])


def last_committed_batch(checkpoint_dir: Path) -> int | None:
    """The newest batch whose sink returned to Spark (``commits/``), or None."""
    ids = _batch_ids(checkpoint_dir / "commits")
    return ids[-1] if ids else None


@dataclass(frozen=True)
class BatchRange:
    """The Kafka records of one batch: [start, end) per partition."""

    batch_id: int
    start: Offsets
    end: Offsets

    def starting_json(self) -> str:
        """The batch's start as the Kafka source's startingOffsets; a partition new in this batch
        starts at its earliest offset (-2)."""
        return json.dumps(
            {t: {str(p): self.start.get(t, {}).get(p, -2) for p in parts} for t, parts in self.end.items()}
        )

    def ending_json(self) -> str:
        return json.dumps({t: {str(p): o for p, o in parts.items()} for t, parts in self.end.items()})

    def assign_json(self) -> str:
        return json.dumps({t: sorted(parts) for t, parts in self.end.items()})


def batch_range(checkpoint_dir: Path, batch_id: int) -> BatchRange:
    """The offsets batch `batch_id` read: from the previous batch's end (or the initial offsets) to
    its own end."""
    if batch_id > 0:
        start = checkpoint_offsets(checkpoint_dir, batch_id - 1)
    else:
        start = initial_offsets(checkpoint_dir)
    return BatchRange(batch_id, start, checkpoint_offsets(checkpoint_dir, batch_id))
