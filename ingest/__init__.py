"""Ingest service: Yahoo Finance, replay and synthetic sources validated, cleaned and published to Kafka.

Python API (the CLI is ``python -m ingest``):

- :class:`~ingest.sources.synthetic.SyntheticSource` and :func:`~ingest.sources.synthetic.ticks`:
  seeded load generator (raw records, vectorised chunks, or contract Tick messages).
- :func:`~ingest.service.produce_synthetic`: N ticks/s to Kafka for a duration.
- :func:`~ingest.service.build_pipeline` + :class:`~ingest.pipeline.Pipeline`: validate and publish any
  source's records; refused ones go to the dead-letter topic.
"""

from ingest.pipeline import Pipeline, RunStats
from ingest.service import build_pipeline, produce_synthetic
from ingest.sources.synthetic import SyntheticSource, ticks

__all__ = ["Pipeline", "RunStats", "SyntheticSource", "build_pipeline", "produce_synthetic", "ticks"]
