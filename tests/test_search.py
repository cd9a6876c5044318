"""Site search: the Pagefind index is built with the site and finds stories by their titles."""

from __future__ import annotations

import functools
import http.server
import io
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broadsheet import search
from broadsheet.search import BackgroundIndex

from .conftest import MiniSite, story, wait_until
from .test_html_quality import QuietHandler


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


def test_a_query_for_a_story_title_finds_it(served_sample: str, chromium: Any) -> None:
    page = chromium.new_page()
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


# Stands in for Pagefind: waits until its first argument exists, then writes an index.
HELD_PAGEFIND = """
import pathlib, sys, time
go, output = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
while not go.exists():
    time.sleep(0.02)
output.mkdir(parents=True)
(output / "pagefind.js").write_text("")
"""


def test_an_index_under_way_when_search_is_turned_off_is_not_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dev server indexes in the background: a run that finished after site.yaml
    turned search off was served at /pagefind/ all the same, and kept as the previous
    index once search was back on."""
    go = tmp_path / "go"

    def held(site: Path, *output: str) -> list[str]:
        return [sys.executable, "-c", HELD_PAGEFIND, str(go), output[-1]]

    monkeypatch.setattr(search, "pagefind_command", held)
    index = BackgroundIndex(tmp_path / "site", tmp_path, io.StringIO())
    index.start()
    try:
        index.request()
        assert wait_until(lambda: index._process is not None)
        index.clear()  # search: false in site.yaml, while Pagefind runs
        index.request()  # and on again: the next run follows the one under way
        go.touch()
        assert wait_until(lambda: bool(index.folders()))
        assert index.folders() == [tmp_path / "search-2"]
        assert not (tmp_path / "search-1").exists()
    finally:
        index.stop()




# Stands in for Pagefind: ends as Ctrl-C in the terminal ends it.
INTERRUPTED_PAGEFIND = """
import os, pathlib, signal, sys
pathlib.Path(sys.argv[1]).touch()
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.kill(os.getpid(), signal.SIGINT)
"""


def test_pagefind_stopped_by_ctrl_c_is_not_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C reaches Pagefind as well as the server, which then stops: "Search index not
    updated: Pagefind failed" printed before "Stopped." read as an error of its own."""
    ran = tmp_path / "ran"

    def interrupted(site: Path, *output: str) -> list[str]:
        return [sys.executable, "-c", INTERRUPTED_PAGEFIND, str(ran), output[-1]]

    monkeypatch.setattr(search, "pagefind_command", interrupted)
    log = io.StringIO()
    index = BackgroundIndex(tmp_path / "site", tmp_path, log)
    refreshed = threading.Event()
    one_run = index._refresh

    def refresh(cleared: int) -> None:
        one_run(cleared)
        refreshed.set()

    monkeypatch.setattr(index, "_refresh", refresh)
    index.start()
    try:
        index.request()
        assert refreshed.wait(10)
        assert ran.exists() and log.getvalue() == ""
    finally:
        index.stop()
