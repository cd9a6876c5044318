"""Site -> [Page]: the site map, one line per page kind.

A Page is the route it is served at, the template that renders it and what that template
receives. Reading `plan_pages` tells you every page a build writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from itertools import pairwise
from typing import Any

from . import urls
from .config import Config
from .feeds import OPML, Feed, FeedLink, feed_links
from .model import Article, Issue, Site, Topic
from .urls import UrlBuilder


@dataclass(frozen=True)
class PageInfo:
    """What every template gets as `page`: the head of the document, mostly."""

    route: str
    kind: str  # home | story | topic | topics | issue | issues | not_found
    title: str  # for <title> and og:title, without the site name
    description: str = ""
    og_type: str = "website"
    in_sitemap: bool = True
    feeds: tuple[FeedLink, ...] = ()  # for <link rel="alternate"> autodiscovery
    updated: datetime | None = None  # newest content date shown, for sitemap <lastmod>
    json_ld: Mapping[str, Any] | None = None


class Deferred(Mapping[str, Any]):
    """A mapping worked out when first read: a story page's JSON-LD, which a rebuild plans
    for every story but renders for the few that changed. Equal to, and printed as, the
    dict it stands for."""

    __slots__ = ("_data", "_make")

    def __init__(self, make: Callable[[], dict[str, Any]]) -> None:
        self._make = make
        self._data: dict[str, Any] | None = None

    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._make()
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self.data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data())

    def __len__(self) -> int:
        return len(self.data())

    def __repr__(self) -> str:
        return repr(self.data())


@dataclass(frozen=True)
class Pager:
    """One page of a paginated list."""

    number: int
    items: tuple[Article, ...]
    routes: tuple[str, ...]  # the route of every page of the list, page 1 first

    @property
    def total(self) -> int:
        return len(self.routes)

    @property
    def previous(self) -> str | None:
        return self.routes[self.number - 2] if self.number > 1 else None

    @property
    def next(self) -> str | None:
        return self.routes[self.number] if self.number < self.total else None


@dataclass(frozen=True)
class Page:
    info: PageInfo
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    # What `info` is made from besides the config and its feed links, when that is cheaper
    # to fingerprint than `info` itself (the build cache's key of the page; see units.py).
    basis: tuple[Any, ...] | None = None

    @property
    def route(self) -> str:
        return self.info.route


def plan_pages(
    site: Site, config: Config, url_builder: UrlBuilder, feeds: list[Feed]
) -> list[Page]:
    """Every page of the site, in a stable order."""
    issues = {issue.number: issue for issue in site.issues}
    links = {feed.folder: tuple(feed_links(feed, config)) for feed in feeds}
    shared: dict[tuple[FeedLink, ...], tuple[FeedLink, ...]] = {}
    # Stories are most of the pages and all advertise the same feeds: given them at once
    # rather than copied with them afterwards (two dataclass copies per page add up).
    story_feeds = advertised_feeds("story", None, links, shared)
    stories = [
        story_page(article, issues.get(article.issue or 0), config, url_builder, story_feeds)
        for article in site.articles
    ]
    others = [
        topic_index_page(site),
        *(page for topic in site.topics for page in topic_pages(topic, config.topic_page_size)),
        *(issue_page(issue, config, *neighbours)
          for issue, neighbours in zip(site.issues, issue_neighbours(site), strict=True)),
        issue_archive_page(site),
        feeds_page(site, feeds, config),
        *([search_page(site, config)] if config.search else []),
        not_found_page(),
    ]
    return [
        with_feed_links(home_page(site, config), links, shared),
        *stories,
        *(with_feed_links(page, links, shared) for page in others),
    ]


def home_page(site: Site, config: Config) -> Page:
    latest = site.issues[0] if site.issues else None
    top = latest.articles[: config.home_stories] if latest else ()
    return Page(
        PageInfo(urls.HOME, "home", config.title, config.description, updated=site.updated),
        "home.html",
        {
            "issue": latest,
            "top_stories": top,
            "recent_issues": site.issues[1 : config.home_recent_issues + 1],
            "latest_stories": site.articles[: config.home_stories],
        },
    )


def story_page(
    article: Article,
    issue: Issue | None,
    config: Config,
    url_builder: UrlBuilder,
    feeds: tuple[FeedLink, ...] = (),
) -> Page:
    info = PageInfo(
        urls.story_route(article.slug),
        "story",
        article.title,
        article.excerpt,
        og_type="article",
        in_sitemap=not article.is_draft,
        feeds=feeds,
        updated=article.published,
        json_ld=Deferred(partial(news_article_json_ld, article, config, url_builder)),
    )
    # `info` is a function of the story, the config and the URL builder (made from the
    # config) alone: keep it so when changing this function, or drop the basis.
    return Page(info, "story.html", {"article": article, "issue": issue}, ("story", article))


def topic_index_page(site: Site) -> Page:
    return Page(
        PageInfo(
            urls.TOPIC_INDEX,
            "topics",
            "Topics",
            f"Every topic covered, {len(site.topics)} in all.",
            updated=site.updated,
        ),
        "topics.html",
        {"topics": site.topics},
    )


def topic_pages(topic: Topic, page_size: int) -> list[Page]:
    chunks = [topic.articles[i : i + page_size] for i in range(0, len(topic.articles), page_size)]
    routes = tuple(urls.topic_route(topic.slug, n) for n in range(1, len(chunks) + 1))
    pages = []
    for number, chunk in enumerate(chunks, start=1):
        title = topic.name if number == 1 else f"{topic.name} (page {number})"
        description = f"Stories about {topic.name}, newest first."
        pager = Pager(number, chunk, routes)
        info = PageInfo(routes[number - 1], "topic", title, description, updated=chunk[0].published)
        pages.append(Page(info, "topic.html", {"topic": topic, "pager": pager}))
    return pages


def issue_neighbours(site: Site) -> list[tuple[Issue | None, Issue | None]]:
    """Each issue's (previous, next) issue, as Site.issue_before and issue_after say, in
    one pass when the issues are newest first, as assembly orders them (those methods look
    through every issue: a site with hundreds of issues planned them in O(issues²))."""
    issues = site.issues
    numbers = [issue.number for issue in issues]
    if all(a > b for a, b in pairwise(numbers)):
        return [(issues[i + 1] if i + 1 < len(issues) else None, issues[i - 1] if i else None)
                for i in range(len(issues))]
    return [(site.issue_before(issue), site.issue_after(issue)) for issue in issues]


def issue_page(
    issue: Issue, config: Config, previous: Issue | None = None, following: Issue | None = None
) -> Page:
    title = f"{config.issues.title} {issue.number}"
    others = len(issue.articles) - 1
    description = issue.lead.title
    if others:
        description += f" and {others} more {'story' if others == 1 else 'stories'}."
    return Page(
        PageInfo(
            urls.issue_route(issue.number), "issue", title, description, updated=issue.updated
        ),
        "issue.html",
        {"issue": issue, "previous": previous, "next": following},
    )


def issue_archive_page(site: Site) -> Page:
    return Page(
        PageInfo(
            urls.ISSUE_ARCHIVE,
            "issues",
            "All issues",
            f"Every digest issue, {len(site.issues)} in all.",
            updated=site.updated,
        ),
        "issues.html",
        {"issues": site.issues},
    )


def feeds_page(site: Site, feeds: list[Feed], config: Config) -> Page:
    listing = [(feed, feed_links(feed, config)) for feed in feeds]
    return Page(
        PageInfo(
            urls.FEEDS,
            "feeds",
            "Feeds",
            f"Subscribe to {config.title} in your feed "
            "reader: the whole site, each digest issue or any topic.",
            updated=site.updated,
        ),
        "feeds.html",
        {"feeds": listing, "opml": OPML if feeds else None},
    )


def search_page(site: Site, config: Config) -> Page:
    return Page(
        PageInfo(urls.SEARCH, "search", "Search", f"Search every story, topic and issue of "
                 f"{config.title}.", updated=site.updated),
        "search.html",
        {"topics": site.topics},
    )


def with_feed_links(
    page: Page,
    by_folder: Mapping[str, tuple[FeedLink, ...]],
    shared: dict[tuple[FeedLink, ...], tuple[FeedLink, ...]] | None = None,
) -> Page:
    """The feeds a page advertises: its topic's or the digest's first, then the site's.
    Pages that advertise the same feeds share one tuple of them (`shared`), which the
    build cache then fingerprints once."""
    topic = page.context["topic"].slug if page.info.kind == "topic" else None
    links = advertised_feeds(page.info.kind, topic, by_folder, shared)
    return replace(page, info=replace(page.info, feeds=links))


def advertised_feeds(
    kind: str,
    topic: str | None,
    by_folder: Mapping[str, tuple[FeedLink, ...]],
    shared: dict[tuple[FeedLink, ...], tuple[FeedLink, ...]] | None = None,
) -> tuple[FeedLink, ...]:
    """The feeds a page of this kind advertises (`topic`: a topic page's slug)."""
    if topic is not None:
        folders = [urls.topic_route(topic), urls.HOME]
    elif kind in ("issue", "issues"):
        folders = [urls.ISSUE_ARCHIVE, urls.HOME]
    else:
        folders = [urls.HOME, urls.ISSUE_ARCHIVE]
    links = tuple(link for f in folders if f in by_folder for link in by_folder[f])
    return shared.setdefault(links, links) if shared is not None else links


def not_found_page() -> Page:
    return Page(
        PageInfo(urls.NOT_FOUND, "not_found", "Page not found", in_sitemap=False), "404.html"
    )


def news_article_json_ld(
    article: Article, config: Config, url_builder: UrlBuilder
) -> dict[str, Any]:
    """schema.org NewsArticle for a story page: our summary, based on the outlet's story."""
    page_url = url_builder.absolute(article)
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": shorten_words(article.title, 110),
        "url": page_url,
        "mainEntityOfPage": page_url,
        "datePublished": article.published.isoformat(timespec="seconds"),
        "dateModified": article.published.isoformat(timespec="seconds"),
        "isBasedOn": article.url,
        "publisher": {"@type": "Organization", "name": config.publisher, "url": config.base_url},
    }
    if article.excerpt:
        data["description"] = article.excerpt
    if article.provider.name:
        data["sourceOrganization"] = {"@type": "Organization", "name": article.provider.name}
    if article.topics:
        data["keywords"] = [t.name for t in article.topics]
    return data


def shorten_words(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…"
