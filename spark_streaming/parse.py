"""Parse and validate Kafka records with the contract's rules: pure, vectorised, on Arrow/pandas.

Measured on this machine (docs/STREAMING.md): the same rules as Spark SQL column expressions cost
45-130 us per record (JSON re-parsed per referenced field), far too slow for 20,000 records/s, so the
batch comes to the driver as raw Kafka rows through Arrow and is parsed here. Every rule is the
contract's (:mod:`common.contract`), judged one of two ways that the property test holds together:

1. fast path: all values of a topic as one newline-delimited block through ``pyarrow.json`` with the
   Arrow schema derived from the contract's model (unknown fields ignored: additive fields do not bump
   the contract version). Arrow refuses any other JSON type (a boolean or a string for a number, a
   fraction for a time), so only values are left to judge: :func:`common.contract.vector_rules`
   (a JSON ``NaN``, which pandas cannot tell from null, sends its block to the slow path);
2. slow path: a record that does not parse in a block (found by bisection), or whose framing the block
   reader cannot take, is judged alone by :func:`common.contract.load_json` and
   :func:`common.contract.check`, the functions ingest uses;
3. then the stream's own transport rule: the Kafka key, when set, equals the symbol (``key_mismatch``).

The reference time of the future-time rule is the record's Kafka timestamp, so a replayed batch is
judged exactly as the first time. Each function returns the parsed rows and a frame of refused ones
with a :class:`RejectReason` value.
"""

from __future__ import annotations

import types
import typing
from enum import Enum

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
from pydantic import BaseModel

from common.contract import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    Rejection,
    RejectReason,
    Topic,
    check,
    first_failures,
    known_fields,
    load_json,
    vector_rules,
)

META = ["kafka_topic", "kafka_partition", "kafka_offset", "kafka_ms"]


def _arrow_type(annotation: object) -> pa.DataType:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _arrow_type(inner[0])
    if origin is typing.Annotated:
        return _arrow_type(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return _arrow_type(type(typing.get_args(annotation)[0]))
    if annotation is float:
        return pa.float64()
    if annotation is int:
        return pa.int64()
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return pa.string()
    raise TypeError(f"no Arrow type for contract annotation {annotation!r}")


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The Arrow schema of a contract message, field for field (all nullable: presence is judged)."""
    return pa.schema([pa.field(n, _arrow_type(f.annotation)) for n, f in model.model_fields.items()])


_SCHEMAS = {topic: arrow_schema(model) for topic, model in MESSAGE_TYPES.items()}
_FLOAT_COLUMNS = {t: [f.name for f in schema if f.type == pa.float64()] for t, schema in _SCHEMAS.items()}


def _empty(topic: Topic) -> pd.DataFrame:
    return _SCHEMAS[topic].empty_table().to_pandas()


def read_block(values: list[bytes], topic: Topic) -> pd.DataFrame | None:
    """Values as one block through Arrow's JSON reader with the topic's schema; None when any value is
    not a JSON object of the right field types (or not valid UTF-8: Arrow reads such bytes unchecked,
    so the table is validated before pandas sees it)."""
    if not values:
        return _empty(topic)
    block = b"\n".join(values)
    try:
        table = pajson.read_json(
            pa.py_buffer(block),
            read_options=pajson.ReadOptions(block_size=max(1 << 20, len(block) + 1)),
            parse_options=pajson.ParseOptions(
                explicit_schema=_SCHEMAS[topic],
                unexpected_field_behavior="ignore",
                newlines_in_values=False,
            ),
        )
        if table.num_rows != len(values):
            return None
        table.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    for name in _FLOAT_COLUMNS[topic]:  # pandas reads NaN as null: a JSON NaN goes to the slow path
        if pc.any(pc.is_nan(table.column(name))).as_py():
            return None
    return table.to_pandas()


def _bisect(values: list[bytes], idx: np.ndarray, topic: Topic, good: list, bad: list) -> None:
    """Split `idx` into blocks that parse (appended to good) and single records that do not (to bad)."""
    if len(idx) == 0:
        return
    if read_block([values[i] for i in idx], topic) is not None:
        good.append(np.asarray(idx, dtype=np.int64))
        return
    if len(idx) == 1:
        bad.append(int(idx[0]))
        return
    mid = len(idx) // 2
    _bisect(values, idx[:mid], topic, good, bad)
    _bisect(values, idx[mid:], topic, good, bad)


def judge_alone(topic: Topic, value: bytes, kafka_ms: int, tolerance_ms: int) -> dict | Rejection:
    """The slow path: one record judged by the contract's scalar functions (as ingest judges it)."""
    obj = load_json(value)
    if isinstance(obj, Rejection):
        return obj
    rejection = check(topic, obj, kafka_ms, tolerance_ms)
    return rejection if rejection is not None else known_fields(topic, obj)


def judge_block(
    topic: Topic, frame: pd.DataFrame, kafka_ms: np.ndarray, tolerance_ms: int
) -> tuple[np.ndarray, list[str | None]]:
    """The fast path's judgement of rows Arrow parsed: (reason value or None, detail) per row."""
    return first_failures(frame, vector_rules(topic, frame, kafka_ms, tolerance_ms))


def _framing_is_unusual(values: list[bytes]) -> np.ndarray:
    """Values the block reader must not see together with others (newlines split a block's records)."""
    return np.fromiter(
        (
            (b"\n" in v) or (b"\r" in v) or not v.startswith(b"{") or not v.rstrip().endswith(b"}")
            for v in values
        ),
        dtype=bool,
        count=len(values),
    )


def _parse(topic: Topic, records: pd.DataFrame, tolerance_ms: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid fields + META + key + value, refused META + key + value + reason + detail + symbol)."""
    values = [b"" if v is None else bytes(v) for v in records["value"]]
    kafka_ms = records["kafka_ms"].to_numpy(np.int64)
    size = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
    plain = (size > 0) & (size <= MAX_MESSAGE_BYTES) & ~_framing_is_unusual(values)
    candidates = np.flatnonzero(plain)
    slow = list(np.flatnonzero(~plain))
    parsed = read_block([values[i] for i in candidates], topic)
    fast_idx = candidates
    if parsed is None:  # something in the block is bad: bisect down to the records that fail alone
        good: list[np.ndarray] = []
        _bisect(values, candidates, topic, good, slow)
        fast_idx = np.sort(np.concatenate(good)) if good else np.empty(0, dtype=np.int64)
        parsed = read_block([values[i] for i in fast_idx], topic) if len(fast_idx) else _empty(topic)
        if parsed is None:  # pragma: no cover - every part parsed on its own
            parsed, fast_idx = _empty(topic), np.empty(0, dtype=np.int64)

    reason, detail = judge_block(topic, parsed, kafka_ms[fast_idx], tolerance_ms)
    ok = reason == None  # noqa: E711 - elementwise
    refused = [(int(i), r, d) for i, r, d, good in zip(fast_idx, reason, detail, ok, strict=True) if not good]
    symbols = (
        {}
        if "symbol" not in parsed
        else dict(zip(fast_idx[~ok].tolist(), parsed["symbol"][~ok], strict=True))
    )
    valid = parsed[ok]
    valid_idx = fast_idx[ok]

    extra_rows, extra_idx = [], []
    for i in sorted(slow):
        judged = judge_alone(topic, values[i], int(kafka_ms[i]), tolerance_ms)
        if isinstance(judged, Rejection):
            refused.append((int(i), judged.reason.value, judged.detail))
        else:
            extra_rows.append(judged)
            extra_idx.append(i)
    if extra_rows:
        extra = pd.DataFrame(extra_rows, columns=list(_SCHEMAS[topic].names))
        extra = pa.Table.from_pandas(extra, schema=_SCHEMAS[topic], preserve_index=False).to_pandas()
        valid = pd.concat([valid, extra], ignore_index=True)
        valid_idx = np.concatenate([valid_idx, np.asarray(extra_idx, dtype=np.int64)])

    meta = records.iloc[valid_idx][[*META, "key", "value"]].reset_index(drop=True)
    valid = pd.concat([valid.reset_index(drop=True), meta], axis=1)
    ref = records.iloc[[i for i, _, _ in refused]][[*META, "key", "value"]].reset_index(drop=True)
    ref["reason"] = [r for _, r, _ in refused]
    ref["detail"] = [d for _, _, d in refused]
    ref["symbol"] = [symbols.get(i) for i, _, _ in refused]  # made safe by the dead-letter writer
    if topic is not Topic.DEADLETTER:
        valid, mismatched = _key_mismatch(valid)
        if not mismatched.empty:
            ref = pd.concat([ref, mismatched], ignore_index=True) if not ref.empty else mismatched
    return valid, ref


def _key_mismatch(valid: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stream's transport rule: a record's Kafka key, when set, is its symbol (ingest keys every
    record by its symbol, so one symbol's events stay ordered in one partition)."""
    keys = valid["key"].to_numpy(object)
    symbols = valid["symbol"].to_numpy(object)
    bad = np.fromiter(
        (k is not None and len(k) > 0 and bytes(k) != s.encode() for k, s in zip(keys, symbols, strict=True)),
        dtype=bool,
        count=len(valid),
    )
    if not bad.any():
        return valid, pd.DataFrame()
    rej = valid[bad][[*META, "key", "value", "symbol"]].copy()
    rej["reason"] = RejectReason.KEY_MISMATCH.value
    rej["detail"] = [
        f"key {bytes(k).decode('utf-8', 'replace')!r} differs from symbol {s!r}"
        for k, s in zip(rej["key"], rej["symbol"], strict=True)
    ]
    return valid[~bad].reset_index(drop=True), rej.reset_index(drop=True)


def parse_ticks(records: pd.DataFrame, future_tolerance_ms: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kafka rows (META, key, value) of the ticks topic -> (valid ticks, refused with reason)."""
    valid, bad = _parse(Topic.TICKS, records, future_tolerance_ms)
    return valid.astype(
        {"event_time_ms": "int64", "ingest_time_ms": "int64", "price": float, "size": float}
    ), bad


def parse_bars(records: pd.DataFrame, future_tolerance_ms: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kafka rows of the bars topic -> (valid bars, refused with reason)."""
    valid, bad = _parse(Topic.BARS, records, future_tolerance_ms)
    return valid.astype({"event_time_ms": "int64", "ingest_time_ms": "int64"}), bad


def parse_deadletters(records: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kafka rows of the dead-letter topic -> (valid dead letters, refused with reason)."""
    return _parse(Topic.DEADLETTER, records, 0)
