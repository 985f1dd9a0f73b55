"""Reading Spark's checkpoint: the offsets a batch covered, for the replay of a batch in flight."""

from __future__ import annotations

import json

from spark_streaming.checkpoint import batch_range, checkpoint_offsets, last_committed_batch

META = json.dumps(
    {"batchWatermarkMs": 0, "batchTimestampMs": 1, "conf": {"spark.sql.shuffle.partitions": "2"}}
)


def _checkpoint(root, batches: dict[int, dict], committed: list[int], initial: dict) -> None:
    (root / "offsets").mkdir(parents=True)
    (root / "commits").mkdir()
    (root / "sources" / "0").mkdir(parents=True)
    # Spark's initial-offset file starts with a control byte before its version marker
    (root / "sources" / "0" / "0").write_text("\x00v1\n" + json.dumps(initial))
    for batch_id, ends in batches.items():
        (root / "offsets" / str(batch_id)).write_text(f"v1\n{META}\n{json.dumps(ends)}")
    for batch_id in committed:
        (root / "commits" / str(batch_id)).write_text('v1\n{"nextBatchWatermarkMs":0}')
    (root / "commits" / ".1.crc").write_text("")  # Hadoop's checksum files are not batches


def test_a_batch_reads_from_the_previous_batch_end_to_its_own(tmp_path):
    _checkpoint(
        tmp_path,
        {
            0: {"t": {"0": 5, "1": 7}},
            1: {"t": {"0": 9, "1": 7, "2": 4}, "dl": {"0": 1}},
            2: {"t": {"0": 12, "1": 8, "2": 4}, "dl": {"0": 1}},
        },
        committed=[0, 1],
        initial={"t": {"0": 0, "1": 2}},
    )
    assert last_committed_batch(tmp_path) == 1  # batch 2 was planned, not committed
    assert checkpoint_offsets(tmp_path, 2) == {"t": {0: 12, 1: 8, 2: 4}, "dl": {0: 1}}
    first = batch_range(tmp_path, 0)
    assert json.loads(first.starting_json()) == {"t": {"0": 0, "1": 2}}
    assert json.loads(first.ending_json()) == {"t": {"0": 5, "1": 7}}
    second = batch_range(tmp_path, 1)
    # partitions the previous batch did not know start at the earliest offset (-2)
    assert json.loads(second.starting_json()) == {"t": {"0": 5, "1": 7, "2": -2}, "dl": {"0": -2}}
    assert json.loads(second.ending_json()) == {"t": {"0": 9, "1": 7, "2": 4}, "dl": {"0": 1}}
    assert json.loads(second.assign_json()) == {"t": [0, 1, 2], "dl": [0]}


def test_a_fresh_checkpoint_has_no_committed_batch(tmp_path):
    assert last_committed_batch(tmp_path) is None
    (tmp_path / "commits").mkdir()
    assert last_committed_batch(tmp_path) is None
