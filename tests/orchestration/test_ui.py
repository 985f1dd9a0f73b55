"""Browser: Playwright drives Debian's Chromium into the running Airflow UI, logs in with the generated
password, opens dbt_daily's graph and finds every model's node (the screenshot is kept as an artefact:
.state/test-artifacts/airflow_dbt_daily_graph.png), and finds the dbt docs in the Browse menu."""

from __future__ import annotations

import json

import pytest

from common.settings import stack_settings

pytestmark = pytest.mark.slow

DAILY_MODELS = (
    "stg_raw__bars",
    "stg_raw__ticks",
    "stg_rt__bars_1m",
    "int_daily_bars_unioned",
    "int_daily_indicators_computed",
    "fct_daily_prices",
    "fct_ma_crosses",
    "dim_symbols",
)


def test_login_and_the_dbt_daily_graph_shows_every_model(airflow_instance):
    from playwright.sync_api import expect, sync_playwright

    af = airflow_instance
    assert af.wait_for(
        lambda: af.metadata("select 1 from dag where dag_id = 'dbt_daily' and not is_stale"), 120
    )
    password = json.loads(af.airflow.passwords_file.read_text())[af.settings.ui_user]
    artefacts = stack_settings().state_dir / "test-artifacts"
    artefacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1100})
            page.goto(f"{af.settings.api_url}/dags/dbt_daily", wait_until="networkidle")
            page.get_by_label("Username").fill(af.settings.ui_user)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/dags/dbt_daily**", timeout=30_000)
            page.get_by_role("button", name="Show Graph (Press g)").click()
            page.get_by_role("button", name="Expand all task groups").click()
            for model in DAILY_MODELS:
                node = page.locator(".react-flow__node", has_text=f"{model}_model_build")
                expect(node).to_be_visible(timeout=30_000)
            expect(page.locator(".react-flow__node", has_text="quality_gate")).to_be_visible()
            shown = {
                text.split("\n")[0].strip().removesuffix("_model_build")
                for text in page.locator(".react-flow__node").all_inner_texts()
                if "_model_build" in text
            }
            page.screenshot(path=str(artefacts / "airflow_dbt_daily_graph.png"), full_page=True)
            # the dbt docs, served by Cosmos's Airflow 3 plugin, are in the Browse menu
            page.get_by_role("button", name="Browse").click()
            expect(page.get_by_text("dbt docs")).to_be_visible(timeout=10_000)
            docs = page.request.get(f"{af.settings.api_url}/cosmos/marketpipe/dbt_docs_index.html")
            assert docs.ok and 'ng-app="dbt"' in docs.text()
        finally:
            browser.close()
    assert shown == set(DAILY_MODELS)
