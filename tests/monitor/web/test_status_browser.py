"""The status page in a real browser: Debian's headless Chromium, driven by Playwright, with
JavaScript off, at 1400 and 400 px: no horizontal scroll, no request to another origin, every
target there, the state of each not cut. Screenshots go to the test's tmp dir (and, with
STATUS_SCREENSHOT=path, to that file: the README's docs/status-page.png)."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Request, async_playwright

from monitor.runtime import History
from tests.monitor.web.status_support import running, until
from tests.support.tools import installed

pytestmark = pytest.mark.timeout(120)
WIDTHS = (1400, 400)


def seed_history(history: History, now: float) -> None:
    """Synthetic past probes, so the bars and the sparkline have something to show: a good
    web target, a chain node with a bad hour and a bad day, latency in waves."""
    for back in range(1, 24):
        for i in range(20):
            at = now - back * 3600 - i * 60
            wave = 0.04 + 0.02 * math.sin(back / 3)
            history.record("web", True, at, wave)
            history.record("eth-main", not (back == 5 and i < 4), at, 2 * wave)
    for back in range(1, 90):
        for i in range(10):
            at = now - back * 86400 - i * 600
            history.record("web", True, at, 0.05)
            history.record("eth-main", not (back == 12 and i < 3), at, 0.1)


async def test_the_page_fits_400_px_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    chromium = installed("chromium", "chromium")
    async with running(tmp_path, 'title = "Acme chain status"\npublic = true') as m, \
            aiohttp.ClientSession() as http:
        m.runtime.slo_status = lambda: [{"name": "eth-main availability", "objective": 0.999,
                                         "window": "30d", "attained": 0.99931,
                                         "error_budget_remaining": 0.31}]
        seed_history(m.runtime.history, time.time())
        m.flaky.status = 503

        async def firing() -> bool:
            async with http.get(f"{m.public}/api/v1/status") as resp:
                return any(i["status"] == "firing" for i in (await resp.json())["incidents"])
        await until(firing)
        names = [t.name for t in m.runtime.config.targets]
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium,
                                              args=["--no-sandbox", "--disable-gpu"])
            try:
                for width in WIDTHS:
                    context = await browser.new_context(
                        viewport={"width": width, "height": 900}, java_script_enabled=False)
                    page = await context.new_page()
                    requests: list[str] = []

                    def seen(request: Request, into: list[str] = requests) -> None:
                        into.append(request.url)
                    page.on("request", seen)
                    response = await page.goto(f"{m.public}/", wait_until="load")
                    assert response is not None and response.status == 200
                    shot = tmp_path / f"status-{width}.png"
                    await page.screenshot(path=str(shot), full_page=True)
                    # JavaScript is off in the page, not in Playwright's own evaluation
                    scroll = await page.evaluate(
                        "[document.scrollingElement.scrollWidth, window.innerWidth]")
                    assert scroll[0] <= scroll[1], (width, scroll)
                    foreign = [u for u in requests if not u.startswith(m.public + "/")]
                    assert not foreign, foreign
                    for name in names:
                        card = page.locator(f'[id="t-{name}"]')
                        assert await card.is_visible(), (width, name)
                        state = card.locator(".st")
                        box = await state.bounding_box()
                        assert box is not None and box["x"] + box["width"] <= width
                        fits = await state.evaluate("e => e.scrollWidth <= e.clientWidth")
                        assert fits, (width, name)
                    states = await page.locator(".st").all_inner_texts()
                    assert "DOWN" in states and "UP" in states
                    await context.close()
            finally:
                await browser.close()
    assert (tmp_path / "status-400.png").stat().st_size > 0
    target = os.environ.get("STATUS_SCREENSHOT")
    if target:
        shutil.copyfile(tmp_path / "status-1400.png", target)
