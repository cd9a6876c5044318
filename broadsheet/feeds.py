"""Site -> RSS 2.0, Atom 1.0 and JSON Feed 1.1 bytes, for the site, each topic and the digest.

Feeds are what subscribers' apps read, so every date comes from the content (feedgen would
stamp the build time), entries are appended newest first (feedgen prepends by default), ids
are permalinks that never change when other stories are added, and every link is absolute.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from . import __version__, urls
from .config import Config
from .markdown import sanitise_html
from .model import Article, Issue, Site
from .urls import UrlBuilder
from .xmltext import escape, quoteattr

if TYPE_CHECKING:  # feedgen, lxml and dateutil are imported when a feed is first made:
    # a rebuild that writes no feed (most edits to older stories) starts 40 ms sooner.
    from feedgen.feed import FeedEntry, FeedGenerator

FORMATS = ("rss", "atom", "json")
MEDIA_TYPES = {
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "json": "application/feed+json",
}
FORMAT_NAMES = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
OPML = "feeds.opml"
ATOM = "{http://www.w3.org/2005/Atom}"


@dataclass(frozen=True)
class Enclosure:
    """A story's picture as a feed attachment: absolute URL, byte length, MIME type, size."""

    url: str
    length: int
    type: str
    width: int | None = None
    height: int | None = None


EnclosureFor = Callable[[Article], Enclosure | None]


@dataclass(frozen=True)
class Feed:
    """One feed (in every enabled format): the whole site, one topic or the digest issues."""

    kind: str  # "site" | "topic" | "digest"
    title: str
    description: str
    folder: str  # route of the folder its files live in: "", "topics/ai/", "issues/"
    page: str  # route of the HTML page it follows
    stories: tuple[Article, ...] = ()
    issues: tuple[Issue, ...] = ()

    def updated(self, fallback: datetime) -> datetime:
        """The newest entry's time; an empty feed uses a fixed date, never the build time."""
        if self.issues:
            return max(i.updated for i in self.issues)
        if self.stories:
            return max(a.published for a in self.stories)
        return fallback


@dataclass(frozen=True)
class FeedLink:
    """For `<link rel="alternate">` and the feeds page."""

    title: str
    type: str
    format: str
    route: str

    @property
    def label(self) -> str:
        return FORMAT_NAMES[self.format]


def plan_feeds(site: Site, config: Config) -> list[Feed]:
    """Every feed the site publishes, per its `feeds` settings."""
    settings = config.feeds
    if not settings.formats:
        return []
    limit = settings.entries
    feeds = []
    if settings.site:
        feeds.append(
            Feed(
                "site",
                config.title,
                config.description or f"Latest stories from {config.title}",
                urls.HOME,
                urls.HOME,
                stories=site.articles[:limit],
            )
        )
    if settings.digest:
        word = config.issues.title
        feeds.append(
            Feed(
                "digest",
                f"{config.title}: every {word.lower()}",
                f"Each {word.lower()} of {config.title} in full.",
                urls.ISSUE_ARCHIVE,
                urls.ISSUE_ARCHIVE,
                issues=site.issues[: settings.digest_entries],
            )
        )
    if settings.topics:
        feeds.extend(
            Feed(
                "topic",
                f"{config.title}: {topic.name}",
                f"Stories about {topic.name} from {config.title}.",
                urls.topic_route(topic.slug),
                urls.topic_route(topic.slug),
                stories=topic.articles[:limit],
            )
            for topic in site.topics
        )
    return feeds


def feed_links(feed: Feed, config: Config) -> list[FeedLink]:
    return [
        FeedLink(f"{feed.title} ({FORMAT_NAMES[fmt]})", MEDIA_TYPES[fmt], fmt, feed.folder + name)
        for fmt, name in config.feeds.formats.items()
    ]


def render_feeds(
    feeds: list[Feed],
    config: Config,
    url_builder: UrlBuilder,
    issue_html: Callable[[Issue], str],
    enclosure_for: EnclosureFor,
) -> Iterator[tuple[str, bytes]]:
    """(route, bytes) for every format of every feed."""
    renderers = {"rss": render_rss, "atom": render_atom, "json": render_json}
    context = FeedContext(config, url_builder, issue_html, enclosure_for)
    for feed in feeds:
        items = entries(feed, context)  # once for all formats: an issue's HTML is a render
        for fmt, name in config.feeds.formats.items():
            route = feed.folder + name
            yield route, renderers[fmt](feed, route, context, items)


@dataclass(frozen=True)
class FeedContext:
    config: Config
    urls: UrlBuilder
    issue_html: Callable[[Issue], str]
    enclosure_for: EnclosureFor

    @property
    def fallback_date(self) -> datetime:
        epoch = self.config.issues.epoch
        return datetime(epoch.year, epoch.month, epoch.day, tzinfo=UTC)


# -- entries, format-neutral --------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    id: str
    url: str
    title: str
    published: datetime
    updated: datetime
    summary: str
    content_html: str
    author: str = ""
    external_url: str = ""
    categories: tuple[tuple[str, str], ...] = ()  # (slug, name)
    enclosure: Enclosure | None = None


def entries(feed: Feed, context: FeedContext) -> list[Entry]:
    if feed.kind == "digest":
        return [issue_entry(issue, context) for issue in feed.issues]
    return [story_entry(article, context) for article in feed.stories]


@lru_cache(maxsize=4096)
def feed_body(body_html: str, url: str) -> str:
    """A story's body for feeds: links made absolute against its page. One story is in
    several feeds (the site's, each of its topics'), so this is done once per story."""
    return sanitise_html(body_html, base_url=url)


def story_entry(article: Article, context: FeedContext) -> Entry:
    url = context.urls.absolute(article)
    outlet = article.provider.name or article.provider.domain
    parts = []
    if article.excerpt:
        parts.append(f"<blockquote><p>{escape(article.excerpt)}</p></blockquote>")
    if article.body_html:
        parts.append(feed_body(article.body_html, url))
    parts.append(
        f"<p><a href={quoteattr(article.url)}>Read the full story at {escape(outlet)}</a></p>"
    )
    return Entry(
        id=url,
        url=url,
        title=article.title,
        published=article.published,
        updated=article.published,
        summary=article.excerpt,
        content_html="\n".join(parts),
        author=outlet,
        external_url=article.url,
        categories=tuple((t.slug, t.name) for t in article.topics),
        enclosure=context.enclosure_for(article),
    )


def issue_entry(issue: Issue, context: FeedContext) -> Entry:
    url = context.urls.absolute(issue)
    word = context.config.issues.title
    count = len(issue.articles)
    title = f"{word} {issue.number}: {issue.lead.title}"
    summary = (
        f"{issue.lead.title} and {count - 1} more {'story' if count == 2 else 'stories'}."
        if count > 1
        else issue.lead.title
    )
    return Entry(
        id=url,
        url=url,
        title=title,
        published=issue.updated,
        updated=issue.updated,
        summary=summary,
        content_html=context.issue_html(issue),
        author=context.config.publisher,
        enclosure=context.enclosure_for(issue.lead),
    )


# -- RSS 2.0 and Atom 1.0 through feedgen -------------------------------------------------


@lru_cache(maxsize=1)
def _extensions() -> tuple[tuple[str, type, type, bool], ...]:
    """feedgen's Media RSS and Dublin Core extensions, by class: `load_extension` first
    tries to import modules that do not exist (`feedgen.ext.media_entry`), a failed search
    of the import path for every feed. Imported after `feedgen.feed`, which imports the
    `lxml.etree` that `feedgen.util` uses without importing it."""
    import feedgen.feed  # noqa: F401
    from feedgen.ext.dc import DcEntryExtension, DcExtension
    from feedgen.ext.media import MediaEntryExtension, MediaExtension

    return (("media", MediaExtension, MediaEntryExtension, True),
            ("dc", DcExtension, DcEntryExtension, False))


def _generator(feed: Feed, route: str, context: FeedContext) -> FeedGenerator:
    config, url_builder = context.config, context.urls
    from feedgen.feed import FeedGenerator

    generator = FeedGenerator()
    for name, feed_extension, entry_extension, atom in _extensions():
        generator.register_extension(name, feed_extension, entry_extension, atom=atom)
    generator.id(url_builder.absolute(feed.page))
    generator.title(feed.title)
    generator.subtitle(feed.description)
    # feedgen takes the RSS <link> from the last link given: self first, then the page.
    generator.link(href=url_builder.absolute(route), rel="self")
    generator.link(href=url_builder.absolute(feed.page), rel="alternate")
    generator.language(config.language)
    generator.generator("Broadsheet", version=__version__)
    updated = feed.updated(context.fallback_date)
    generator.updated(updated)
    generator.lastBuildDate(updated)
    generator.icon(url_builder.absolute(urls.static_route("favicon.svg")))
    return generator


def _entry(generator: FeedGenerator, entry: Entry) -> FeedEntry:
    item = generator.add_entry(order="append")
    item.id(entry.id)
    item.guid(entry.id, permalink=True)
    item.title(entry.title)
    item.link(href=entry.url, rel="alternate")
    item.published(entry.published)
    item.updated(entry.updated)
    if entry.summary:
        item.summary(entry.summary)
    if entry.categories:  # in one call: feedgen redoes its RSS list on every call
        item.category([{"term": slug, "label": name} for slug, name in entry.categories])
    if entry.enclosure is not None:
        media = {"url": entry.enclosure.url}
        if entry.enclosure.width and entry.enclosure.height:
            media.update(width=str(entry.enclosure.width), height=str(entry.enclosure.height))
        # Not in a media:group (feedgen's default): a group holds alternatives of one thing.
        item.media.thumbnail(group=None, **media)
    return item


def render_rss(feed: Feed, route: str, context: FeedContext, items: list[Entry]) -> bytes:
    generator = _generator(feed, route, context)
    # RSS descriptions are HTML: plain text (a topic's name, an excerpt) is escaped once more.
    generator.description(escape(feed.description))
    for entry in items:
        item = _entry(generator, entry)
        item.description(escape(entry.summary or entry.title))
        item.content(entry.content_html, type="CDATA")
        if entry.author:
            item.dc.dc_creator(entry.author)
        if entry.enclosure is not None:
            item.enclosure(entry.enclosure.url, str(entry.enclosure.length), entry.enclosure.type)
    return bytes(generator.rss_str(pretty=True))


def render_atom(feed: Feed, route: str, context: FeedContext, items: list[Entry]) -> bytes:
    generator = _generator(feed, route, context)
    extra_links = []
    for entry in items:
        item = _entry(generator, entry)
        item.content(entry.content_html, type="html")
        if entry.author:
            item.author({"name": entry.author})
        links = []
        if entry.external_url:
            links.append({"rel": "related", "href": entry.external_url, "title": entry.author})
        if entry.enclosure is not None:
            links.append(
                {
                    "rel": "enclosure",
                    "href": entry.enclosure.url,
                    "type": entry.enclosure.type,
                    "length": str(entry.enclosure.length),
                }
            )
        extra_links.append(links)
    return add_entry_links(bytes(generator.atom_str(pretty=True)), extra_links)


def add_entry_links(atom: bytes, links: list[list[dict[str, str]]]) -> bytes:
    """feedgen 1.0 drops every attribute but href from entry links (so an enclosure would
    become a second alternate link); we add the related and enclosure links ourselves."""
    if not any(links):
        return atom
    from lxml import etree

    root = etree.fromstring(atom)
    for element, wanted in zip(root.iter(f"{ATOM}entry"), links, strict=True):
        for attributes in wanted:
            etree.SubElement(element, f"{ATOM}link", {k: v for k, v in attributes.items() if v})
    etree.indent(root, space="  ")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


# -- JSON Feed 1.1 with the standard library ----------------------------------------------


def render_json(feed: Feed, route: str, context: FeedContext, items: list[Entry]) -> bytes:
    url_builder = context.urls
    document: dict[str, object] = {
        "version": JSON_FEED_VERSION,
        "title": feed.title,
        "home_page_url": url_builder.absolute(feed.page),
        "feed_url": url_builder.absolute(route),
        "description": feed.description,
        "language": context.config.language,
        "icon": url_builder.absolute(urls.static_route("favicon.svg")),
        "favicon": url_builder.absolute(urls.static_route("favicon.svg")),
        "authors": [{"name": context.config.publisher, "url": context.config.base_url}],
        "items": [json_item(entry) for entry in items],
    }
    text = json.dumps(document, ensure_ascii=False, indent=2)
    return (text + "\n").encode("utf-8")


def json_item(entry: Entry) -> dict[str, object]:
    item: dict[str, object] = {
        "id": entry.id,
        "url": entry.url,
        "title": entry.title,
        "content_html": entry.content_html,
        "date_published": entry.published.isoformat(timespec="seconds"),
        "date_modified": entry.updated.isoformat(timespec="seconds"),
    }
    if entry.external_url:
        item["external_url"] = entry.external_url
    if entry.summary:
        item["summary"] = entry.summary
    if entry.author:
        item["authors"] = [{"name": entry.author}]
    if entry.categories:
        item["tags"] = [name for _, name in entry.categories]
    if entry.enclosure is not None:
        item["image"] = entry.enclosure.url
        item["attachments"] = [
            {
                "url": entry.enclosure.url,
                "mime_type": entry.enclosure.type,
                "size_in_bytes": entry.enclosure.length,
            }
        ]
    return item


# -- OPML: one import subscribes to every feed --------------------------------------------


def render_opml(feeds: list[Feed], config: Config, url_builder: UrlBuilder) -> bytes:
    """OPML 2.0 listing each feed once, in its preferred format (Atom, then RSS, then JSON)."""
    formats = config.feeds.formats
    preferred = next(f for f in ("atom", "rss", "json") if f in formats)
    outline_type = "rss"  # OPML's word for any subscribable feed
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "  <head>",
        f"    <title>{escape(config.title)}: all feeds</title>",
        f"    <ownerName>{escape(config.publisher)}</ownerName>",
        "  </head>",
        "  <body>",
    ]
    for feed in feeds:
        lines.append(
            f"    <outline type={quoteattr(outline_type)} text={quoteattr(feed.title)} "
            f"title={quoteattr(feed.title)} "
            f"xmlUrl={quoteattr(url_builder.absolute(feed.folder + formats[preferred]))} "
            f"htmlUrl={quoteattr(url_builder.absolute(feed.page))}/>"
        )
    lines += ["  </body>", "</opml>"]
    return ("\n".join(lines) + "\n").encode("utf-8")
