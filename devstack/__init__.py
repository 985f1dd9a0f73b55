"""The local stack without Docker: PostgreSQL, Kafka (KRaft) and Prometheus as local processes.

`python -m devstack up|down|status` (wrapped by `make up`, `make down`, `make status`). Every
failure a user can meet (already running, port taken, no Java, damaged data directory, missing
jars) is a :class:`StackError` with one sentence that says what to do.
"""

from devstack.errors import StackError

__all__ = ["StackError"]
