"""Feeds as subscribers' apps and validators read them: RSS 2.0, Atom 1.0, JSON Feed 1.1."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import pytest
from lxml import etree

from .conftest import MiniSite, parse_html, story

ATOM = "{http://www.w3.org/2005/Atom}"
SAMPLE_FEEDS = [
    "feed.xml",
    "atom.xml",
    "feed.json",
    "issues/feed.xml",
    "issues/atom.xml",
    "issues/feed.json",
    "topics/policing/feed.xml",
    "topics/policing/atom.xml",
    "topics/policing/feed.json",
]


def read_feed(path: Path) -> feedparser.FeedParserDict:
    """Parse an RSS or Atom file as a subscriber's app would (feedparser)."""
    return feedparser.parse(path.read_bytes())


def read_json_feed(path: Path) -> dict:
    """Parse a JSON Feed and check the fields version 1.1 requires; feedparser 6 has no JSON
    Feed support, so this is the reader's-eye view of it."""
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(document["title"], str) and document["title"]
    assert isinstance(document["items"], list)
    for url_field in ("home_page_url", "feed_url"):
        assert urlsplit(document[url_field]).scheme == "https"
    for item in document["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert item.get("content_html") or item.get("content_text")
        for date_field in ("date_published", "date_modified"):
            assert datetime.fromisoformat(item[date_field]).tzinfo is not None
    return document


def all_feeds(output: Path) -> list[Path]:
    return sorted(p for p in output.rglob("*") if p.name in ("feed.xml", "atom.xml", "feed.json"))


def test_every_feed_reads_cleanly_in_a_feed_reader(sample_site: MiniSite) -> None:
    feeds = all_feeds(sample_site.output)
    assert len(feeds) == 3 * (2 + 9)  # site, digest and 9 topics, in three formats
    for path in feeds:
        if path.suffix == ".json":
            ids = [item["id"] for item in read_json_feed(path)["items"]]
            assert ids and len(ids) == len(set(ids)), path
            continue
        parsed = read_feed(path)
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        assert parsed.feed.title
        assert parsed.entries, path
        ids = [entry.id for entry in parsed.entries]
        assert len(ids) == len(set(ids)), path
        for entry in parsed.entries:
            assert entry.title and entry.link.startswith("https://example.org/")
            assert entry.id.startswith("https://example.org/")
            assert entry.published_parsed
            if path.name == "atom.xml":
                assert "updated_parsed" in entry


def test_site_feed_lists_stories_newest_first_without_drafts(sample_site: MiniSite) -> None:
    parsed = read_feed(sample_site.output / "atom.xml")
    times = [datetime(*e.published_parsed[:6]) for e in parsed.entries]
    assert times == sorted(times, reverse=True)
    assert len(parsed.entries) == 34
    assert all("met-police-live-facial-recognition/" not in e.link for e in parsed.entries)
    first = parsed.entries[0]
    assert first.title == "DHS to be grilled on facial recognition"
    assert first.author == "Politico"
    assert [t.term for t in first.tags] == ["regulation", "surveillance"]


def test_rss_follows_the_rss_2_rules(sample_site: MiniSite) -> None:
    tree = etree.parse(str(sample_site.output / "feed.xml"))
    channel = tree.find("channel")
    assert tree.getroot().get("version") == "2.0"
    for required in ("title", "link", "description"):
        assert channel.findtext(required), required
    assert channel.findtext("link") == "https://example.org/"
    self_link = channel.find(f"{ATOM}link[@rel='self']")
    assert self_link.get("href") == "https://example.org/feed.xml"
    items = channel.findall("item")
    dates = [parsedate_to_datetime(item.findtext("pubDate")) for item in items]
    assert all(d.tzinfo is not None for d in dates)
    assert parsedate_to_datetime(channel.findtext("lastBuildDate")) == max(dates)
    for item in items:
        guid = item.find("guid")
        assert guid.get("isPermaLink") == "true" and guid.text == item.findtext("link")
        assert item.findtext("description")


def test_atom_follows_the_atom_rules(sample_site: MiniSite) -> None:
    root = etree.parse(str(sample_site.output / "topics/policing/atom.xml")).getroot()
    assert urlsplit(root.findtext(f"{ATOM}id")).scheme == "https"
    assert (
        root.find(f"{ATOM}link[@rel='self']").get("href")
        == "https://example.org/topics/policing/atom.xml"
    )
    entries = root.findall(f"{ATOM}entry")
    updated = [datetime.fromisoformat(e.findtext(f"{ATOM}updated")) for e in entries]
    assert datetime.fromisoformat(root.findtext(f"{ATOM}updated")) == max(updated)
    for entry in entries:
        assert urlsplit(entry.findtext(f"{ATOM}id")).scheme == "https"
        assert entry.findtext(f"{ATOM}title")
        assert entry.find(f"{ATOM}author/{ATOM}name").text
        alternates = [
            link
            for link in entry.findall(f"{ATOM}link")
            if link.get("rel", "alternate") == "alternate"
        ]
        assert len(alternates) == 1
        assert entry.find(f"{ATOM}content").get("type") == "html"


def test_json_feed_has_every_required_field(sample_site: MiniSite) -> None:
    document = read_json_feed(sample_site.output / "feed.json")
    assert document["title"] == "The Recognition Brief"
    assert document["feed_url"] == "https://example.org/feed.json"
    assert document["home_page_url"] == "https://example.org/"
    for item in document["items"]:
        assert item["id"] and item["url"].startswith("https://example.org/stories/")
        assert item["content_html"]
        assert datetime.fromisoformat(item["date_published"]).tzinfo is not None
        assert item["external_url"].startswith("https://")


def test_digest_feed_holds_each_whole_issue(sample_site: MiniSite) -> None:
    parsed = read_feed(sample_site.output / "issues/atom.xml")
    assert [e.link for e in parsed.entries] == [
        f"https://example.org/issues/{n}/" for n in (3, 2, 1)
    ]
    newest = parsed.entries[0]
    assert newest.title == "Issue 3: EU Ponders Temporary Facial Recognition Ban"
    content = parse_html(newest.content[0].value.encode())
    story_links = {
        a.get("href")
        for a in content.iter("a")
        if (a.get("href") or "").startswith("https://example.org/stories/")
    }
    assert len(story_links) == 12  # every story of the issue
    assert all(urlsplit(a.get("href")).scheme == "https" for a in content.iter("a"))


def test_feed_ids_are_stable_when_stories_are_added(make_site) -> None:
    site = make_site({"content/a.md": story(when="2020-01-22T10:00:00Z", extra="topics: [AI]")})
    site.build()
    before = read_feed(site.output / "atom.xml")
    site.write(
        "content/new.md",
        story(
            title="New",
            when="2020-02-22T10:00:00Z",
            url="https://x.example.com/new",
            extra="topics: [AI]",
        ),
    )
    site.write(
        "content/old.md",
        story(
            title="Old",
            when="2020-01-10T10:00:00Z",
            url="https://x.example.com/old",
            extra="topics: [AI]",
        ),
    )
    site.build()
    after = read_feed(site.output / "atom.xml")
    old_ids = {e.id for e in before.entries}
    assert old_ids <= {e.id for e in after.entries}
    assert [e.title for e in after.entries] == ["New", "A story", "Old"]
    digest = read_json_feed(site.output / "issues/feed.json")
    assert [item["id"] for item in digest["items"]] == [
        f"https://example.org/issues/{n}/" for n in (7, 3, 1)
    ]


def test_entries_carry_their_topics_in_order(make_site) -> None:
    site = make_site({"content/a.md": story(extra="topics: [Computer Vision, AI, Privacy]")})
    site.build()
    names, slugs = ["Computer Vision", "AI", "Privacy"], ["computer-vision", "ai", "privacy"]
    rss = etree.parse(str(site.output / "feed.xml")).getroot()
    assert [c.text for c in rss.iter("category")] == names
    atom = etree.parse(str(site.output / "atom.xml")).getroot()
    found = [(c.get("term"), c.get("label")) for c in atom.iter(f"{ATOM}category")]
    assert found == list(zip(slugs, names, strict=True))
    assert read_json_feed(site.output / "feed.json")["items"][0]["tags"] == names


def test_relative_links_in_a_story_body_are_absolute_in_feeds(make_site) -> None:
    body = "See [the other story](../b/) and [home](/) and ![chart](chart.png).\n"
    site = make_site(
        {"content/a.md": story(body=body)},
        site_yaml="title: T\nbase_url: https://example.org/digest/\nissues:\n  epoch: 2020-01-06\n",
    )
    site.build()
    contents = [
        read_feed(site.output / name).entries[0].content[0].value
        for name in ("feed.xml", "atom.xml")
    ]
    contents.append(read_json_feed(site.output / "feed.json")["items"][0]["content_html"])
    for name, content in zip(("rss", "atom", "json"), contents, strict=True):
        html = parse_html(content.encode())
        hrefs = {a.get("href") for a in html.iter("a")}
        assert {"https://example.org/digest/stories/b/", "https://example.org/"} <= hrefs, name
        assert [i.get("src") for i in html.iter("img")] == [
            "https://example.org/digest/stories/a/chart.png"
        ]


HOSTILE = "<script>alert(1)</script> \"quoted\" & 'single' ]]> <![CDATA[x]]> \\u0007"


def test_hostile_text_is_escaped_in_every_feed(make_site) -> None:
    title = HOSTILE.replace("\\u0007", "\u0007")
    site = make_site(
        {
            "content/a.md": story(
                title="T",
                extra=f"excerpt: {json.dumps(HOSTILE)}\ntopics: [{json.dumps('<b>AI')}]\n"
                f"provider:\n  name: {json.dumps(HOSTILE)}",
                body="<script>alert(2)</script> [x](javascript:alert(3)) ]]> end",
            ).replace('title: "T"', f"title: {json.dumps(title)}")
        }
    )
    site.build()
    literal = " ".join(title.replace("\u0007", "").split())
    for path in all_feeds(site.output):
        assert b"\x07" not in path.read_bytes()
        if path.suffix == ".json":
            item = read_json_feed(path)["items"][0]
            title, html = item["title"], item["content_html"]
        else:
            parsed = read_feed(path)
            assert not parsed.bozo, path
            title, html = parsed.entries[0].title, parsed.entries[0].content[0].value
            channel = parsed.feed.subtitle_detail  # a topic feed's names the topic
            if channel.type == "text/html":  # RSS: escaped once more, as summaries are
                described = parse_html(channel.value.encode()).getroot()
                assert not list(described.iter("b")), path
                assert ("<b>AI" in "".join(described.itertext())) == ("topics" in path.parts)
            detail = parsed.entries[0].summary_detail
            if detail.type == "text/html":  # RSS: the reader renders it, so it must be escaped
                summary = parse_html(detail.value.encode()).getroot()
                assert not list(summary.iter("script")), path
                assert "<script>alert(1)</script>" in "".join(summary.itertext()), path
            else:
                assert detail.value.startswith("<script>alert(1)</script>"), path
        assert title.endswith(literal), path  # digest entries start "Issue N: "
        content = parse_html(html.encode())
        assert not list(content.iter("script")), path
        assert all(not (a.get("href") or "").startswith("javascript") for a in content.iter("a")), (
            path
        )
        if "issues" not in path.parts:  # story entries carry the body: shown as text
            assert "alert(2)" in " ".join(content.getroot().itertext()), path


def test_feeds_can_be_switched_off_and_renamed(make_site) -> None:
    site = make_site(
        {"content/a.md": story(extra="topics: [AI]")},
        site_yaml=(
            "title: T\nbase_url: https://example.org/\nissues:\n  epoch: 2020-01-06\n"
            "feeds:\n  topics: false\n  json: false\n  rss: rss.xml\n  entries: 1\n"
        ),
    )
    site.write("content/b.md", story(title="B", url="https://x.example.com/b"))
    site.build()
    names = sorted(
        p.relative_to(site.output).as_posix()
        for p in site.output.rglob("*")
        if p.suffix in (".xml", ".json") and p.name != "sitemap.xml"
    )
    assert names == ["atom.xml", "issues/atom.xml", "issues/rss.xml", "rss.xml"]
    assert len(read_feed(site.output / "rss.xml").entries) == 1
    home = site.page("")
    alternates = [link.get("href") for link in home.iter("link") if link.get("rel") == "alternate"]
    assert alternates == ["/rss.xml", "/atom.xml", "/issues/rss.xml", "/issues/atom.xml"]


def test_a_feed_may_take_the_name_of_a_format_switched_off(make_site) -> None:
    """Only a format that is published keeps its file name to itself."""
    site = make_site(
        {"content/a.md": story()},
        site_yaml="title: T\nbase_url: https://example.org/\nfeeds:\n  topics: false\n"
        "  digest: false\n  rss: atom.xml\n  atom: false\n  json: false\n",
    )
    site.build()
    assert sorted(p.name for p in site.output.glob("*.xml")) == ["atom.xml", "sitemap.xml"]
    assert "<rss" in (site.output / "atom.xml").read_text(encoding="utf-8")


def test_the_digest_feed_holds_the_latest_issues_its_setting_allows(make_site) -> None:
    """Each digest entry is a whole issue: 50 of them were a 1.5 MB file per format at 48
    stories a week. Ten by default, `feeds.digest_entries` to change; `feeds.entries` is
    the story feeds' count and does not cut the digest."""
    start = date(2020, 1, 6)
    files = {f"content/s{n}.md": story(title=f"S{n}", url=f"https://x.example.com/{n}",
                                       when=f"{start + timedelta(days=7 * n)}T12:00:00Z")
             for n in range(12)}
    head = "title: T\nbase_url: https://example.org/\nissues:\n  epoch: 2020-01-06\n"
    site = make_site(files, site_yaml=head + "feeds:\n  entries: 2\n")
    site.build()
    issues = [e.link for e in read_feed(site.output / "issues/atom.xml").entries]
    assert issues == [f"https://example.org/issues/{n}/" for n in range(12, 2, -1)]
    assert len(read_feed(site.output / "atom.xml").entries) == 2
    site.write("site.yaml", head + "feeds:\n  digest_entries: 3\n")
    site.build()
    assert len(read_json_feed(site.output / "issues/feed.json")["items"]) == 3
    site.write("site.yaml", head + "feeds:\n  digest_entries: 0\n")
    assert site.messages() == [
        "site.yaml:6: feeds.digest_entries: expected a number from 1 to 10000, got 0"]


def test_bad_feed_settings_are_diagnostics(make_site) -> None:
    site = make_site(
        site_yaml="title: T\nbase_url: https://example.org/\nfeeds:\n"
        "  rss: ../escape.xml\n  atom: feed.xml\n  entries: 0\n"
    )
    assert site.messages() == [
        "site.yaml:4: feeds.rss: expected false or a file name like 'feed.xml' (letters, "
        "digits, '.', '-', '_'), got '../escape.xml'",
        "site.yaml:6: feeds.entries: expected a number from 1 to 10000, got 0",
    ]


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            "",
            [
                "/feed.xml",
                "/atom.xml",
                "/feed.json",
                "/issues/feed.xml",
                "/issues/atom.xml",
                "/issues/feed.json",
            ],
        ),
        (
            "topics/ai/",
            [
                "/topics/ai/feed.xml",
                "/topics/ai/atom.xml",
                "/topics/ai/feed.json",
                "/feed.xml",
                "/atom.xml",
                "/feed.json",
            ],
        ),
        (
            "issues/1/",
            [
                "/issues/feed.xml",
                "/issues/atom.xml",
                "/issues/feed.json",
                "/feed.xml",
                "/atom.xml",
                "/feed.json",
            ],
        ),
    ],
)
def test_pages_advertise_their_feeds(
    sample_site: MiniSite, route: str, expected: list[str]
) -> None:
    page = sample_site.page(route)
    alternates = [
        (link.get("href"), link.get("type"))
        for link in page.iter("link")
        if link.get("rel") == "alternate"
    ]
    assert [href for href, _ in alternates] == expected
    assert {kind for _, kind in alternates} == {
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
    }


def test_feeds_page_and_opml_list_every_feed(sample_site: MiniSite) -> None:
    page = sample_site.page("feeds/")
    hrefs = {a.get("href") for a in page.iter("a")}
    for name in SAMPLE_FEEDS:
        assert f"/{name}" in hrefs
    assert "/feeds.opml" in hrefs
    opml = etree.parse(str(sample_site.output / "feeds.opml"))
    outlines = opml.findall(".//outline")
    assert len(outlines) == 11
    urls = [o.get("xmlUrl") for o in outlines]
    assert "https://example.org/topics/policing/atom.xml" in urls
    for url in urls:
        local = sample_site.output / urlsplit(url).path.lstrip("/")
        assert local.is_file(), url
