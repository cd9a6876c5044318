"""`broadsheet import`: feeds served from 127.0.0.1 become draft stories, folds, or skips."""

from __future__ import annotations

import contextlib
import html
import http.server
import os
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import nh3
import pytest
from rapidfuzz import fuzz

from broadsheet import feedreader, importer, storyfile
from broadsheet.cli import main
from broadsheet.config import load_config
from broadsheet.feedreader import FeedItem, ItemImage, excerpt, plain_text
from broadsheet.importer import Catalogue, import_sources
from broadsheet.readers import clean_text
from broadsheet.storyfile import Fold, Outlet, fold_into

from .conftest import MiniSite

RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">
<channel>
  <title>The Verge</title><link>https://www.theverge.com/</link>
  <description>Tech news</description>
  <lastBuildDate>Thu, 30 Jan 2020 18:00:00 GMT</lastBuildDate>
  <item>
    <title>Moscow rolls out live facial recognition system with an app to alert police</title>
    <link>https://www.theverge.com/2020/1/30/21115119/moscow?utm_source=rss&amp;utm_medium=feed</link>
    <description>&lt;p&gt;Moscow is the latest &lt;b&gt;major city&lt;/b&gt; to introduce live
      facial recognition cameras &amp;amp; more.&lt;/p&gt;</description>
    <category>Machine Learning</category><category>Unmapped Category</category>
    <pubDate>Thu, 30 Jan 2020 16:13:00 GMT</pubDate>
    <media:content url="https://cdn.vox-cdn.com/moscow.jpg" width="1400" height="933"
      medium="image" type="image/jpeg"/>
  </item>
  <item>
    <title>An item with its picture in the description</title>
    <link>https://www.theverge.com/2020/1/31/picture</link>
    <description>&lt;img src="https://cdn.vox-cdn.com/p.jpg" width="800" height="450"&gt;
      Text.</description>
    <pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate>
  </item>
  <item>
    <title>An item without a date</title>
    <link>https://www.theverge.com/undated</link>
  </item>
</channel>
</rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Forbes</title><id>https://www.forbes.com/</id>
  <link href="https://www.forbes.com/" rel="alternate"/>
  <updated>2020-01-30T02:19:00Z</updated>
  <entry>
    <title>Facebook To Pay $550 Million To Settle Facial Recognition Lawsuit</title>
    <id>tag:forbes.com,2020:fb</id>
    <link href="https://www.forbes.com/sites/facebook-550-million/amp/" rel="alternate"/>
    <updated>2020-01-30T02:19:00Z</updated>
    <summary>Facebook agreed to pay $550 million to settle a class action.</summary>
    <category term="privacy"/>
  </entry>
  <entry>
    <title>Remember FindFace?</title>
    <id>tag:forbes.com,2020:findface</id>
    <link href="https://www.forbes.com/sites/findface/" rel="alternate"/>
    <updated>2020-01-29T17:50:00Z</updated>
    <summary type="html">&lt;p&gt;Built on tens of thousands of cameras.&lt;/p&gt;</summary>
  </entry>
</feed>
"""

JSON_FEED = """{
  "version": "https://jsonfeed.org/version/1.1",
  "title": "Reuters Tech",
  "home_page_url": "https://www.reuters.com/",
  "items": [
    {"id": "1", "url": "https://www.reuters.com/article/watchdog-idUSKBN1ZR273",
     "title": "British watchdog urges caution over police facial recognition plans",
     "content_html": "<p>LONDON (Reuters) - Britain's surveillance watchdog...</p>",
     "date_published": "2020-01-28T17:25:00Z", "tags": ["Privacy", "AI"],
     "image": "https://s4.reutersmedia.net/rcom-default.png"}
  ]
}
"""

DUPLICATES = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Dupes</title><link>https://dupes.example.com/</link>
<item><title>Same story twice</title><link>https://dupes.example.com/a?utm_source=x</link>
<pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
<item><title>Same story twice</title><link>https://www.dupes.example.com/a/</link>
<pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
</channel></rss>
"""

HOSTILE = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>&lt;script&gt;Evil&lt;/script&gt; Outlet</title>
<link>https://evil.example.com/</link>
<item><title>&lt;img src=x onerror=alert(1)&gt;Hostile &lt;script&gt;alert(2)&lt;/script&gt;title
</title>
<link>https://evil.example.com/story</link>
<description>&lt;script&gt;alert(3)&lt;/script&gt;
&lt;a href="javascript:alert(4)"&gt;click&lt;/a&gt;
 "quotes" and 'apostrophes' --- and a line with --- dashes</description>
<pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
<item><title>A javascript link</title><link>javascript:alert(5)</link>
<pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
<item><title>No link</title><pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
<item><title>Empty link</title><link> </link><pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate>
</item>
<item><title>&#x200b;&#xad; &#xfeff;</title><link>https://evil.example.com/blank</link>
<pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
</channel></rss>
"""

# Links urljoin refuses (an unclosed IPv6 bracket), where the import resolves links
BRACKETS = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Brackets</title><link>https://brackets.example/</link>
<item><title>A picture at a broken address</title><link>https://brackets.example/a</link>
<description>&lt;img src="http://[::1/a.png"&gt; Text.</description>
<pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
<item><title>A broken link</title><link>http://[::1/b</link>
<pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
</channel></rss>
"""
BRACKETS_JSON = """{"version": "https://jsonfeed.org/version/1.1", "items": [
{"url": "https://brackets.example/j", "title": "A JSON item with a broken picture",
 "content_html": "<img src=\\"//[::1/j.png\\">", "date_published": "2020-01-31T10:00:00Z"}]}
"""
BRACKETS_OPML = """<?xml version="1.0"?><opml version="2.0"><body>
<outline xmlUrl="http://[::1/feed"/><outline xmlUrl="brackets.xml"/>
<outline xmlUrl="brackets.json"/>
</body></opml>
"""
EXISTING = """---
# A story the curator wrote; its comments and layout must survive a fold.
title: "Facebook to Pay $550 Million to Settle Facial Recognition Suit"
publishedDateTime: 2020-01-29T23:18:00Z
webUrl: "https://www.nytimes.com/2020/01/29/technology/facebook.html"

provider:
  name: New York Times   # the outlet
  domain: nytimes.com

related:
  - title: "An earlier related item"
    webUrl: "https://example.com/earlier"

topics:
  - Privacy
---

The curator's note stays as it is.
"""

SITE_YAML = """\
title: Import test
base_url: https://example.org/
issues:
  epoch: 2020-01-06
import:
  topics:
    machine learning: AI
    Privacy: Privacy
  allow_private_hosts: true
  timeout: 1
"""


class FeedHandler(http.server.BaseHTTPRequestHandler):
    documents: ClassVar[dict[str, tuple[str, str]]] = {
        "/rss.xml": ("application/rss+xml", RSS), "/atom.xml": ("application/atom+xml", ATOM),
        "/feed.json": ("application/feed+json", JSON_FEED),
        "/dupes.xml": ("application/rss+xml", DUPLICATES),
        "/hostile.xml": ("application/rss+xml", HOSTILE),
        "/brackets.xml": ("application/rss+xml", BRACKETS),
        "/brackets.json": ("application/feed+json", BRACKETS_JSON),
        "/brackets.opml": ("text/x-opml", BRACKETS_OPML),
        "/page.html": ("text/html", "<!doctype html><title>Not a feed</title><p>Hello</p>"),
    }
    requests: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        FeedHandler.requests.append((self.path, self.headers.get("If-None-Match", "")))
        if self.path == "/slow.xml":
            time.sleep(3)
        if self.path == "/list.opml":
            port = self.server.server_address[1]
            body = ('<?xml version="1.0"?><opml version="2.0"><head><title>Feeds</title></head>'
                    "<body>" + "".join(f'<outline type="rss" text="{n}" xmlUrl="http://127.0.0.1:'
                                       f'{port}/{n}"/>' for n in ("rss.xml", "atom.xml",
                                                                  "feed.json"))
                    + "</body></opml>")
            self.send(200, "text/x-opml", body)
            return
        if self.path not in self.documents:
            self.send(404, "text/plain", "not found")
            return
        kind, body = self.documents[self.path]
        etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send(200, kind, body, etag)

    def send(self, status: int, kind: str, body: str, etag: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def feeds() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FeedHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture
def site(make_site) -> MiniSite:
    return make_site({"content/2020-01/facebook.md": EXISTING}, site_yaml=SITE_YAML)


def run_import(site: MiniSite, *sources: str, dry_run: bool = False):
    return import_sources(load_config(site.root), list(sources), dry_run=dry_run)


def inbox(site: MiniSite) -> dict[str, str]:
    folder = site.root / "content" / "inbox"
    return {p.name: p.read_text() for p in sorted(folder.glob("*.md"))} if folder.exists() \
        else {}


def test_rss_items_become_draft_stories_with_every_field(site: MiniSite, feeds: str) -> None:
    report = run_import(site, feeds + "rss.xml")
    assert [a.kind for a in report.actions] == ["create", "create", "create"]
    assert report.failed == []
    assert any("has no date; using the feed's" in w for w in report.warnings)
    built = site.build(drafts=True).site
    moscow = built.article("moscow-rolls-out-live-facial-recognition-system-with-an-app")
    assert moscow is not None and moscow.is_draft
    assert moscow.url == "https://www.theverge.com/2020/1/30/21115119/moscow"
    assert moscow.published.isoformat() == "2020-01-30T16:13:00+00:00"
    assert moscow.excerpt == ("Moscow is the latest major city to introduce live facial "
                              "recognition cameras & more.")
    assert (moscow.provider.name, moscow.provider.domain) == ("The Verge", "theverge.com")
    assert [t.name for t in moscow.topics] == ["AI"]  # unmapped categories are left out
    assert [(i.url, i.width, i.height) for i in moscow.images] == [
        ("https://cdn.vox-cdn.com/moscow.jpg", 1400, 933)]
    picture = built.article("an-item-with-its-picture-in-the-description")
    assert [(i.url, i.width, i.height) for i in picture.images] == [
        ("https://cdn.vox-cdn.com/p.jpg", 800, 450)]
    undated = built.article("an-item-without-a-date")
    assert undated.published.isoformat() == "2020-01-30T18:00:00+00:00"  # the feed's date


def test_importing_twice_changes_nothing(site: MiniSite, feeds: str) -> None:
    run_import(site, feeds + "rss.xml", feeds + "feed.json")
    before = {p: p.read_bytes() for p in (site.root / "content").rglob("*.md")}
    FeedHandler.requests.clear()
    report = run_import(site, feeds + "rss.xml", feeds + "feed.json")
    assert report.count("create") == 0 and report.count("fold") == 0
    assert {p: p.read_bytes() for p in (site.root / "content").rglob("*.md")} == before
    assert all(etag for path, etag in FeedHandler.requests)  # conditional GET was used


INTERNATIONAL = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Bücher</title><link>https://bücher.example/</link>
<item><title>A story at an international address</title><link>https://bücher.example/straße</link>
<pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
</channel></rss>
"""


def test_importing_an_international_address_twice_changes_nothing(site: MiniSite) -> None:
    feed = str(site.write("international.xml", INTERNATIONAL))
    run_import(site, feed)
    before = inbox(site)
    report = run_import(site, feed)
    assert [a.kind for a in report.actions] == ["skip"]  # not folded into itself
    assert inbox(site) == before
    story = site.build(drafts=True).site.article("a-story-at-an-international-address")
    assert story is not None and story.related == ()
    assert story.url == "https://xn--bcher-kva.example/stra%C3%9Fe"


NO_CHARACTER = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Refs&#xD800;</title><link>https://refs.example/</link>
<item><title>Sur&#55296;ro&#x110000;ga&#99999999999999999999999;te</title>
<link>https://refs.example/a</link><description>a &#xdc00; b</description>
<pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
</channel></rss>
"""


def test_character_references_to_no_character_become_replacement_characters(
        site: MiniSite) -> None:
    report = run_import(site, str(site.write("refs.xml", NO_CHARACTER)))
    assert report.failed == [] and [a.kind for a in report.actions] == ["create"]
    story = site.build(drafts=True).site.article("surrogate")
    assert story is not None and story.title == "Sur\ufffdro\ufffdga\ufffdte"
    assert story.excerpt == "a \ufffd b"
    feed = NO_CHARACTER.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    report = run_import(site, str(site.write("refs16.xml", feed)))  # refused, not a crash
    assert len(report.failed) == 1 and "not a feed" in str(report.failed[0])


def test_markup_that_trips_feedparser_fails_that_feed_alone(site: MiniSite) -> None:
    broken = site.write("broken.xml", '<rss version="2.0"><channel><title>T</title>'
                        "<item<category</item>AI</category></channel></rss>")
    fine = site.write("fine.xml", INTERNATIONAL)
    report = run_import(site, str(broken), str(fine))
    assert report.failed == [f"{broken}: not a feed (KeyError: 'tags')"]
    assert [a.kind for a in report.actions] == ["create"]


def test_lone_surrogates_in_a_json_feed_become_replacement_characters(site: MiniSite) -> None:
    feed = (b'{"version": "https://jsonfeed.org/version/1.1", "title": "Out\\udfff",'
            b' "items": [{"url": "https://lone.example/\\ud800", "title": "Lone \xed\xa0\x80 one",'
            b' "summary": "x \\udc00 y", "tags": ["\\ud800"], "image": "https://lone.example/\\ud800.png",'
            b' "date_published": "2020-01-31T10:00:00Z"}]}')
    report = run_import(site, str(site.write("lone.json", feed)))
    assert report.failed == [] and [a.kind for a in report.actions] == ["create"]
    story = site.build(drafts=True).site.article("lone-one")
    assert story is not None and story.title == "Lone \ufffd one"
    assert (story.excerpt, story.provider.name) == ("x \ufffd y", "Out\ufffd")
    assert story.url == "https://lone.example/%EF%BF%BD"


def test_links_that_cannot_be_resolved_are_left_out_not_a_crash(site: MiniSite,
                                                                 feeds: str) -> None:
    report = run_import(site, feeds + "brackets.opml")
    assert report.failed == ["http://[::1/feed: malformed URL"]
    assert sorted(a.title for a in report.actions if a.kind == "create") == [
        "A JSON item with a broken picture", "A picture at a broken address"]
    assert any("left out A broken link: no http(s) link" in w for w in report.warnings)
    stories = site.build(drafts=True).site.articles
    assert [story.images for story in stories if story.is_draft] == [(), ()]


def test_json_feed_and_opml(site: MiniSite, feeds: str) -> None:
    report = run_import(site, feeds + "list.opml")
    assert report.sources == 3
    created = {a.title: Path(a.path).stem for a in report.actions if a.kind == "create"}
    slug = created["British watchdog urges caution over police facial recognition plans"]
    assert slug == "british-watchdog-urges-caution-over-police-facial"  # cut at a word
    watchdog = site.build(drafts=True).site.article(slug)
    assert watchdog.provider.name == "Reuters Tech"
    assert [t.name for t in watchdog.topics] == ["Privacy"]
    assert watchdog.images[0].url == "https://s4.reutersmedia.net/rcom-default.png"


def test_another_outlets_copy_is_folded_keeping_the_file_intact(site: MiniSite,
                                                                feeds: str) -> None:
    original = (site.root / "content/2020-01/facebook.md").read_text()
    report = run_import(site, feeds + "atom.xml")
    folds = [a for a in report.actions if a.kind == "fold"]
    assert len(folds) == 1
    assert folds[0].path == "content/2020-01/facebook.md"
    assert "like 'Facebook to Pay $550 Million to Settle Facial Recognition Suit'" in str(
        folds[0])
    edited = (site.root / "content/2020-01/facebook.md").read_text()
    original_lines = original.splitlines()
    edited_lines = edited.splitlines()
    added = [line for line in edited_lines if line not in original_lines]
    assert [line for line in edited_lines if line not in added] == original_lines
    assert added[0] == ('  - title: "Facebook To Pay $550 Million To Settle Facial Recognition '
                        'Lawsuit"')
    article = site.build(drafts=True).site.article("facebook")
    assert [r.url for r in article.related] == [
        "https://example.com/earlier", "https://www.forbes.com/sites/facebook-550-million/"]
    assert [a.kind for a in report.actions] == ["fold", "create"]


def test_duplicate_items_in_one_feed_become_one_story(site: MiniSite, feeds: str) -> None:
    report = run_import(site, feeds + "dupes.xml")
    assert [a.kind for a in report.actions] == ["create", "skip"]
    assert list(inbox(site)) == ["same-story-twice.md"]


def test_hostile_items_arrive_inert(site: MiniSite, feeds: str) -> None:
    report = run_import(site, feeds + "hostile.xml")
    assert [a.kind for a in report.actions] == ["create"]
    assert [w.split(": left out ")[1].split(":")[0] for w in report.warnings
            if "no http(s) link" in w] == ["A javascript link", "No link", "Empty link"]
    # a title that shows nothing is none: the story would not build
    assert any(w.endswith("https://evil.example.com/blank: no title") for w in report.warnings)
    text = next(iter(inbox(site).values()))
    assert "javascript" not in text and "<script" not in text and "onerror" not in text
    story = site.build(drafts=True).site.articles[0]
    assert story.title == "Hostile title"
    assert story.provider.name == "Outlet"  # the script element and its text are dropped
    assert "click" in story.excerpt and "alert(3)" not in story.excerpt


def test_failures_are_warnings_and_the_rest_still_import(site: MiniSite, feeds: str,
                                                         capsys) -> None:
    code = main(["import", "--site", str(site.root), feeds + "page.html", feeds + "slow.xml",
                 feeds + "missing.xml", str(site.root / "no-such-file.xml"), feeds + "rss.xml"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "page.html: not a feed" in err
    assert "slow.xml: timed out" in err
    assert "missing.xml: HTTP 404" in err
    assert "no-such-file.xml: " in err
    assert "3 created, 0 folded, 0 skipped, 4 failed" in out
    assert len(inbox(site)) == 3


def test_dry_run_writes_nothing(site: MiniSite, feeds: str, capsys) -> None:
    before = (site.root / "content/2020-01/facebook.md").read_text()
    code = main(["import", "--site", str(site.root), "--dry-run", feeds + "rss.xml",
                 feeds + "atom.xml"])
    out = capsys.readouterr().out
    assert code == 0
    assert "create  content/inbox/moscow-rolls-out-live-facial-recognition-system-with-an-app.md"\
        in out
    assert "fold    content/2020-01/facebook.md" in out
    assert inbox(site) == {}
    assert (site.root / "content/2020-01/facebook.md").read_text() == before
    assert not (site.root / ".cache").exists()


def test_files_are_never_overwritten(site: MiniSite, feeds: str) -> None:
    taken = site.root / "content/inbox/same-story-twice.md"
    taken.parent.mkdir(parents=True)
    taken.write_text("a file the curator made by hand\n")
    run_import(site, feeds + "dupes.xml")
    assert taken.read_text() == "a file the curator made by hand\n"
    assert (site.root / "content/inbox/same-story-twice-2.md").is_file()


def test_private_hosts_are_refused_unless_allowed(make_site, feeds: str) -> None:
    site = make_site(site_yaml=SITE_YAML.replace("allow_private_hosts: true",
                                                 "allow_private_hosts: false"))
    report = run_import(site, feeds + "rss.xml")
    assert report.actions == []
    assert "private" in report.failed[0] or "not public" in report.failed[0]


def test_files_made_by_import_build(site: MiniSite, feeds: str, tmp_path: Path) -> None:
    run_import(site, feeds + "list.opml", feeds + "hostile.xml", feeds + "dupes.xml")
    report = site.build(drafts=True)  # offline: their remote images are placeholders
    assert [str(w) for w in report.warnings] == [
        ".cache/images: warning: 3 remote images are placeholders: not downloaded yet, and "
        "fetching is off (--offline or images.fetch: false)"]
    assert len(report.site.articles) == 8


def json_feed(items: str) -> str:
    return '{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": ' + items + "}"


@pytest.mark.parametrize(("name", "document", "reason"), [
    ("items-int.json", json_feed("5"), "'items' is not a list"),
    ("tags-int.json", json_feed('[{"url": "https://j.example/1", "title": "T", "tags": 5}]'),
     "'tags' is not a list"),
    ("nesting.json", json_feed("[" * 100_000 + "]" * 100_000), "JSON nested too deeply"),
])
def test_malformed_json_feeds_fail_alone(site: MiniSite, feeds: str, capsys, name: str,
                                         document: str, reason: str) -> None:
    bad = site.write(name, document)
    code = main(["import", "--site", str(site.root), str(bad), feeds + "feed.json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"{name}: not a feed ({reason})" in err and "Traceback" not in err
    assert "1 created, 0 folded, 0 skipped, 1 failed" in out


ODD = f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>{"Outlet " * 60}</title>
<link>https://*.example.com/</link><lastBuildDate>Thu, 30 Jan 2020 18:00:00 GMT</lastBuildDate>
<item><title>{"x" * 700}</title><link>https://&amp;a.example.com/long</link>
<pubDate>Fri, 31 Jan 2020 10:00:00 GMT</pubDate></item>
<item><title>Year 2500</title><link>https://!x.example.com/y</link>
<pubDate>Sat, 01 Jan 2500 00:00:00 +0000</pubDate></item>
<item><title>Year 1</title><link>https://bücher.example/y1</link>
<pubDate>0001-01-01T00:00:00Z</pubDate></item>
<item><title>Facebook To Pay $550 Million To Settle Facial Recognition Lawsuit</title>
<link>http://[::1]/fb</link><pubDate>Wed, 01 Jan 1800 00:00:00 +0000</pubDate></item>
</channel></rss>
"""


def test_odd_hosts_titles_names_and_dates_still_build(site: MiniSite) -> None:
    report = run_import(site, str(site.write("odd.xml", ODD)))
    assert [a.kind for a in report.actions] == ["create", "create", "create", "fold"]
    assert sum("has a date out of range (1900 to 2200)" in w for w in report.warnings) == 3
    stories = {a.slug: a for a in site.build(drafts=True).site.articles}  # no errors
    files = inbox(site)
    assert "domain:" not in files["x" * 60 + ".md"] and "domain:" not in files["year-2500.md"]
    assert '  domain: "xn--bcher-kva.example"' in files["year-1.md"]
    long = stories["x" * 60]
    assert len(long.title) == 500 and long.title.endswith("x…")
    assert long.provider.name == "Outlet " * 27 + "Outlet…"  # at a word, 196 < 200
    assert stories["year-1"].published.isoformat() == "2020-01-30T18:00:00+00:00"
    related = stories["facebook"].related[-1]
    assert related.url == "http://[::1]/fb" and related.published is not None
    assert "domain" not in (site.root / "content/2020-01/facebook.md").read_text().split(
        "[::1]")[1]


BEYOND = {"Far future": "9999-12-31T23:59:59-12:00",  # the year 10000 in UTC
          "Distant past": "0001-01-01T00:00:00+01:00"}  # the year 0 in UTC


def test_dates_that_python_cannot_hold_in_utc_are_no_date(site: MiniSite) -> None:
    rss = site.write("beyond.xml", (
        "<rss version='2.0'><channel><title>R</title><link>https://r.example/</link>"
        "<lastBuildDate>Thu, 30 Jan 2020 18:00:00 GMT</lastBuildDate>" + "".join(
            f"<item><title>{title}</title><link>https://r.example/{number}</link>"
            f"<pubDate>{when}</pubDate></item>"
            for number, (title, when) in enumerate(BEYOND.items())) + "</channel></rss>"))
    jsonfeed = site.write("beyond.json", json_feed("[" + ", ".join(
        f'{{"url": "https://j.example/{number}", "title": "{title}", '
        f'"date_published": "{when}"}}' for number, (title, when) in enumerate(BEYOND.items())
    ) + "]"))
    report = run_import(site, str(rss), str(jsonfeed))  # no OverflowError traceback
    assert report.failed == []
    assert [a.kind for a in report.actions] == ["create", "create", "skip", "skip"]
    assert {a.published.isoformat() for a in site.build(drafts=True).site.articles
            if a.title in BEYOND} == {"2020-01-30T18:00:00+00:00"}  # the feed's date


def test_json_items_without_a_link_are_left_out(site: MiniSite) -> None:
    feed = json_feed('[{"title": "No link", "date_published": "2020-01-28T17:25:00Z"}], '
                     '"home_page_url": "https://j.example/"')
    report = run_import(site, str(site.write("nolink.json", feed)))
    assert report.actions == [] and inbox(site) == {}
    assert report.warnings[0].endswith("left out No link: no http(s) link")


def serve_once(fifo: Path, text: str) -> None:
    """Write `text` into the FIFO once a reader opens it (the reader may leave at once)."""
    with contextlib.suppress(BrokenPipeError):
        fifo.write_text(text)


def test_local_feeds_that_are_not_regular_files_are_refused(site: MiniSite, feeds: str,
                                                            capsys) -> None:
    fifo = site.root / "fifo.xml"
    os.mkfifo(fifo)
    writer = threading.Thread(target=serve_once, args=(fifo, RSS), daemon=True)
    writer.start()  # a FIFO that serves a feed; /dev/zero would never end
    listing = site.write("local.opml", '<?xml version="1.0"?><opml version="2.0"><body>'
                         '<outline xmlUrl="/dev/null"/></body></opml>')
    try:
        code = main(["import", "--site", str(site.root), str(fifo), str(listing),
                     feeds + "feed.json"])
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # let the writer finish
        writer.join(5)
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert f"{fifo}: not a regular file" in err and "/dev/null: not a regular file" in err
    assert "1 created, 0 folded, 0 skipped, 2 failed" in out


def test_local_feeds_are_read_up_to_the_size_cap(make_site) -> None:
    site = make_site(site_yaml=SITE_YAML + "  max_bytes: 10000\n")
    report = run_import(site, str(site.write("big.xml", RSS + " " * 10_000)))
    assert report.failed == [f"{site.root / 'big.xml'}: too large (over the 10,000-byte limit)"]


@pytest.mark.parametrize("blocker", ["file", "dangling link"])
def test_story_files_that_cannot_be_written_are_errors(site: MiniSite, feeds: str, capsys,
                                                       blocker: str) -> None:
    site.write("site.yaml", SITE_YAML + "  inbox: drop/today\n")
    if blocker == "file":  # a file where the inbox's parent folder should be
        site.write("content/drop", "not a folder")
    else:
        (site.root / "content/drop").symlink_to(site.root / "nowhere")
    code = main(["import", "--site", str(site.root), feeds + "dupes.xml"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert "content/drop/today/same-story-twice.md: cannot be written (" in err
    assert "error   content/drop/today/same-story-twice.md  <- Same story twice" in out
    assert "0 created, 0 folded, 0 skipped, 2 failed" in out  # both copies tried


def whole_text(body: str) -> str:
    """What plain_text gave before it cleaned long markup in prefixes."""
    return clean_text(html.unescape(nh3.clean(body, tags=set(),
                                              clean_content_tags={"script", "style"})))


def test_long_markup_gives_the_same_excerpt_and_title(site: MiniSite) -> None:
    paragraph = ("<p>Facial <b>recognition</b> &amp; cameras, <a href='https://x.example/'>"
                 "here</a>; caf\u00e9 &eacute;t\u00e9 <script>alert(1)</script></p>\n")
    for count in (1, 40, 400, 4000):
        body = paragraph * count
        assert plain_text(body) == whole_text(body)[:feedreader.KEEP_TEXT]
        text = whole_text(body)
        assert excerpt(body) == (text if len(text) <= 300 else excerpt(text))
    script = "<script>" + "x" * 10_000 + "</script>" + paragraph * 20
    assert plain_text(script) == whole_text(script)


def test_deeply_nested_markup_reaches_nh3_only_in_bounded_prefixes(
        site: MiniSite, monkeypatch: pytest.MonkeyPatch) -> None:
    """nh3 is quadratic in nesting depth (9 s when it cleaned this whole): what it is given
    is bounded, not timed (timings are for bench/, never for tests)."""
    given: list[int] = []
    clean = nh3.clean

    def counted(html: str, **options: object) -> str:
        given.append(len(html))
        return clean(html, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(feedreader.nh3, "clean", counted)
    assert plain_text("<div>" * 50_000 + "text") == ""  # the text is past SCAN_LIMIT
    assert plain_text("<div>" * 5_000 + "some text" + "<div>" * 50_000) == "some text"
    assert given and max(given) <= feedreader.SCAN_LIMIT


def naive_similar(stories: list[tuple[str, str, datetime]], title: str, when: datetime,
                  threshold: int, window: timedelta) -> tuple[str, str, float] | None:
    """How similar_story chose before the time index: every story, the first best one."""
    best = None
    for path, other, published in stories:
        if abs(published - when) > window:
            continue
        score = fuzz.token_sort_ratio(title.casefold(), other.casefold())
        if score >= threshold and (best is None or score > best[2]):
            best = (path, other, score)
    return best


def test_the_time_index_folds_as_comparing_every_story_did() -> None:
    chance = random.Random(5)
    words = ["Apple", "apple", "buys", "chip", "maker", "for", "$1bn", "Intel", "sells"]
    start = datetime(2020, 1, 1, tzinfo=UTC)
    window = timedelta(hours=72)
    catalogue = Catalogue(Path("."), window)
    for number in range(2000):
        title = " ".join(chance.choices(words, k=chance.randint(2, 5)))
        catalogue.add_story(f"s{number}.md", title, start + timedelta(
            minutes=chance.randint(0, 60 * 24 * 60)))
    for _ in range(300):
        title = " ".join(chance.choices(words, k=chance.randint(2, 5)))
        when = start + timedelta(minutes=chance.randint(-60 * 24 * 5, 60 * 24 * 65))
        item = FeedItem(title, "https://x.example/", when, "", (), ())
        assert catalogue.similar_story(item, when, 80) == naive_similar(
            catalogue.stories, title, when, 80, window)


def test_each_item_meets_only_the_stories_near_it(monkeypatch: pytest.MonkeyPatch) -> None:
    start, window = datetime(2000, 1, 1, tzinfo=UTC), timedelta(hours=72)
    catalogue = Catalogue(Path("."), window)
    compared: list[int] = []
    extract = importer.process.extractOne

    def counted(query: str, choices: list[str], **options: object) -> object:
        compared.append(len(choices))
        return extract(query, choices, **options)  # type: ignore[call-overload]

    monkeypatch.setattr(importer.process, "extractOne", counted)
    for number in range(20_000):  # a site with a story a day for 55 years, imported again
        when = start + timedelta(days=number)
        item = FeedItem(f"Story number {number} about chips", "https://x.example/", when, "",
                        (), ())
        match = catalogue.similar_story(item, when, 80)
        assert (match is None) == (number == 0)
        assert match is None or int(match[0].removesuffix(".md")) >= number - 3  # in window
        catalogue.add_story(f"{number}.md", item.title, when)
    # each item meets the stories of its window (three days each side), never all of them:
    # 200,000,000 comparisons without the index, counted rather than timed
    assert max(compared) <= 4


def copies(count: int, *, start: int = 0) -> str:
    """A feed of `count` outlets' copies of one story, an hour apart."""
    return ("<rss version='2.0'><channel><title>Wire</title><link>https://wire.example/</link>"
            + "".join(f"<item><title>Chip maker buys rival, report {number}</title>"
                      f"<link>https://wire.example/{number}</link><pubDate>Fri, 31 Jan 2020 "
                      f"{number % 24:02}:00:00 GMT</pubDate></item>"
                      for number in range(start, start + count)) + "</channel></rss>")


def test_copies_of_one_story_are_folded_with_one_parse_and_one_write(
        site: MiniSite, monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[str] = []
    parse = storyfile.parse_front_matter
    monkeypatch.setattr(storyfile, "parse_front_matter",
                        lambda text, what: parses.append(what) or parse(text, what))
    report = run_import(site, str(site.write("wire.xml", copies(300))))
    assert [a.kind for a in report.actions] == ["create"] + ["fold"] * 299
    assert len(parses) == 2  # checked at the first fold, folded at the end: not 299 times
    story = site.build(drafts=True).site.article("chip-maker-buys-rival-report-0")
    assert [r.url for r in story.related] == [f"https://wire.example/{n}" for n in range(1, 300)]


def test_a_dry_run_folds_into_the_stories_it_would_create(site: MiniSite) -> None:
    feed = str(site.write("wire.xml", copies(3)))
    planned = [(a.kind, a.path) for a in run_import(site, feed, dry_run=True).actions]
    assert inbox(site) == {}
    assert planned == [(a.kind, a.path) for a in run_import(site, feed).actions] == [
        ("create", "content/inbox/chip-maker-buys-rival-report-0.md"),
        ("fold", "content/inbox/chip-maker-buys-rival-report-0.md"),
        ("fold", "content/inbox/chip-maker-buys-rival-report-0.md")]


def test_folds_into_a_file_that_cannot_be_written_are_errors(
        site: MiniSite, feeds: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    write = importer.write_file
    monkeypatch.setattr(importer, "write_file", lambda path, text, mode: (
        "Read-only file system" if mode == "w" else write(path, text, mode)))
    code = main(["import", "--site", str(site.root), feeds + "atom.xml"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "content/2020-01/facebook.md: cannot be written (Read-only file system)" in err
    assert "error   content/2020-01/facebook.md  <- Facebook To Pay" in out
    assert "1 created, 0 folded, 0 skipped, 1 failed" in out


FOLD_CASES = {  # story files written in every way a fold must respect
    "mid": 'related:\n  - title: "R1"\n    webUrl: "https://r1.example/"\ntopics:\n  - AI\n',
    "zero indent": 'related:\n- title: "R1"\n  webUrl: "https://r1.example/"\n',
    "comment after": 'related:\n  - title: "R1"\n    webUrl: "https://r1.example/"\n# note\n',
    "blank after": 'related:\n  - title: "R1"\n    webUrl: "https://r1.example/"\n\n\n',
    "plain over lines": 'related:\n  - title: R1 over\n      lines\n    webUrl: "https://r/"\n',
    "document end": 'related:\n  - title: "R1"\n    webUrl: "https://r1.example/"\n...\n',
    "kept blanks": 'related:\n  - title: "R1"\n    excerpt: |+\n      line one\n\n\n',
    "none": "topics:\n  - AI\n",
    "empty": "related:\ntopics:\n  - AI\n",
    "empty flow": "related: []  # none yet\ntopics:\n  - AI\n",
    "null": "related: ~\n",
}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("case", FOLD_CASES)
def test_folding_items_at_once_gives_what_folding_them_one_by_one_gave(case: str,
                                                                       newline: str) -> None:
    text = ('---\ntitle: "Chips"\npublishedDateTime: 2020-01-24T12:00:00Z\n'
            f'webUrl: "https://c.example/"\n{FOLD_CASES[case]}---\nBody\n').replace(
                "\n", newline)
    folds = [Fold(FeedItem(f"Chips {n}", f"https://c{n}.example/", None, "An excerpt" * n,
                           (), (ItemImage("https://i.example/a.png", 10, 20),) * n),
                  datetime(2020, 1, 24, n, tzinfo=UTC) if n else None,
                  Outlet(f"Outlet {n}", "" if n == 1 else f"c{n}.example")) for n in range(3)]
    one_by_one = text
    for fold in folds:
        one_by_one = fold_into(one_by_one, [fold])
    assert fold_into(text, folds) == one_by_one


def test_warnings_about_items_shorten_what_the_feed_gave(site: MiniSite, capsys) -> None:
    """A feed's item with a 10,000-character link and no title, or a title that long and
    no link: each warning was one 10,000-character line."""
    long_link = "https://j.example/" + "a" * 10_000
    items = (f'[{{"url": "{long_link}", "date_published": "2020-01-31T10:00:00Z"}},'
             f'{{"title": "{"t" * 10_000}", "date_published": "2020-01-31T10:00:00Z"}}]')
    feed = site.write("long.json", json_feed(items))
    main(["import", "--site", str(site.root), str(feed)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "left out" in line]
    assert len(lines) == 2 and all(len(line) < 400 for line in lines), [len(x) for x in lines]


@pytest.mark.parametrize("empty", ["related:", "related: []  # none yet", "related: ~",
                                   "related: null"])
def test_items_fold_into_a_related_key_that_holds_none(make_site, empty: str) -> None:
    """A hand-written story with an empty `related:` could not be folded into: the import
    made a second story of the same event instead."""
    text = ('---\ntitle: "Chips"\npublishedDateTime: 2020-01-24T12:00:00Z\n'
            f'webUrl: "https://c.example/"\n{empty}\ntopics:\n  - AI\n---\nBody\n')
    fold = Fold(FeedItem("Chips again", "https://c2.example/", None, "An excerpt", (), ()),
                datetime(2020, 1, 24, 13, tzinfo=UTC), Outlet("Outlet", "c2.example"))
    folded = fold_into(text, [fold])
    assert ("# none yet" in folded) == ("#" in empty)  # the curator's comment is kept
    site = make_site({"content/chips.md": folded})
    story = site.build().site.articles[0]
    assert [r.url for r in story.related] == ["https://c2.example/"]
    assert [t.name for t in story.topics] == ["AI"]
