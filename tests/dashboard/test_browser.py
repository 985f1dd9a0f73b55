"""The running app in Debian's Chromium (Playwright): every page draws its charts without an exception
shown in the page; a screenshot of each is kept in .state/test-artifacts/dashboard/."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.db import connect
from dashboard.server import serving
from tests.conftest import free_ports
from tests.dashboard.conftest import LIVE_SYMBOL, closed_port
from tests.dashboard.helpers import artifacts_dir

CHROMIUM = "/usr/bin/chromium"
PAGES = {  # url path -> charts the page must draw
    "?symbol=DASHB&timeframe=daily": 1,  # Market, the default page, is served at /
    f"?symbol={LIVE_SYMBOL}&timeframe=live": 1,
    "compare": 1,
    "quality": 3,
    "health": 2,
}
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"
# Plotly has drawn a chart when its plot has axes (a cartesian layer); Streamlit shows skeletons until
# the script's first elements arrive
DRAWN = """(charts) =>
    [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.querySelector('.cartesianlayer')).length
        >= charts && !document.querySelector('[data-testid="stSkeleton"]')"""


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_ports(1)[0]


@pytest.fixture(scope="module")
def server(dashboard_db, tmp_path_factory, metrics_port) -> Iterator[str]:
    env = {
        "DASHBOARD_DATABASE": dashboard_db.name,
        "DASHBOARD_AIRFLOW_URL": f"http://127.0.0.1:{closed_port()}",
        "DASHBOARD_METRICS_PORT": str(metrics_port),
    }
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    with serving(free_ports(1)[0], log, env) as url:
        yield url


@pytest.mark.slow
def test_every_page_draws_its_charts_in_chromium_without_an_exception(server):
    from playwright.sync_api import sync_playwright

    folder = artifacts_dir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1200})
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            for path, charts in PAGES.items():
                page.goto(f"{server}/{path}")
                page.wait_for_selector(READY, timeout=30_000)
                page.wait_for_function(DRAWN, arg=charts, timeout=30_000)
                page.wait_for_selector(READY, timeout=30_000)
                name = (path if not path.startswith("?") else "market" + path).replace("?", "_")
                name = name.replace("&", "_").replace("=", "-")
                page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
                shown = page.locator("[data-testid='stException']")
                assert shown.count() == 0, f"{path}: {shown.first.inner_text()}"
                dialog = page.locator("[role='dialog']")  # e.g. Streamlit's "Page not found"
                assert dialog.count() == 0, f"{path}: {dialog.first.inner_text()}"
                assert not page_errors, f"{path}: {page_errors}"
        finally:
            browser.close()


@pytest.mark.slow
def test_the_live_view_shows_a_new_tick_without_reloading_the_page(server, dashboard_db):
    """A tick landed after the page opened appears in its header within a few seconds, and the page
    was not reloaded for it (a marker set on the window before the tick is still there)."""
    from playwright.sync_api import sync_playwright

    price = round(dashboard_db.tick_price + 7.77, 2)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1200})
            page.goto(f"{server}/?symbol={LIVE_SYMBOL}&timeframe=live")
            page.wait_for_function(DRAWN, arg=1, timeout=30_000)
            assert f"{price:,.2f}" not in page.inner_text("[data-testid='stApp']")
            page.evaluate("window.__before_the_tick = true")
            now = datetime.now(UTC)
            writer = connect("writer", dashboard_db.settings)
            try:
                with writer.cursor() as cur:
                    cur.execute("select raw.ensure_partitions('raw.ticks', %s, %s)", (now, now))
                    cur.execute(
                        "insert into raw.ticks (symbol, event_time, price, size, source, ingest_time)"
                        " values (%s, %s, %s, 1, 'test', %s)",
                        (LIVE_SYMBOL, now, price, now),
                    )
                writer.commit()
            finally:
                writer.close()
            page.wait_for_function(
                "(price) => [...document.querySelectorAll('[data-testid=\"stMetricValue\"]')]"
                ".some(v => v.innerText.trim() === price)",
                arg=f"{price:,.2f}",
                timeout=10_000,
            )
            assert page.evaluate("window.__before_the_tick === true"), "the page was reloaded"
        finally:
            browser.close()
            # the other tests expect the seeded latest tick
            writer = connect("writer", dashboard_db.settings)
            try:
                with writer.cursor() as cur:
                    cur.execute(
                        "delete from raw.ticks where symbol = %s and price = %s", (LIVE_SYMBOL, price)
                    )
                writer.commit()
            finally:
                writer.close()


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.slow
def test_the_dashboard_process_serves_its_metrics_for_prometheus(server, metrics_port):
    """`python -m dashboard` serves /metrics from the start (Prometheus's `dashboard` target), with the
    process's memory and CPU, and counts page runs and timed queries once a visitor opens a page."""
    from playwright.sync_api import sync_playwright

    before = _scrape(metrics_port)
    assert before[("process_resident_memory_bytes", ())] > 50e6  # the Streamlit process itself
    runs = ("dashboard_page_runs_total", (("page", "Market"),))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1200})
            page.goto(f"{server}/?symbol=DASHB&timeframe=daily")
            page.wait_for_function(DRAWN, arg=1, timeout=30_000)
        finally:
            browser.close()
    after = _scrape(metrics_port)
    assert after[runs] >= before.get(runs, 0) + 1
    ok = ("dashboard_query_duration_seconds_count", (("outcome", "ok"),))
    assert after.get(ok, 0) >= 1
