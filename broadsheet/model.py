"""The content model: small frozen dataclasses that templates and feeds read.

Nothing here does IO or knows about Jinja, Pillow or URLs on disk; a model object is a fact
about the content, and every later stage (pages, feeds, thumbnails, caches) derives from it.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any


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


# -- stories kept in the build cache: their tail loaded when first read --------------------

TAIL = ("related", "body_html")  # most of a story's bytes; few pages read them


class _Tail:
    """Fields of Article that a story from the build cache loads on first read.

    A rebuild of a large site needs every story's head (dates, topics, slug: what orders and
    groups them) but the related coverage and the body only of the few stories it renders:
    unpickling every story whole was its largest cost. A story made by its constructor
    holds all its fields as usual; one made by `lazy_article` holds its tail (`related`,
    `body_html`) as one pickled blob and its coverage keys as another (linking reads those
    of every story, in a fifth of the time), plus what assembly and the image stage read
    without loading either (`related_slugs`, `own_key`, `related_key_hashes`,
    `related_first_images`). Everything else (equality, repr, dataclasses.replace) reads
    the fields, so loads them. The blob stays, so that a loaded field can be let go again
    (`forget`)."""

    def __init__(self, name: str, default: Any, blob: str,
                 load: Callable[[dict[str, Any], Any], None]) -> None:
        self.name, self.default, self.blob, self.load = name, default, blob, load

    def __get__(self, obj: Article | None, owner: type | None = None) -> Any:
        if obj is None:
            return self.default
        state = obj.__dict__
        blob = state.get(self.blob)
        if blob is None:
            raise AttributeError(self.name)
        self.load(state, _unpickle(blob))
        return state[self.name]


def _load_tail(state: dict[str, Any], tail: Any) -> None:
    related, body_html = tail
    # how assembly linked it since it was pickled (relinked, buildcache.StoryEntry.links)
    state.update(related=_with_slugs(related, state["_slugs"]), body_html=body_html)


def _with_slugs(related: tuple[Related, ...], slugs: tuple[str | None, ...]
                ) -> tuple[Related, ...]:
    if slugs == tuple(item.story_slug for item in related):
        return related
    return tuple(item if item.story_slug == slug else replace(item, story_slug=slug)
                 for slug, item in zip(slugs, related, strict=True))


def _load_coverage(state: dict[str, Any], coverage: Any) -> None:
    state["coverage"] = coverage


Article.related = _Tail("related", (), "_tail", _load_tail)  # type: ignore[assignment]
Article.body_html = _Tail("body_html", "", "_tail", _load_tail)  # type: ignore[assignment]
Article.coverage = _Tail("coverage", None, "_cov", _load_coverage)  # type: ignore[assignment]
_LAZY = ("_tail", "_cov", "_imgs")  # a lazy story's blobs (not fields)
_APART = (*TAIL, "coverage")  # the fields a lazy story loads from its blobs


def lazy_article(
    head: dict[str, Any], tail: bytes | Any, images: bytes | Any, coverage: bytes | Any
) -> Article:
    """A story from its `split_article` parts; its tail, its coverage keys and its related
    items' first images (bytes, or anything whose `read()` gives them: packs.BlobRef) are
    unpickled when first read."""
    article = object.__new__(Article)
    article.__dict__.update(head)
    article.__dict__["_tail"] = tail
    article.__dict__["_imgs"] = images
    article.__dict__["_cov"] = coverage
    return article


def split_article(article: Article) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """A story as its head fields with what assembly reads of its tail; the tail pickled;
    its related items' first images pickled (what the image stage plans: thumbnails.
    story_uses), so that planning every story's images loads no tail; its coverage keys
    pickled, so that linking every story loads no tail."""
    head = head_of(article)
    tail = pickle.dumps(tuple(getattr(article, name) for name in TAIL),
                        protocol=pickle.HIGHEST_PROTOCOL)
    images = pickle.dumps(related_first_images(article), protocol=pickle.HIGHEST_PROTOCOL)
    coverage = pickle.dumps(article.coverage, protocol=pickle.HIGHEST_PROTOCOL)
    return head, tail, images, coverage


def head_of(article: Article) -> dict[str, Any]:
    """A story's head (split_article): its fields but the tail, with what assembly reads of
    the tail. Of a lazy story, the head it was made from, as assembly left it linked."""
    head = {k: v for k, v in vars(article).items() if k not in _APART and k not in _LAZY}
    head["_slugs"] = related_slugs(article)
    head["_own"] = own_key(article)
    head["_keys"] = related_key_hashes(article)
    return head


def is_lazy(article: Article) -> bool:
    """Whether the story was made by lazy_article (its tail in a blob)."""
    return "_tail" in article.__dict__


def relink(article: Article, slugs: tuple[str | None, ...]) -> Article:
    """The story with its related items pointing at these story slugs. A lazy story stays
    lazy: its copy holds the same blobs and the new slugs, which loading the tail applies."""
    if "_tail" not in article.__dict__:
        return replace(article, related=_with_slugs(article.related, slugs))
    copy = _lazy_copy(article, {"_slugs": slugs})
    copy.__dict__.pop("related", None)  # loaded with the old links
    return copy


def forget(article: Article, name: str) -> None:
    """Let a lazy story's loaded `related` items or `body_html` (once its page is rendered:
    the one page that shows them, in the default theme; feeds show the latest stories'
    bodies) or `coverage` keys (once linked) go: read again, they are unpickled again.
    Kept, they were most of a story's memory, for every story until the build ended."""
    field = vars(Article)[name]
    assert isinstance(field, _Tail), name
    state = article.__dict__
    if field.blob in state:
        state.pop(name, None)


def with_head(article: Article, **changes: Any) -> Article:
    """dataclasses.replace for fields of a story's head (its topics, its issue), which
    leaves a lazy story's tail and coverage keys unloaded."""
    if any(name in _APART for name in changes) or not any(
            blob in article.__dict__ for blob in _LAZY):
        return replace(article, **changes)
    return _lazy_copy(article, changes)


def _lazy_copy(article: Article, state: dict[str, Any]) -> Article:
    copy = object.__new__(Article)
    copy.__dict__.update(article.__dict__)
    copy.__dict__.update(state)
    return copy


def related_first_images(article: Article) -> tuple[Image | None, ...]:
    """Each related item's first image (or None), without loading the story's tail."""
    state = article.__dict__
    blob = state.get("_imgs")
    if "related" in state or not blob:
        return tuple(item.images[0] if item.images else None for item in article.related)
    found: tuple[Image | None, ...] = _unpickle(blob)
    return found


def _unpickle(blob: bytes | Any) -> Any:
    """A lazy part: bytes, or a reference into the build cache's packs (packs.BlobRef)."""
    return pickle.loads(blob if isinstance(blob, bytes) else blob.read())


def related_slugs(article: Article) -> tuple[str | None, ...]:
    """The slug of each related item that is a story here (or None), tail not loaded.

    Kept in the story's state once worked out (its fields are frozen, so it stays true):
    every rebuild fingerprints every story with it (tracking.Fingerprints.article)."""
    state = article.__dict__
    found = state.get("_slugs")
    if found is None:  # made by the constructor: its related items are loaded
        found = state["_slugs"] = tuple(item.story_slug for item in state["related"])
    return found


def related_key_hashes(article: Article) -> bytes:
    """`key_hash` of every comparison key of its related items, end to end, tail not loaded:
    a key whose hash is not in it is surely not one of them (a hash found may be a false
    match, or found across two hashes: then the keys themselves decide)."""
    state = article.__dict__
    found = state.get("_keys")
    if found is None:  # kept once worked out: linking asks for it of every story, every build
        coverage = article.coverage
        found = state["_keys"] = b"" if coverage is None else b"".join(
            key_hash(key) for keys in coverage.related for key in sorted(keys))
    return found


def key_hash(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def own_key(article: Article) -> str | None:
    """The comparison key of the story's own URL (coverage.own), tail not loaded."""
    state = article.__dict__
    if "coverage" in state:
        return state["coverage"].own if state["coverage"] is not None else None
    return state.get("_own")


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
