"""Reading what an AppTest run shows: Plotly figures (JSON, typed arrays decoded), metrics, errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from common.settings import PROJECT_ROOT

APP = PROJECT_ROOT / "dashboard" / "app.py"
PAGES = {
    "market": "views/market.py",
    "compare": "views/compare.py",
    "quality": "views/quality.py",
    "health": "views/health.py",
}


def run_page(page: str, query_params: dict[str, str] | None = None, timeout: float = 60) -> AppTest:
    """The app's page `page`, run once through the app's navigation (query params set first)."""
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.query_params.update(query_params or {})
    at.run()
    if page != "market":
        at.switch_page(PAGES[page]).run()
    return at


def decode(value):
    """A Plotly JSON array: a list, or a typed array {'dtype', 'bdata'} (Plotly >= 6)."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return (
            array.reshape(value["shape"]) if "shape" in value and isinstance(value["shape"], list) else array
        )
    return value


def floats(value) -> np.ndarray:
    decoded = decode(value)
    return (
        np.array([np.nan if v is None else v for v in decoded], dtype=float)
        if isinstance(decoded, list)
        else decoded.astype(float)
    )


def figures(at: AppTest) -> dict[str, dict]:
    """Every Plotly chart on the page by its widget key, as the figure's JSON."""
    out = {}
    for node in at.get("plotly_chart"):
        spec = json.loads(node.proto.spec)
        out[node.proto.id or str(len(out))] = spec
    return out


def only_figure(at: AppTest) -> dict:
    charts = list(figures(at).values())
    assert len(charts) == 1, f"expected one chart, found {len(charts)}"
    return charts[0]


def traces(figure: dict) -> dict[str, dict]:
    """Traces by name (a name appears once on the dashboard's charts)."""
    named: dict[str, dict] = {}
    for trace in figure["data"]:
        assert trace.get("name") not in named, f"two traces named {trace.get('name')}"
        named[trace.get("name")] = trace
    return named


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def assert_close(got, expected, what: str, rel: float = 1e-12) -> None:
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    assert got.shape == expected.shape, f"{what}: {got.shape} values, expected {expected.shape}"
    assert np.array_equal(np.isnan(got), np.isnan(expected)), f"{what}: missing values differ"
    ok = ~np.isnan(expected)
    if ok.any():
        err = np.abs(got[ok] - expected[ok]) / np.maximum(np.abs(expected[ok]), 1e-300)
        assert err.max() <= rel, f"{what}: max relative error {err.max()}"


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def artifacts_dir() -> Path:
    path = PROJECT_ROOT / ".state" / "test-artifacts" / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    return path
