"""Site search: the Pagefind index is built with the site and finds stories by their titles."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator

import pytest

from .conftest import MiniSite, story
from .test_html_quality import QuietHandler

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_search_index_is_built_with_the_site(sample_site: MiniSite) -> None:
    assert (sample_site.output / "pagefind/pagefind.js").is_file()
    assert (sample_site.output / "pagefind/pagefind-ui.js").is_file()
    assert list((sample_site.output / "pagefind/index").iterdir())


def test_search_page_offers_the_topic_index_without_javascript(sample_site: MiniSite) -> None:
    page = sample_site.page("search/")
    hrefs = {a.get("href") for a in page.find(".//main").iter("a")}
    assert {"/topics/policing/", "/topics/privacy/", "/topics/ai/"} <= hrefs
    nav = {a.get("href") for a in page.find(".//nav").iter("a")}
    assert "/search/" in nav


def test_only_stories_topics_and_issues_are_indexed(sample_site: MiniSite) -> None:
    for route, indexed in [("stories/new-jersey-bars-clearview/", True), ("topics/ai/", True),
                           ("issues/1/", True), ("", False), ("feeds/", False)]:
        main = sample_site.page(route).find(".//main")
        assert ("data-pagefind-body" in main.attrib) is indexed, route


def test_search_is_off_unless_asked_for(make_site) -> None:
    site = make_site({"content/a.md": story()})
    site.build()
    assert not (site.output / "pagefind").exists()
    assert not (site.output / "search").exists()


@pytest.fixture(scope="module")
def served_sample(sample_site: MiniSite) -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(sample_site.output))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_a_query_for_a_story_title_finds_it(served_sample: str) -> None:
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (.ci/run installs it)")
        pytest.skip("Chromium is not installed here; .ci/run installs it")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(served_sample + "search/")
        urls = page.evaluate("""async () => {
            const pagefind = await import("/pagefind/pagefind.js");
            const search = await pagefind.search("New Jersey Clearview");
            const data = await Promise.all(search.results.slice(0, 3).map(r => r.data()));
            return data.map(d => d.url);
        }""")
        assert urls[0] == "/stories/new-jersey-bars-clearview/"
        page.fill(".pagefind-ui__search-input", "Moscow")
        page.wait_for_selector(".pagefind-ui__result-link", timeout=10000)
        links = page.eval_on_selector_all(".pagefind-ui__result-link",
                                          "els => els.map(e => e.getAttribute('href'))")
        assert "/stories/moscow-live-facial-recognition-app/" in links
        browser.close()
