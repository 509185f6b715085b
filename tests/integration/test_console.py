"""The web console in a real browser (Debian's chromium, headless, through Playwright) on the
real stack, with two deployed pipelines under load: an A/B split with a previous version,
and a shadow deploy. Each page loads without console errors, its plots have points, the logs
filter returns the failing rows, and a previous version is deployed from the page. A
screenshot of each page is saved under the test's tmp dir."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from control.demo.models import diabetes_regressor
from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from tests.integration._chromium import ARGS, chromium_or_skip

pytestmark = pytest.mark.slow

X = np.random.default_rng(5).random((20, 10), dtype=np.float32)
GOOD = pd.DataFrame({"tensor": [row.tolist() for row in X]})
BAD = pd.DataFrame({"tensor": [[1.0, 2.0, 3.0]]})  # three values where the model takes ten
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def chromium(pytestconfig: pytest.Config) -> Path:
    return chromium_or_skip(pytestconfig)


@pytest.fixture(scope="module")
def pipelines(
    client: Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, Pipeline, str]]:
    """`console-ab` (version 1: one model; deployed: version 2, a 2:1 split) and
    `console-shadow` (a champion and one challenger); yields them and version 1, and
    undeploys them after (the session's stack serves other modules' pipelines too)."""
    root = tmp_path_factory.mktemp("console-models")
    control = client.upload_model("console-control", diabetes_regressor(root / "c.onnx", alpha=1.0))
    challenger = client.upload_model(
        "console-challenger", diabetes_regressor(root / "d.onnx", alpha=0.1)
    )
    ab = client.build_pipeline("console-ab").add_model_step(control)
    first = ab.create_version().version
    ab.clear().add_random_split([(2, control), (1, challenger)]).deploy(quiet=True)
    shadow = client.build_pipeline("console-shadow").add_shadow_deploy(control, [challenger])
    yield ab, shadow.deploy(quiet=True), first
    ab.undeploy()
    shadow.undeploy()


@pytest.fixture(scope="module")
def load(pipelines: tuple[Pipeline, Pipeline, str]) -> Iterator[None]:
    """Requests to both pipelines while the test runs; every fifth one to the split is
    malformed, so its logs hold failing rows."""
    ab, shadow, _ = pipelines
    stop = threading.Event()

    def send() -> None:
        i = 0
        while not stop.is_set():
            for pipeline, frame in ((ab, BAD if i % 5 == 4 else GOOD), (shadow, GOOD)):
                try:
                    pipeline.infer(frame)
                except Exception:  # the malformed rows are refused; the load goes on
                    pass
            i += 1
            stop.wait(0.1)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    ab.infer(GOOD)  # both answer before the browser looks
    shadow.infer(GOOD)
    yield
    stop.set()
    thread.join(timeout=60)


def _points(page: Any, chart: str, errors: list[str]) -> None:
    """Wait until the chart's series plot at least one value."""
    try:
        page.wait_for_function(
            f"() => Number(document.querySelector('#chart-{chart}')?.dataset.points || 0) > 0",
            timeout=WAIT_MS,
        )
    except Exception as exc:
        raise AssertionError(
            f"chart {chart} has no points; the page shows "
            f"{page.inner_text('main')[:2000]!r}; errors: {errors}"
        ) from exc


def test_console_pages_in_a_browser(
    stack: dict[str, Any],
    chromium: Path,
    load: None,
    pipelines: tuple[Pipeline, Pipeline, str],
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    ab, _, first = pipelines
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        url = stack["server_url"]

        def shot(name: str) -> None:
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)

        page.goto(f"{url}/")
        page.wait_for_selector("#token")
        shot("login")
        page.fill("#token", stack["token"])
        page.click("button[type=submit]")
        page.wait_for_selector("text=console-shadow")
        row = page.locator("tr", has_text="console-ab")
        assert "Running" in row.inner_text()
        assert "shadow" in page.locator("tr", has_text="console-shadow").inner_text()
        shot("pipelines")

        page.goto(f"{url}/#/pipeline/console-ab")
        page.wait_for_selector("#chain svg")
        assert "split" in page.inner_text("#chain")
        for chart in ("throughput", "latency", "errors", "lag"):
            _points(page, chart, errors)
        shot("pipeline")

        page.goto(f"{url}/#/experiments/console-ab")
        _points(page, "split", errors)
        shot("experiments-split")
        page.goto(f"{url}/#/experiments/console-shadow")
        _points(page, "shadow", errors)
        shot("experiments-shadow")

        page.goto(f"{url}/#/logs/console-ab")
        page.wait_for_selector("#log-rows table")
        page.select_option("select[name=valid]", "false")
        page.select_option("select[name=dataset]", ["time", "anomaly", "metadata"])
        page.click("#apply")
        page.wait_for_selector("#log-rows[data-query*='valid=false'] table", timeout=WAIT_MS)
        failing = _column(page, "anomaly.count")
        assert failing and all(int(v) > 0 for v in failing), failing
        assert all(e for e in _column(page, "metadata.error"))  # each failed request says why
        assert "in.tensor" not in _headers(page)  # the dataset filter left it out
        shot("logs")
        page.select_option("select[name=valid]", "")
        page.click("#apply")
        page.wait_for_selector(
            "#log-rows[data-query='limit=25&dataset=time&dataset=anomaly&dataset=metadata'] table",
            timeout=WAIT_MS,
        )
        newest = _column(page, "request_id")
        page.click("#older")
        page.wait_for_selector("#log-rows[data-query*='cursor='] table", timeout=WAIT_MS)
        assert page.inner_text("#log-info").startswith("page 2")
        older = _column(page, "request_id")
        assert len(newest) == 25 and older and not set(older) & set(newest) - {newest[-1]}

        page.goto(f"{url}/#/infer/console-ab")
        page.wait_for_selector("#infer-input")
        page.wait_for_load_state("networkidle")  # the page is drawn once, not again after
        page.fill("#infer-input", GOOD.head(2).to_json(orient="records"))
        page.click("#infer")
        page.wait_for_selector("#infer-result table, #infer-result p.error")
        assert page.locator("#infer-result table").count(), page.inner_text("#infer-result")
        assert len(_column(page, "out.variable", "#infer-result")) == 2
        shot("infer")

        page.goto(f"{url}/#/pipeline/console-ab")
        page.click(f"button.deploy[data-version='{first}']")
        page.wait_for_function(
            f"() => !document.querySelector(\"button.deploy[data-version='{first}']\")",
            timeout=WAIT_MS * 2,
        )
        shot("deployed-previous")
        browser.close()
    assert ab.status()["version"] == first
    assert errors == []


def _headers(page: Any, within: str = "#log-rows") -> list[str]:
    return [
        str(t)
        for t in page.eval_on_selector_all(f"{within} th", "ts => ts.map(t => t.textContent)")
    ]


def _column(page: Any, name: str, within: str = "#log-rows") -> list[str]:
    index = _headers(page, within).index(name)
    return [
        str(v)
        for v in page.eval_on_selector_all(
            f"{within} tbody tr", f"rows => rows.map(r => r.children[{index}].textContent)"
        )
    ]
