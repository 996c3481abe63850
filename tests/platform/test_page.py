"""The page at `/` in a real headless chromium: it loads, a new build appears, its log grows
while it runs, a failed build shows its reason. The screenshot is kept (VEIL_TEST_ARTIFACTS, or
the test's temporary folder)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform.browser import Browser
from tests.platform.conftest import BASE, GitServer, PlatformServer, request

pytestmark = [pytest.mark.integration, pytest.mark.slow]



@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


def _log_ticks(browser: Browser) -> int:
    return int(browser.eval(
        "(document.getElementById('log').textContent.match(/tick-\\d+/g) || []).length"))


def test_the_page_shows_builds_live(
    browser: Browser, platform: PlatformServer, git_server: GitServer, registry: str,
    base_image: str, tmp_path: Path,
) -> None:
    browser.goto(platform.url + "/")
    assert browser.eval("document.querySelector('h1').textContent") == "Builds"

    slow = git_server.repo("ticking", {"Dockerfile": BASE + (
        "RUN for i in $(seq 1 16); do echo tick-$i; sleep 0.5; done\n")})
    build_id = platform.submit(request(git_server.url("ticking"), slow, [registry],
                                       namespace="team-page", image_name="team-page/ticking",
                                       build_args={"BASE_IMAGE": base_image}))
    row = f"document.getElementById('build-{build_id}')"
    browser.wait_for(row, timeout=15)  # the new build appears without reloading
    assert browser.eval(f"{row}.querySelector('.namespace').textContent") == "team-page"
    assert "team-page/ticking" in browser.eval(f"{row}.querySelector('.image').textContent")

    # its log grows while it runs
    browser.wait_for("/tick-\\d+/.test(document.getElementById('log').textContent)", 90)
    first = _log_ticks(browser)
    assert browser.eval(f"{row}.dataset.status") == "running"
    browser.wait_for(f"(document.getElementById('log').textContent.match(/tick-\\d+/g) || [])"
                     f".length > {first}", 30)
    assert _log_ticks(browser) > first
    browser.wait_for(f"{row} && {row}.dataset.status === 'succeeded'", 90)
    digest = platform.build(build_id)["digests"][registry]
    browser.wait_for(f"{row}.querySelector('.digests').textContent.includes({json.dumps(digest)})")
    assert registry in browser.eval(f"{row}.querySelector('.digests').textContent")
    assert browser.eval(f"{row}.querySelector('.duration').textContent").endswith(" s")

    # a failed build shows its reason
    bad = git_server.repo("failing-page", {"Dockerfile": BASE + "RUN echo no-luck && exit 7\n"})
    bad_id = platform.submit(request(git_server.url("failing-page"), bad, [registry],
                                     namespace="team-page", image_name="team-page/failing",
                                     build_args={"BASE_IMAGE": base_image}))
    bad_row = f"document.getElementById('build-{bad_id}')"
    browser.wait_for(f"{bad_row} && {bad_row}.dataset.status === 'failed'", 90)
    reason = browser.eval(f"{bad_row}.querySelector('.error').textContent")
    assert "building Dockerfile failed" in reason and "no-luck" in reason

    out = Path(os.environ.get("VEIL_TEST_ARTIFACTS") or tmp_path) / "platform-page.png"
    shot = browser.screenshot(out)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
