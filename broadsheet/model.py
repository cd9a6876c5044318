"""The content model: small frozen dataclasses that templates and feeds read.

Nothing here does IO or knows about Jinja, Pillow or URLs on disk; a model object is a fact
about the content, and every later stage (pages, feeds, thumbnails, caches) derives from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class Provider:
    """The outlet that published a story (`provider: {name, domain}`)."""

    name: str
    domain: str


@dataclass(frozen=True)
class Image:
    """Image metadata from the front matter; `url` is http(s) or a path inside the site."""

    url: str
    width: int | None
    height: int | None
    title: str
    source: str = ""  # the story file that gives it: local paths are relative to it
    field: str = ""  # where in that file, for diagnostics: "related[2].images[0]"
    line: int = 0

    @property
    def aspect_ratio(self) -> float | None:
        if self.width and self.height:
            return self.width / self.height
        return None


@dataclass(frozen=True)
class Coverage:
    """A duplicate copy of a related item folded into the kept one: one more place to read it."""

    outlet: str
    url: str


@dataclass(frozen=True)
class Related:
    """Another outlet's coverage of the same story."""

    title: str
    excerpt: str
    published: datetime | None
    url: str
    amp_url: str | None
    cdn_amp_url: str | None
    type: str
    provider: Provider
    quality: int
    images: tuple[Image, ...]
    also: tuple[Coverage, ...] = ()
    story_slug: str | None = None  # set when this coverage is also a story on this site


@dataclass(frozen=True)
class TopicRef:
    """A story's topic as the story names it, with the canonical name and slug of the site."""

    name: str
    slug: str


@dataclass(frozen=True)
class CoverageKeys:
    """Comparison keys (canonical URLs, outlet+title) of a story and of its related items."""

    own: str
    related: tuple[frozenset[str], ...]


@dataclass(frozen=True)
class Article:
    """One story: what the curator wrote in one content file, validated."""

    source: str  # path shown in diagnostics, relative to the site folder
    slug: str
    title: str
    excerpt: str
    published: datetime  # timezone-aware
    url: str  # the original story at the outlet (webUrl)
    category: str
    type: str
    quality: int
    heat: int
    is_draft: bool
    provider: Provider
    topics: tuple[TopicRef, ...]
    images: tuple[Image, ...]
    related: tuple[Related, ...]
    editor_pick: bool
    pinned_issue: int | None
    body_html: str
    issue: int | None = None  # the digest issue it belongs to, set by assembly
    # Prepared when the file is read (a function of the file alone, so cached with it):
    # the comparison keys of the story's URL and of each related item, once folded.
    coverage: CoverageKeys | None = field(default=None, repr=False, compare=False)

    @property
    def image(self) -> Image | None:
        return self.images[0] if self.images else None


@dataclass(frozen=True)
class Topic:
    """Every published story about one subject, newest first."""

    name: str
    slug: str
    articles: tuple[Article, ...]

    @property
    def updated(self) -> datetime:
        return self.articles[0].published


@dataclass(frozen=True)
class Section:
    """A part of an issue: its stories about one topic (topic None: stories with no topic)."""

    title: str
    topic: TopicRef | None
    articles: tuple[Article, ...]


@dataclass(frozen=True)
class Issue:
    """One numbered digest: the stories of one period, ranked, in sections by topic."""

    number: int
    start: date  # first day of the period, in the site's timezone
    end: date  # last day of the period (inclusive)
    period: str  # "daily" | "weekly" | "monthly"
    articles: tuple[Article, ...]  # ranked: editor's picks, quality, heat, time
    sections: tuple[Section, ...]

    @property
    def lead(self) -> Article:
        return self.articles[0]

    @property
    def updated(self) -> datetime:
        return max(a.published for a in self.articles)


@dataclass(frozen=True)
class Site:
    """Everything a build renders: the published stories and what is derived from them."""

    articles: tuple[Article, ...]  # newest first
    topics: tuple[Topic, ...]  # by name
    issues: tuple[Issue, ...]  # newest first
    include_drafts: bool = False

    @property
    def updated(self) -> datetime | None:
        return self.articles[0].published if self.articles else None

    def article(self, slug: str) -> Article | None:
        return next((a for a in self.articles if a.slug == slug), None)

    def issue_before(self, issue: Issue) -> Issue | None:
        older = [i for i in self.issues if i.number < issue.number]
        return older[0] if older else None

    def issue_after(self, issue: Issue) -> Issue | None:
        newer = [i for i in self.issues if i.number > issue.number]
        return newer[-1] if newer else None
