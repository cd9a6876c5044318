"""Slugs and the one table of page kind -> route -> output file.

A route is a path relative to the site's base URL (`stories/met-police/`); links in pages are
the base URL's path plus the route, so the same build works at a domain root and under a
subpath. Everything that names a page goes through here, so a URL is decided in one place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from slugify import slugify

from .model import Article, Issue, Topic, TopicRef

# Symbols that carry meaning in tech topic names: without these, C, C++ and C# share a slug.
_REPLACEMENTS = [
    ["++", " plus plus "],
    ["+", " plus "],
    ["#", " sharp "],
    ["&", " and "],
    ["@", " at "],
]
MAX_SLUG_LENGTH = 80
# Names Windows keeps for devices, alone or before any extension: a site with a folder
# stories/con/ or a file con.md cannot be checked out, copied or served there.
WINDOWS_RESERVED = frozenset({
    "con", "prn", "aux", "nul", *(f"com{n}" for n in range(10)), *(f"lpt{n}" for n in range(10)),
})


def make_slug(text: str, kind: str) -> str:
    """A lowercase ASCII slug for `text`; never empty (falls back to a short hash) and never
    a name Windows reserves: that gets an underscore (`con.md` is at stories/con_/), which
    no other text's slug has, so it is taken from no other story or topic."""
    slug = slugify(text, max_length=MAX_SLUG_LENGTH, word_boundary=True, replacements=_REPLACEMENTS)
    if slug in WINDOWS_RESERVED:
        return f"{slug}_"
    if slug:
        return slug
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{kind}-{digest}"


# -- routes: one function per page kind ---------------------------------------------------

HOME = ""
TOPIC_INDEX = "topics/"
ISSUE_ARCHIVE = "issues/"
FEEDS = "feeds/"
SEARCH = "search/"
NOT_FOUND = "404.html"
SITEMAP = "sitemap.xml"
ROBOTS = "robots.txt"
# The names the site's own files and folders take in the folders feeds are written to (the
# root, issues/, topics/<slug>/), lower case: a feed file may not take one (config.py).
# Keep in step with the routes here, feeds.OPML, thumbnails.THUMBS_FOLDER and search.
SITE_NAMES = frozenset({
    "index.html", NOT_FOUND, SITEMAP, ROBOTS, "feeds.opml", "stories", "topics", "issues",
    "feeds", "search", "static", "thumbs", "pagefind", "page",
})


def windows_reserved(name: str) -> bool:
    """Whether Windows keeps `name` for a device (`con`, `NUL.xml`: the extension does not
    help), so no file or folder may have it there."""
    return name.split(".", 1)[0].lower() in WINDOWS_RESERVED


def story_route(slug: str) -> str:
    return f"stories/{slug}/"


def topic_route(slug: str, page: int = 1) -> str:
    return f"topics/{slug}/" if page == 1 else f"topics/{slug}/page/{page}/"


def issue_route(number: int) -> str:
    return f"issues/{number}/"


def static_route(name: str) -> str:
    return f"static/{name}"


def route_of(target: object) -> str:
    """The route of a model object, or a route given as a string."""
    if isinstance(target, Article):
        return story_route(target.slug)
    if isinstance(target, Topic | TopicRef):
        return topic_route(target.slug)
    if isinstance(target, Issue):
        return issue_route(target.number)
    if isinstance(target, str):
        return target.lstrip("/")
    raise TypeError(f"no page for {type(target).__name__}")


def output_file(route: str) -> str:
    """The file under output/ that serves `route` (clean URLs are directories)."""
    return f"{route}index.html" if route == "" or route.endswith("/") else route


@dataclass(frozen=True)
class UrlBuilder:
    """Turns routes into links: site-relative for pages, absolute for canonical and feeds."""

    base_url: str  # absolute, ends with "/"

    @cached_property  # asked for every link on every page
    def base_path(self) -> str:
        return urlsplit(self.base_url).path or "/"

    def href(self, target: object) -> str:
        return self.base_path + route_of(target)

    def absolute(self, target: object) -> str:
        return self.base_url + route_of(target)
