"""Pages as the outside world checks them: the W3C Nu Html Checker and axe-core in Chromium.

These need Java with the Nu checker's vnu.jar, Chromium and axe-core, which `.ci/run`
installs (BROADSHEET_VNU_JAR, BROADSHEET_AXE_JS). Outside CI a missing tool skips its test
with the reason; under CI (CI set) a missing tool is a failure, so they can never silently
stop running there.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import MiniSite

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGES = [
    "",
    "stories/new-jersey-bars-clearview/",
    "stories/met-police-live-facial-recognition/",
    "topics/",
    "topics/policing/",
    "topics/policing/page/2/",
    "issues/",
    "issues/2/",
    "feeds/",
    "search/",
    "404.html",
]


def require(condition: object, what: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is required in CI (.ci/run installs it)")
        pytest.skip(f"{what} is not installed here; .ci/run installs it")


@pytest.fixture(scope="module")
def drafts_site(sample_site: MiniSite, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample site built with drafts, so the draft marking is checked too."""
    output = tmp_path_factory.mktemp("drafts") / "output"
    sample_site.build(drafts=True, output_dir=output)
    return output


def test_every_page_is_valid_html(drafts_site: Path) -> None:
    jar = os.environ.get("BROADSHEET_VNU_JAR", "")
    require(shutil.which("java") and jar and Path(jar).is_file(), "java with vnu.jar")
    result = subprocess.run(
        [
            "java",
            "-jar",
            jar,
            "--errors-only",
            "--format",
            "json",
            "--skip-non-html",
            str(drafts_site),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    messages = json.loads(result.stderr or '{"messages": []}')["messages"]
    problems = [
        f"{m.get('url', '').rsplit('/output/', 1)[-1]}:{m.get('lastLine')}: {m.get('message')}"
        for m in messages
    ]
    assert problems == []
    assert result.returncode == 0


@pytest.fixture(scope="module")
def served(drafts_site: Path) -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(drafts_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require(CHROMIUM, "Chromium")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_have_no_serious_accessibility_violations(browser, served: str, scheme: str) -> None:
    axe = os.environ.get("BROADSHEET_AXE_JS", "")
    require(axe and Path(axe).is_file(), "axe-core (axe.min.js)")
    context = browser.new_context(color_scheme=scheme)
    page = context.new_page()
    found = []
    for route in PAGES:
        page.goto(served + route)
        page.add_script_tag(path=axe)
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        for violation in result["violations"]:
            if violation["impact"] in ("serious", "critical"):
                targets = [n["target"] for n in violation["nodes"]][:3]
                found.append(
                    f"/{route} [{scheme}] {violation['id']}: {violation['help']} {targets}"
                )
    context.close()
    assert found == []


@pytest.mark.parametrize("width", [320, 1280])
def test_pages_fit_narrow_and_wide_screens_without_sideways_scrolling(
    browser, served: str, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    too_wide = []
    for route in PAGES:
        page.goto(served + route)
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        if scroll_width > width:
            too_wide.append((route, scroll_width))
    context.close()
    assert too_wide == []
