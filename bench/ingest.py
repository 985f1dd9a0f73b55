"""Ingest benchmarks, on the real local broker with private topics (deleted afterwards).

- throughput: synthetic -> validate -> Kafka (the service's own path) as a ratio to a bare
  confluent-kafka produce loop sending the *same bytes* with the same producer settings, in this run.
  The machine is shared and noisy, so both run several rounds, interleaved (bare first in even rounds,
  ingest first in odd ones); each round gives a ratio and the figure is their median, with the spread;
- memory (measured first): resident size of this process sampled while 5 million records (1 million
  with quick) go through the same path; reports start, peak and growth.
"""

from __future__ import annotations

import gc
import statistics
import time
import uuid

import psutil
from confluent_kafka import Producer

from common.contract import Source, Topic
from common.settings import kafka_settings
from ingest.pipeline import Pipeline
from ingest.producer import producer_config
from ingest.settings import IngestSettings
from ingest.sources.synthetic import SyntheticSource
from tests.ingest.conftest import create_topics, delete_topics

SYMBOLS = 1_000
NOMINAL_RATE = 1_000_000.0  # chunking only: runs are unpaced


class _Capture:
    """A sink that keeps what the pipeline would send (to give the bare loop the same bytes)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.records.append((topic, key, value))

    def send_many(self, topic: str, keys: list[bytes], values: list[bytes]) -> None:
        self.records.extend((topic, k, v) for k, v in zip(keys, values, strict=True))

    def poll(self, _timeout: float = 0) -> None:
        pass

    def flush(self, _timeout: float = 0) -> int:
        return 0

    def sync_metrics(self) -> None:
        pass


def _source(count: int, seed: int) -> SyntheticSource:
    return SyntheticSource(SYMBOLS, rate=NOMINAL_RATE, seed=seed, count=count, paced=False)


def _pipeline(sink, settings: IngestSettings, instruments, topics) -> Pipeline:
    return Pipeline(sink, settings, instruments, topics=topics)


def _bare_loop(bootstrap: str, settings: IngestSettings, records: list[tuple[str, bytes, bytes]]) -> float:
    producer = Producer(producer_config(bootstrap, settings))
    delivered = [0]

    def on_delivery(err, _msg) -> None:  # the same minimal bookkeeping any real producer needs
        if err is None:
            delivered[0] += 1

    started = time.perf_counter()
    for i, (topic, key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if i & 1023 == 0:
            producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    assert delivered[0] == len(records), f"bare loop delivered {delivered[0]} of {len(records)}"
    return len(records) / elapsed


def _ingest_run(
    bootstrap: str, settings: IngestSettings, count: int, seed: int, topics, sample=None
) -> float:
    from ingest.producer import KafkaSink

    source = _source(count, seed)
    pipeline = _pipeline(KafkaSink(bootstrap, settings, "synthetic"), settings, source.instruments(), topics)

    def progress(_n: int) -> None:
        if sample is not None:
            sample()

    started = time.perf_counter()
    pipeline.run_arrays(source.arrays(), Source.SYNTHETIC, on_progress=progress)
    elapsed = time.perf_counter() - started
    delivered = sum(pipeline.sink.stats.delivered.values())
    assert pipeline.stats.accepted == count and delivered == count, (pipeline.stats, delivered)
    return count / elapsed


def _throughput(bootstrap: str, settings: IngestSettings, topics, n: int, rounds: int) -> dict:
    capture = _Capture()
    source = _source(n, seed=1)
    _pipeline(capture, settings, source.instruments(), topics).run_arrays(source.arrays(), Source.SYNTHETIC)
    bare: list[float] = []
    ingest: list[float] = []
    for r in range(rounds):
        gc.collect()
        if r % 2 == 0:
            bare.append(_bare_loop(bootstrap, settings, capture.records))
            ingest.append(_ingest_run(bootstrap, settings, n, seed=1, topics=topics))
        else:
            ingest.append(_ingest_run(bootstrap, settings, n, seed=1, topics=topics))
            bare.append(_bare_loop(bootstrap, settings, capture.records))
    ratios = [i / b for i, b in zip(ingest, bare, strict=True)]
    return {
        "records_per_run": n,
        "rounds": rounds,
        "ingest_records_per_s": round(statistics.median(ingest)),
        "bare_produce_records_per_s": round(statistics.median(bare)),
        "ratio_to_bare": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "ratios": [round(x, 3) for x in ratios],
        "ingest_runs_records_per_s": [round(x) for x in ingest],
        "bare_runs_records_per_s": [round(x) for x in bare],
        "goal_ratio": 0.6,
    }


def run(quick: bool = False) -> dict:
    bootstrap = kafka_settings().bootstrap_servers
    settings = IngestSettings(metrics_port=0)
    topics = create_topics(bootstrap, f"ingest-bench-{uuid.uuid4().hex[:8]}")
    try:
        proc = psutil.Process()
        gc.collect()
        rss: list[float] = [proc.memory_info().rss / 2**20]
        last = [time.monotonic()]

        def sample() -> None:
            if time.monotonic() - last[0] >= 0.5:
                rss.append(proc.memory_info().rss / 2**20)
                last[0] = time.monotonic()

        m = 1_000_000 if quick else 5_000_000
        memory_rate = _ingest_run(bootstrap, settings, m, seed=2, topics=topics, sample=sample)
        rss.append(proc.memory_info().rss / 2**20)
        settle = rss[min(len(rss) - 1, 4)]
        # after the memory run: the bare loop's copy of the records would inflate the resident size
        n = 200_000 if quick else 1_000_000
        throughput = _throughput(bootstrap, settings, topics, n, rounds=5)
        return {
            "throughput": throughput,
            "memory": {
                "records": m,
                "records_per_s": round(memory_rate),
                "rss_start_mib": round(rss[0], 1),
                "rss_after_2s_mib": round(settle, 1),
                "rss_peak_mib": round(max(rss), 1),
                "rss_end_mib": round(rss[-1], 1),
                "growth_after_2s_mib": round(rss[-1] - settle, 1),
                "goal_peak_mib": 300,
            },
        }
    finally:
        delete_topics(bootstrap, [topics[t] for t in Topic])


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
