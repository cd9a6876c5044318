"""The built sample site, read as a browser and a crawler would: links, metadata, dates."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from lxml import etree

from .conftest import MiniSite, parse_html, story

SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


def html_files(output: Path) -> list[Path]:
    """The site's pages (the email edition is not a page: it has no navigation or <main>)."""
    return sorted(p for p in output.rglob("*.html") if p.name != "email.html")


def page_url(output: Path, path: Path, base: str) -> str:
    relative = path.relative_to(output).as_posix()
    return base + relative.removesuffix("index.html")


def internal_targets(output: Path, base: str) -> dict[str, set[str]]:
    """Every link and asset URL of every page that points inside the site, by page."""
    base_parts = urlsplit(base)
    found: dict[str, set[str]] = {}
    for path in html_files(output):
        url = page_url(output, path, base)
        tree = parse_html(path.read_bytes())
        for element in tree.iter():
            for attribute in ("href", "src"):
                value = element.get(attribute) if isinstance(element.tag, str) else None
                if not value:
                    continue
                target = urlsplit(urljoin(url, value))
                if target.netloc == base_parts.netloc and target.scheme == base_parts.scheme:
                    found.setdefault(path.relative_to(output).as_posix(), set()).add(target.path)
    return found


def resolves(output: Path, url_path: str, base_path: str) -> bool:
    assert url_path.startswith(base_path), url_path
    relative = url_path[len(base_path) :]
    target = output / relative
    return (
        (target / "index.html").is_file()
        if relative == "" or relative.endswith("/")
        else target.is_file()
    )


def test_every_internal_link_and_asset_resolves(sample_site: MiniSite) -> None:
    targets = internal_targets(sample_site.output, "https://example.org/")
    assert len(targets) >= 50
    broken = sorted(
        (page, t)
        for page, urls in targets.items()
        for t in urls
        if not resolves(sample_site.output, t, "/")
    )
    assert broken == []


def test_a_site_under_a_subpath_links_only_inside_it(make_site) -> None:
    site = make_site(
        {
            "content/a.md": story(extra="topics: [AI]"),
            "content/b.md": story(title="B", url="https://x.example.com/b", extra="topics: [AI]"),
        },
        site_yaml="title: T\nbase_url: https://example.org/digest\nissues:\n  epoch: 2020-01-06\n",
    )
    site.build()
    for page, urls in internal_targets(site.output, "https://example.org/digest/").items():
        for url in urls:
            assert url.startswith("/digest/"), (page, url)
            assert resolves(site.output, url, "/digest/"), (page, url)
    home = site.page("")
    canonical = home.find(".//link[@rel='canonical']").get("href")
    assert canonical == "https://example.org/digest/"


def test_story_page_has_canonical_social_and_structured_data(sample_site: MiniSite) -> None:
    page = sample_site.page("stories/new-jersey-bars-clearview/")
    title = "New Jersey Bars Police From Using Clearview Facial Recognition App"
    assert "".join(page.find(".//h1").itertext()).strip() == title
    url = "https://example.org/stories/new-jersey-bars-clearview/"
    assert page.find(".//link[@rel='canonical']").get("href") == url
    meta = {m.get("property") or m.get("name"): m.get("content") for m in page.iter("meta")}
    assert meta["og:title"] == title
    assert meta["og:type"] == "article"
    assert meta["og:url"] == url
    assert meta["og:site_name"] == "The Recognition Brief"
    assert meta["twitter:card"]
    assert meta["description"].startswith("Reporting about the powerful tool")
    data = json.loads(
        next(s.text for s in page.iter("script") if s.get("type") == "application/ld+json")
    )
    assert data["@type"] == "NewsArticle"
    assert data["headline"] == title
    assert data["datePublished"] == "2020-01-25T01:47:00+00:00"
    assert (
        data["isBasedOn"]
        == "https://www.nytimes.com/2020/01/24/technology/clearview-ai-new-jersey.html"
    )
    original = [a for a in page.iter("a") if a.get("href") == data["isBasedOn"]]
    assert original and all("noopener" in (a.get("rel") or "") for a in original)


def test_story_page_shows_related_coverage_folded(sample_site: MiniSite) -> None:
    page = sample_site.page("stories/met-police-now-using-live-facial-recognition/")
    hrefs = [a.get("href") for a in page.iter("a")]
    reuters = [h for h in hrefs if h and "reuters.com" in h]
    assert len(reuters) == 2  # the kept copy and its "also at" link
    assert "/stories/uk-watchdog-urges-caution/" in hrefs  # coverage that is a story here


def test_every_date_shown_is_a_time_element_with_a_valid_datetime(sample_site: MiniSite) -> None:
    count = 0
    for path in html_files(sample_site.output):
        for time in parse_html(path.read_bytes()).iter("time"):
            value = time.get("datetime")
            assert value, path
            datetime.fromisoformat(value)
            count += 1
    assert count > 100


def test_every_page_has_one_h1_and_a_language(sample_site: MiniSite) -> None:
    for path in html_files(sample_site.output):
        tree = parse_html(path.read_bytes())
        assert tree.getroot().get("lang") == "en", path
        assert len(tree.findall(".//h1")) == 1, path
        assert tree.find(".//main") is not None, path


def test_issue_pages_link_to_their_neighbours(sample_site: MiniSite) -> None:
    middle = sample_site.page("issues/2/")
    hrefs = {a.get("href") for a in middle.iter("a")}
    assert {"/issues/1/", "/issues/3/"} <= hrefs
    assert "".join(middle.find(".//h1").itertext()).strip() == "Issue 2"


def test_topic_pages_are_paginated(sample_site: MiniSite) -> None:
    first = sample_site.page("topics/policing/")
    second = sample_site.page("topics/policing/page/2/")
    first_links = {a.get("href") for a in first.iter("a")}
    assert "/topics/policing/page/2/" in first_links
    assert "/topics/policing/" in {a.get("href") for a in second.iter("a")}

    def stories(tree: etree._Element) -> set[str]:
        main = tree.find(".//main")
        return {
            a.get("href") for a in main.iter("a") if (a.get("href") or "").startswith("/stories/")
        }

    policing = sum(
        1
        for path in (sample_site.root / "content").rglob("*.md")
        if "  - Policing" in path.read_text() and "published: false" not in path.read_text()
    )
    assert len(stories(first)) == 10  # topics.page_size in the sample's site.yaml
    assert len(stories(second)) == policing - 10
    assert stories(first).isdisjoint(stories(second))
    assert not (sample_site.output / "topics/policing/page/1").exists()


def test_sitemap_lists_every_page_with_content_dates(sample_site: MiniSite) -> None:
    tree = etree.parse(str(sample_site.output / "sitemap.xml"))
    entries = {
        u.find(f"{SITEMAP_NS}loc").text: u.find(f"{SITEMAP_NS}lastmod").text
        for u in tree.iter(f"{SITEMAP_NS}url")
    }
    pages = [p for p in html_files(sample_site.output) if p.name != "404.html"]
    assert len(entries) == len(pages)
    assert (
        entries["https://example.org/stories/new-jersey-bars-clearview/"]
        == "2020-01-25T01:47:00+00:00"
    )
    assert "https://example.org/stories/met-police-live-facial-recognition/" not in entries
    robots = (sample_site.output / "robots.txt").read_text()
    assert "Sitemap: https://example.org/sitemap.xml" in robots


def test_not_found_page_is_not_indexed(sample_site: MiniSite) -> None:
    page = parse_html((sample_site.output / "404.html").read_bytes())
    robots = [m.get("content") for m in page.iter("meta") if m.get("name") == "robots"]
    assert robots == ["noindex"]
    assert all((a.get("href") or "").startswith(("/", "http", "#")) for a in page.iter("a"))


@pytest.mark.parametrize("route", ["", "topics/", "issues/"])
def test_empty_site_builds_friendly_pages(make_site, route: str) -> None:
    site = make_site()
    site.build()
    assert site.page(route).find(".//h1") is not None


def test_draft_is_marked_when_drafts_are_built(make_site) -> None:
    site = make_site({"content/d.md": story(title="Draft one", extra="published: false")})
    site.build(drafts=True)
    text = " ".join(site.page("stories/d/").find(".//main").itertext())
    assert "Draft" in text.replace("Draft one", "")


@pytest.mark.parametrize("order", ["newest first", "shuffled"])
def test_issue_neighbours_are_the_sites_issue_before_and_after(order: str) -> None:
    """Planning finds each issue's neighbours in one pass; whatever the order of the
    issues, they are what Site.issue_before and issue_after (which themes may call) say."""
    from datetime import date

    from broadsheet.model import Issue, Site
    from broadsheet.routes import issue_neighbours

    numbers = [9, 7, 4, 3, 1] if order == "newest first" else [4, 9, 1, 7, 3]
    issues = tuple(Issue(n, date(2024, 1, n), date(2024, 1, n), "daily", (), ()) for n in numbers)
    site = Site((), (), issues)
    expected = [(site.issue_before(i), site.issue_after(i)) for i in issues]
    assert issue_neighbours(site) == expected
    if order == "newest first":
        assert expected[0] == (issues[1], None) and expected[-1] == (None, issues[-2])
