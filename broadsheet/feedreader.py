"""Outlets' feeds -> plain items: RSS and Atom through feedparser, JSON Feed and OPML ourselves.

Everything here is third-party text. Titles and excerpts come out as plain text (markup
stripped, entities decoded, control characters removed); only absolute http(s) links and
image URLs survive; OPML is parsed with defusedxml so an entity bomb is an error, not a hang.
"""

from __future__ import annotations

import calendar
import html
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import defusedxml.ElementTree as SafeXML
import feedparser
import nh3

from .coverage import clean_url
from .readers import (
    clean_text,
    is_visible,
    normalise_url,
    parse_datetime,
    shorten,
    url_problem,
)

EXCERPT_LENGTH = 300
# nh3 takes time quadratic in the markup's nesting depth (100,000 nested <div>s: 30 s), and
# only a few hundred characters of text are kept. Markup longer than SCAN_START is cleaned
# in growing prefixes until one gives KEEP_TEXT characters, and never beyond SCAN_LIMIT.
SCAN_START = 4_096
SCAN_LIMIT = 65_536
KEEP_TEXT = 2_000  # more than any field keeps (a title: 500); a prefix of the whole text
TAIL = 100  # the end of a prefix's text may differ (say, an accent in the next element)
MAX_IMAGE_SIDE = 20_000


class NotAFeed(Exception):
    """The document is neither RSS, Atom, JSON Feed nor OPML."""


@dataclass(frozen=True)
class ItemImage:
    url: str
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class FeedItem:
    """One story an outlet's feed offers, cleaned and ready to become a story file."""

    title: str
    url: str  # cleaned: no tracking parameters, no AMP
    published: datetime | None  # UTC
    excerpt: str
    categories: tuple[str, ...]
    images: tuple[ItemImage, ...]
    amp_url: str | None = None


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    link: str
    updated: datetime | None
    items: tuple[FeedItem, ...]
    skipped: tuple[str, ...] = field(default=())  # why items were left out


def parse_document(data: bytes, source: str) -> ParsedFeed | list[str]:
    """A feed, or the feed URLs an OPML file lists. Raises NotAFeed for anything else."""
    head = data.lstrip()[:200].lower()
    if head.startswith(b"{"):
        return parse_json_feed(data, source)
    if b"<opml" in head or (b"<?xml" in head and b"<opml" in data[:2000].lower()):
        return parse_opml(data, source)
    return parse_xml_feed(data, source)


# -- RSS and Atom -------------------------------------------------------------------------

def parse_xml_feed(data: bytes, source: str) -> ParsedFeed:
    try:
        parsed = feedparser.parse(_replace_bad_char_refs(data), sanitize_html=True,
                                  resolve_relative_uris=True)
    except Exception as exc:  # what the pass above missed, and whatever else feedparser's
        # lenient parser trips on in broken markup (a KeyError for
        # '<item<category</item>x</category>'): a broken feed, not a crash
        raise NotAFeed(f"not a feed ({type(exc).__name__}: {exc})") from None
    if not parsed.get("version") or (parsed.bozo and not parsed.entries):
        reason = parsed.get("bozo_exception") or "no RSS or Atom elements"
        raise NotAFeed(f"not a feed ({reason})")
    feed = parsed.feed
    link = _http_url(feed.get("link", "")) or source
    items, skipped = [], []
    for entry in parsed.entries:
        item = _feedparser_item(entry, link)
        if isinstance(item, str):
            skipped.append(item)
        else:
            items.append(item)
    return ParsedFeed(plain_text(feed.get("title", "")), link,
                      _struct_time(feed.get("updated_parsed") or feed.get("published_parsed")),
                      tuple(items), tuple(skipped))


# A numeric character reference to no character: a surrogate, or past U+10FFFF. Python
# cannot encode the one or make the other, and feedparser's lenient parser (taken for any
# feed that is not well-formed XML) crashed on both.
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));?")


def _replace_bad_char_refs(data: bytes) -> bytes:
    """`data` with every reference to no character made U+FFFD, as HTML parsers do."""
    if b"&#" not in data:
        return data

    def replace(match: re.Match[bytes]) -> bytes:
        digits, base = (match[1], 16) if match[1] is not None else (match[2], 10)
        digits = digits.lstrip(b"0")
        if len(digits) <= 8:  # else surely past U+10FFFF (and too long for int() maybe)
            code = int(digits or b"0", base)
            if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return match[0]
        return b"&#xFFFD;"

    return _CHAR_REF.sub(replace, data)


def _feedparser_item(entry: Any, base: str) -> FeedItem | str:
    title = plain_text(entry.get("title", ""))
    link = _item_link(str(entry.get("link") or ""), base)
    if not link:
        return (f"{shorten(title or 'an untitled item', 120)}: no http(s) link "
                f"({shorten(repr(entry.get('link', '')), 120)})")
    if not is_visible(title):  # also one of zero-width spaces: the build refuses it
        return f"{shorten(link, 120)}: no title"
    body = entry.get("summary") or ""
    if not body and entry.get("content"):
        body = entry.content[0].get("value", "")
    images = _media_images(entry) or _first_img(body, link)
    return FeedItem(
        title=title,
        url=clean_url(link),
        published=_struct_time(entry.get("published_parsed") or entry.get("updated_parsed")),
        excerpt=excerpt(body),
        categories=tuple(plain_text(t.get("term") or t.get("label") or "")
                         for t in entry.get("tags", []) if t.get("term") or t.get("label")),
        images=images,
    )


def _media_images(entry: Any) -> tuple[ItemImage, ...]:
    """media:content, then media:thumbnail, then image enclosures; each with its size."""
    candidates: list[dict[str, Any]] = []
    for media in entry.get("media_content", []):
        if media.get("medium", "image") == "image" and media.get("type", "image/").startswith(
                "image/"):
            candidates.append(media)
    candidates += list(entry.get("media_thumbnail", []))
    candidates += [{"url": e.get("href"), **e} for e in entry.get("enclosures", [])
                   if str(e.get("type", "")).startswith("image/")]
    images: list[ItemImage] = []
    for media in candidates:
        image = _image(media.get("url"), media.get("width"), media.get("height"))
        if image and image.url not in {i.url for i in images}:
            images.append(image)
    return tuple(images[:1])


class _FirstImage(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img" and self.found is None:
            self.found = dict(attrs)


def _first_img(body: str, base: str) -> tuple[ItemImage, ...]:
    finder = _FirstImage()
    finder.feed(body)
    if not finder.found or not finder.found.get("src"):
        return ()
    found = finder.found
    image = _image(_join(base, found.get("src") or ""), found.get("width"), found.get("height"))
    return (image,) if image else ()


# -- JSON Feed ----------------------------------------------------------------------------

def parse_json_feed(data: bytes, source: str) -> ParsedFeed:
    document = _json_document(data)
    link = _http_url(str(document.get("home_page_url") or "")) or source
    items, skipped = [], []
    for raw in _json_list(document, "items"):
        if not isinstance(raw, dict):
            skipped.append("an item that is not an object")
            continue
        item = _json_item(raw, link)
        if isinstance(item, str):
            skipped.append(item)
        else:
            items.append(item)
    return ParsedFeed(plain_text(str(document.get("title") or "")), link, None, tuple(items),
                      tuple(skipped))


def _json_document(data: bytes) -> dict[str, Any]:
    """The parsed JSON Feed object. A hostile feed can nest arrays 100,000 deep, which makes
    json.loads raise RecursionError: that is a broken feed, not a crash."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotAFeed(f"not a feed (invalid JSON: {exc})") from None
    except RecursionError:
        raise NotAFeed("not a feed (JSON nested too deeply)") from None
    if not isinstance(document, dict) or not str(document.get("version", "")).startswith(
            "https://jsonfeed.org/version/"):
        raise NotAFeed("not a feed (JSON without a JSON Feed version)")
    _replace_lone_surrogates(document)
    return document


# JSON may escape half a UTF-16 pair ("\ud800"), and json.loads lets the bytes of one
# through: either gives a string that holds a lone surrogate, which no encoder takes (nh3,
# quote() and the story file crashed on it).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_lone_surrogates(document: dict[str, Any]) -> None:
    """Every lone surrogate in the document's strings made U+FFFD, in place; without
    recursion, as the document may be nested as deeply as json.loads allows."""
    stack: list[dict[str, Any] | list[Any]] = [document]
    while stack:
        node = stack.pop()
        pairs = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, value in pairs:
            if isinstance(value, str):
                node[key] = _SURROGATE.sub("\ufffd", value)  # type: ignore[index]
            elif isinstance(value, (dict, list)):
                stack.append(value)


def _json_list(document: dict[str, Any], key: str) -> list[Any]:
    """`document[key]` when it is a list (or absent); iterating a number or a string that a
    broken feed put there would crash or give one item per character."""
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise NotAFeed(f"not a feed ('{key}' is not a list)")
    return value


def _json_item(raw: dict[str, Any], base: str) -> FeedItem | str:
    title = plain_text(str(raw.get("title") or ""))
    link = _item_link(str(raw.get("url") or raw.get("external_url") or ""), base)
    if not link:
        return f"{shorten(title or 'an untitled item', 120)}: no http(s) link"
    if not is_visible(title):  # also one of zero-width spaces: the build refuses it
        return f"{shorten(link, 120)}: no title"
    when = _utc(parse_datetime(str(raw.get("date_published") or raw.get("date_modified")
                                   or "")))
    body = str(raw.get("summary") or raw.get("content_html") or raw.get("content_text") or "")
    image = _image(raw.get("image") or raw.get("banner_image"), None, None)
    images = (image,) if image else _first_img(str(raw.get("content_html") or ""), link)
    return FeedItem(
        title=title,
        url=clean_url(link),
        published=when,
        excerpt=excerpt(body),
        categories=tuple(plain_text(str(t)) for t in _json_list(raw, "tags")
                         if str(t).strip()),
        images=images,
    )


# -- OPML ---------------------------------------------------------------------------------

def parse_opml(data: bytes, source: str) -> list[str]:
    """The xmlUrl of every outline, in document order, resolved against the OPML's location."""
    try:
        root = SafeXML.fromstring(data)
    except Exception as exc:  # defusedxml raises several types, all meaning "refused"
        raise NotAFeed(f"not a valid OPML file ({type(exc).__name__}: {exc})") from None
    if root.tag.lower() != "opml":
        raise NotAFeed("not a feed or OPML file")
    urls = []
    for outline in root.iter("outline"):
        url = outline.get("xmlUrl") or outline.get("xmlurl")
        if url:
            # one urljoin refuses is kept as written: reading it fails with the reason
            resolved = (_join(source, url.strip()) or url.strip()) if "://" in source \
                else url.strip()
            if resolved not in urls:
                urls.append(resolved)
    return urls


# -- text and values ----------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def plain_text(value: str) -> str:
    """Markup stripped, entities decoded, controls removed, whitespace folded. Long markup
    gives the start of its text (KEEP_TEXT characters), the same start as the whole would."""
    size = SCAN_START
    while len(value) > size:
        text = _strip_markup(_markup_prefix(value, size))
        if len(text) >= KEEP_TEXT + TAIL or size >= SCAN_LIMIT:
            return text[:KEEP_TEXT]
        size *= 4
    return _strip_markup(value)


def _markup_prefix(value: str, size: int) -> str:
    """`value[:size]` ending right after a tag, so no tag, entity or word is cut in two."""
    end = value.rfind(">", 0, size) + 1
    return value[:end or size]


def _strip_markup(value: str) -> str:
    stripped = nh3.clean(value, tags=set(), clean_content_tags={"script", "style"})
    return clean_text(html.unescape(stripped))


def excerpt(body: str, limit: int = EXCERPT_LENGTH) -> str:
    """The start of an item's text, cut at a word boundary."""
    text = plain_text(body)
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:-–—")
    return cut + " ..."


def _http_url(value: str) -> str | None:
    value = (value or "").strip()
    return value if value and not url_problem(value) else None


def _item_link(link: str, base: str) -> str | None:
    """The item's link made absolute, in the form the build reads it back in (an
    international host in ASCII, the path percent-encoded): compared with the stories'
    URLs, another form would not match, and importing again folded a story into itself.
    An empty one stays empty: urljoin would turn it into the feed's home page, and every
    link-less item would become a story pointing there."""
    link = link.strip()
    absolute = _http_url(_join(base, link)) if link else None
    return normalise_url(absolute) if absolute else None


def _join(base: str, link: str) -> str:
    """`link` made absolute against `base`; "" for one urljoin refuses ("http://[::1",
    whose bracket is not closed: a ValueError that crashed the import)."""
    try:
        return urljoin(base, link)
    except ValueError:
        return ""


def _image(url: Any, width: Any, height: Any) -> ItemImage | None:
    link = _http_url(str(url or ""))
    if not link:
        return None
    sizes = [_size(width), _size(height)]
    if None in sizes:
        return ItemImage(link)
    return ItemImage(link, sizes[0], sizes[1])


def _size(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if 1 <= number <= MAX_IMAGE_SIDE else None


def _struct_time(value: Any) -> datetime | None:
    """feedparser's UTC time tuple as a datetime; None when datetime cannot hold it
    (9999-12-31T23:59:59-12:00 is in the year 10000 in UTC)."""
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _utc(when: datetime | None) -> datetime | None:
    """`when` in UTC (a naive time taken as UTC); None when that falls outside what
    datetime can hold (0001-01-01T00:00:00+01:00 is in the year 0 in UTC)."""
    if when is None:
        return None
    try:
        return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    except OverflowError:
        return None


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower().removeprefix("www.")
