"""The live web page in a real headless Chromium: its values equal the API's; a screenshot is saved."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from devstack.processes import ensure_binary
from tests.streams.support import WorkerProcess
from tests.streams.test_pipeline import produce_stream

pytestmark = pytest.mark.services
ARTIFACTS = Path(__file__).resolve().parents[2] / ".engage" / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = ensure_binary("chromium", "chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(ensure_binary("chromedriver", "chromium-driver")), options=options)
    yield driver
    driver.quit()


def test_live_page_shows_the_api_values_and_looks_customers_up(stack, unique, tmp_path, browser):
    values = produce_stream(stack, unique)
    # the stream alone may raise no alert (a dip inside one batch does not alert): a 2 s
    # inactivity rule and a 1 s sweep make sure the alerts table has rows to compare
    config = tmp_path / "alerts.toml"
    config.write_text('[alerts]\ninactivity = "2s"\n')
    worker = WorkerProcess(stack, unique, tmp_path, "w1", config=config, sweep_s="1")
    try:
        worker.wait_until(lambda: worker.metrics().get("engagement_events_consumed_total") == len(values), "consumption")
        worker.wait_until(lambda: worker.get("/alerts/recent?limit=10")[1]["alerts"], "alerts to show")
        browser.get(worker.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-updated"))
        seen = browser.find_element(By.TAG_NAME, "body").get_attribute("data-updated")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-updated") != seen)  # it updates live
        text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731

        _, k = worker.get("/kpis")
        assert text("aer") == f"{k['aer']:.2f}"
        assert text("aer-band") == k["aer_band"]
        assert "band " + k["aer_band"] in browser.find_element(By.ID, "aer-band").get_attribute("class")
        assert (text("members"), text("dau"), text("wau"), text("mau")) == tuple(
            str(k[name]) for name in ("members", "dau", "wau", "mau"))
        assert text("nps") == f"{k['nps']:.2f}" and text("csat") == f"{k['csat']:.2f} %"
        # a table is read in one script call: the page re-renders every 2 s, and rows found in
        # one call and read in the next may have been replaced in between
        def cells(selector):
            return browser.execute_script(
                "return [...document.querySelectorAll(arguments[0])].map(r => [...r.cells].map(c => c.innerText.trim()))",
                selector)

        tiers = {row[0]: int(row[1]) for row in cells("#tiers tr")}
        assert tiers == k["tier_counts"]
        for order in ("top", "bottom"):
            _, board = worker.get(f"/leaderboard?order={order}&limit=8")
            assert [row[0] for row in cells(f"#{order} tr")] == [c["customer_id"] for c in board["customers"]]
        _, recent = worker.get("/alerts/recent?limit=10")
        assert len(cells("#alerts tr")) == len(recent["alerts"]) > 0
        shown = {row[3] for row in cells("#alerts tr")}                 # each alert with its sentence
        assert shown and shown <= {a["why"]["sentence"] for a in worker.get("/alerts/recent?limit=100")[1]["alerts"]}

        # the trend charts: one point per day recorded, the newest value beside each chart
        _, trend = worker.get("/kpis/trend")
        assert trend["points"]
        wait.until(lambda d: d.find_elements(By.ID, "trend-aer"))
        charts = browser.execute_script(      # one call: the page re-renders every 2 s
            "return ['trend-aer', 'trend-stickiness', 'trend-nps', 'trend-tiers'].map(id => "
            "[Number(document.getElementById(id).dataset.points), document.getElementById(id)"
            ".querySelectorAll('polyline').length])")
        recorded = len(worker.get("/kpis/trend")[1]["points"])
        assert [points for points, _ in charts] == [recorded] * 4 and [lines for _, lines in charts] == [1, 1, 1, 2]

        # a click on a leaderboard row shows that customer: card, sparkline of its history, why
        clicked = browser.execute_script(
            "const row = document.querySelector('#bottom tr[data-id]'); row.click(); return row.dataset.id")
        wait.until(lambda d: d.find_elements(By.ID, "sparkline"))
        _, history = worker.get(f"/customers/{clicked}/history")
        _, card = worker.get(f"/customers/{clicked}")
        assert text("lookup-name") == clicked and text("lookup-why") == card["why"]["sentence"]
        assert browser.execute_script("return Number(document.getElementById('sparkline').dataset.points)") == \
            len(history["points"]) == 31
        change = history["change"]["7d"]
        assert text("change-7d") == ("–" if change is None else f"{'+' if change >= 0 else ''}{change:.1f}")

        best = worker.get("/leaderboard?order=top&limit=1")[1]["customers"][0]["customer_id"]
        browser.find_element(By.ID, "lookup-id").clear()
        browser.find_element(By.ID, "lookup-id").send_keys(best)
        browser.find_element(By.ID, "lookup-go").click()
        wait.until(lambda d: d.execute_script("return document.getElementById('lookup-name')?.innerText") == best)
        _, card = worker.get(f"/customers/{best}")
        assert text("lookup-name") == best and text("lookup-es") == f"{card['es']:.2f}"
        assert [row[0] for row in cells("#breakdown tr")[1:]] == [
            b["type"] for b in card["breakdown"] if b["count"] > 0]

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "live-page.png"
        browser.execute_script("window.scrollTo(0, 0)")          # the whole page from its top
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000

        browser.find_element(By.ID, "lookup-id").clear()
        browser.find_element(By.ID, "lookup-id").send_keys("nobody-here")
        browser.find_element(By.ID, "lookup-go").click()
        wait.until(lambda d: d.find_elements(By.ID, "lookup-error"))
        assert "unknown customer" in text("lookup-error")
    finally:
        worker.stop()
