"""Errors the ingest service raises with a message a user can act on."""

from __future__ import annotations


class IngestError(RuntimeError):
    """Base class: the CLI prints the message and exits non-zero."""


class SymbolFileError(IngestError):
    """The instruments / symbols file is missing or malformed."""


class ReplayFileError(IngestError):
    """A replay file cannot be read or lacks a required column."""


class BrokerUnavailable(IngestError):
    """Kafka did not answer within the timeout."""


class SourceError(IngestError):
    """A source failed in a way retries did not fix."""


class MetricsPortTaken(IngestError):
    """The Prometheus endpoint's port is already in use."""


class SpillError(IngestError):
    """A record Kafka did not take could not be written to the spill file (disk full, permissions)."""
