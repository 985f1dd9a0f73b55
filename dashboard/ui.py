"""Small Streamlit helpers shared by the pages: one way to show a refused request or a missing service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from common.db import DatabaseUnavailable
from dashboard.health import Unreachable
from dashboard.queries import InvalidRequest, NotBuilt


@contextmanager
def shown_errors(stop: bool = True) -> Iterator[None]:
    """Turn the errors a page expects into one clear message (never a stack trace); stop the page
    there unless `stop` is False."""
    try:
        yield
    except InvalidRequest as exc:
        st.error(f"Refused: {exc}", icon="🚫")
    except (DatabaseUnavailable, NotBuilt, Unreachable) as exc:
        st.error(str(exc), icon="⚠️")
    else:
        return
    if stop:
        st.stop()


def fmt(value: float | None, spec: str = ",.2f", missing: str = "–") -> str:
    if value is None or value != value:  # None or NaN
        return missing
    return format(value, spec)
