"""The Prometheus endpoint of a running ingest process, scraped over real HTTP while data flows."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.server import serve
from yfinance.pricing_pb2 import PricingData

from common.contract import Topic
from common.settings import PROJECT_ROOT
from ingest.settings import DEFAULT_METRICS_PORT, IngestSettings
from tests.conftest import free_ports
from tests.ingest.conftest import create_topics, delete_topics


def _free_port() -> int:
    return free_ports(1)[0]


def _ingest(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of http://127.0.0.1:port/metrics as {(name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(check, timeout_s: float = 30.0, interval_s: float = 0.25):
    """Poll `check` until it returns a truthy value; returns the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except OSError:  # the endpoint is not up yet
            result = None
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval_s)


class PushStreamer:
    """A loopback WebSocket server in Yahoo's streamer format that sends what the test pushes."""

    def __init__(self) -> None:
        self.frames: queue.Queue[str | None] = queue.Queue()
        self.subscribed = threading.Event()
        self.server = serve(self._handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self, ws) -> None:
        ws.recv()
        self.subscribed.set()
        while (frame := self.frames.get()) is not None:
            ws.send(frame)
        ws.close()

    def push(self, frames: list[str]) -> None:
        for f in frames:
            self.frames.put(f)

    def __enter__(self) -> PushStreamer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.frames.put(None)
        self.server.shutdown()


def frame(symbol: str, price: float, time_ms: int, day_volume: int) -> str:
    msg = PricingData(id=symbol, price=price, time=time_ms, day_volume=day_volume, exchange="NMS")
    return json.dumps({"type": "pricing", "message": base64.b64encode(msg.SerializeToString()).decode()})


@pytest.fixture
def cli_topics(bootstrap_servers) -> Iterator[str]:
    """A prefix whose `<prefix>.ticks|bars|deadletter` topics exist (the CLI's --topic-prefix names)."""
    prefix = f"ingest-metrics-{uuid.uuid4().hex[:8]}"
    suffixes = {Topic.TICKS: "ticks", Topic.BARS: "bars", Topic.DEADLETTER: "deadletter"}
    names = create_topics(bootstrap_servers, prefix, suffixes)
    yield prefix
    delete_topics(bootstrap_servers, list(names.values()))


def test_long_running_commands_serve_metrics_on_port_9108_unless_told_otherwise():
    assert DEFAULT_METRICS_PORT == 9108
    assert IngestSettings.model_fields["metrics_port"].default == 9108
    assert IngestSettings(metrics_port=0).metrics_port == 0


@pytest.mark.slow
def test_metrics_endpoint_of_a_running_stream_counts_records_in_out_and_rejections(
    bootstrap_servers, cli_topics, tmp_path, unique_symbol
):
    port = _free_port()
    (tmp_path / "instruments.csv").write_text(f"symbol,asset_class,calendar\n{unique_symbol},crypto,24/7\n")
    now = time.time_ns() // 1_000_000
    good = [frame(unique_symbol, 100.0 + i, now - 10_000 + i, 1_000 + i) for i in range(4)]
    corrupt = json.dumps({"type": "pricing", "message": base64.b64encode(b"\x0a\xff\xff").decode()})
    negative = frame(unique_symbol, -5.0, now - 5_000, 2_000)
    # 4 + 25 = 29 ticks delivered in all: the 16th delivery is sampled into the latency histogram
    later = [frame(unique_symbol, 110.0 + i, now - 4_000 + i, 3_000 + i) for i in range(25)]
    with PushStreamer() as streamer:
        proc = _ingest(
            "stream",
            "--symbols-file",
            str(tmp_path / "instruments.csv"),
            "--url",
            streamer.url,
            "--bootstrap",
            bootstrap_servers,
            "--topic-prefix",
            cli_topics,
            "--metrics-port",
            str(port),
        )
        try:
            assert streamer.subscribed.wait(60), "the ingest process did not subscribe"
            before = wait_for(lambda: scrape(port))
            assert value(before, "ingest_records_in_total", source="yahoo", topic="all") == 0

            def counts(samples: dict) -> tuple[float, ...]:
                return (
                    value(samples, "ingest_records_in_total", source="yahoo", topic="all"),
                    value(
                        samples,
                        "ingest_records_out_total",
                        source="yahoo",
                        topic=f"{cli_topics}.ticks",
                        outcome="delivered",
                    ),
                    value(
                        samples,
                        "ingest_records_out_total",
                        source="yahoo",
                        topic=f"{cli_topics}.deadletter",
                        outcome="delivered",
                    ),
                    value(samples, "ingest_rejections_total", source="yahoo", reason="malformed_json"),
                    value(samples, "ingest_rejections_total", source="yahoo", reason="non_positive_price"),
                )

            streamer.push([*good, corrupt, negative])
            first = wait_for(lambda: (c := counts(scrape(port))) == (6, 4, 2, 1, 1) and c, 30)
            assert first == (6, 4, 2, 1, 1), counts(scrape(port))
            # the stream stays quiet for a while: nothing moves ...
            time.sleep(1.5)
            assert counts(scrape(port)) == (6, 4, 2, 1, 1)
            # ... and more data moves the counters again
            streamer.push(later)
            second = wait_for(lambda: (c := counts(scrape(port))) == (31, 29, 2, 1, 1) and c, 30)
            assert second == (31, 29, 2, 1, 1), counts(scrape(port))
            samples = scrape(port)
            ticks = f"{cli_topics}.ticks"
            # 1 delivery in 16 is observed: 29 deliveries -> 1 sample, 2 dead letters -> none
            assert value(samples, "ingest_produce_latency_seconds_count", topic=ticks) == 29 // 16 == 1
            assert 0 < value(samples, "ingest_produce_latency_seconds_sum", topic=ticks) < 5
            dead = f"{cli_topics}.deadletter"
            assert value(samples, "ingest_produce_latency_seconds_count", topic=dead) == 0
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err


def _histogram(topic: str) -> tuple[float, float, dict[str, float]]:
    """(count, sum, {le: cumulative count}) of ingest_produce_latency_seconds for one topic."""
    from prometheus_client import REGISTRY

    get = REGISTRY.get_sample_value
    count = get("ingest_produce_latency_seconds_count", {"topic": topic}) or 0.0
    total = get("ingest_produce_latency_seconds_sum", {"topic": topic}) or 0.0
    buckets = {
        s.labels["le"]: s.value
        for family in REGISTRY.collect()
        if family.name == "ingest_produce_latency_seconds"
        for s in family.samples
        if s.name.endswith("_bucket") and s.labels["topic"] == topic
    }
    return count, total, buckets


@pytest.mark.parametrize("way", ["send", "send_many"])
def test_the_producer_samples_one_delivery_in_16_into_the_latency_histogram(bootstrap_servers, way):
    """The real producer on a real topic: 1,000 + 7 deliveries give exactly 1007 // 16 = 62 samples
    (every 16th delivery of a topic is observed), each a plausible broker round trip."""
    from ingest.producer import KafkaSink

    topics = create_topics(bootstrap_servers, f"ingest-latency-{uuid.uuid4().hex[:8]}")
    topic = topics[Topic.TICKS]
    try:
        sink = KafkaSink(bootstrap_servers, IngestSettings(metrics_port=0), "synthetic")
        assert _histogram(topic)[0] == 0
        n = 1007
        keys = [f"LAT{i % 5}".encode() for i in range(n)]
        values = [b'{"i": %d}' % i for i in range(n)]
        if way == "send":
            for k, v in zip(keys, values, strict=True):
                sink.send(topic, k, v)
        else:
            sink.send_many(topic, keys, values)
        assert sink.flush(60) == 0
        assert sink.stats.delivered[topic] == n and not sink.stats.failed
        count, total, buckets = _histogram(topic)
        assert count == n // 16 == 62
        assert buckets["+Inf"] == count
        # a loopback broker acknowledges within seconds; the mean is above zero and below 5 s
        assert 0 < total / count < 5
        assert buckets["5.0"] == count
    finally:
        delete_topics(bootstrap_servers, list(topics.values()))


def test_a_taken_metrics_port_stops_the_command_with_one_clear_line(bootstrap_servers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _ingest(
            "synthetic", "--count", "10", "--bootstrap", bootstrap_servers, "--metrics-port", str(port)
        )
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err and "--metrics-port 0" in err
    assert "Traceback" not in err
