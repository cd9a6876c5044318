"""`broadsheet import`: outlets' feeds -> draft stories in the inbox, never a duplicate.

Each new feed item becomes one `published: false` story under the inbox folder. An item whose
URL is already a story or related item anywhere in content/ is skipped, so importing twice
changes nothing. An item about the same event as an existing story (same URL, or a similar
title published within a time window) is folded into that story's `related:` list instead.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from urllib.parse import urlsplit

from rapidfuzz import fuzz, process

from .config import Config, ImportSettings
from .coverage import canonical_url
from .diagnostics import Diagnostics
from .feedreader import FeedItem, NotAFeed, ParsedFeed, parse_document
from .fetch import FetchFailed, FetchRules, fetch_document
from .model import Article
from .readers import MAX_YEAR, MIN_YEAR, shorten
from .stages import load_articles
from .storyfile import Fold, FoldImpossible, Outlet, fold_into, new_story, outlet_for
from .urls import make_slug

FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/xml", "text/xml",
              "application/rdf+xml", "application/feed+json", "application/json",
              "text/x-opml", "application/x-opml", "text/plain", "text/html")
FEED_ACCEPT = ("application/rss+xml, application/atom+xml, application/feed+json, "
               "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1")
VALIDATORS_FILE = "import-feeds.json"
PER_HOST = 2
WORKERS = 8
MAX_NAME = 60

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Action:
    """What import did (or, with --dry-run, would do) with one item."""

    kind: str  # "create" | "fold" | "skip" | "fail" (the file could not be written)
    title: str
    outlet: str
    path: str = ""  # the file created or edited, or the one that already has the item
    reason: str = ""

    def __str__(self) -> str:
        who = f"{self.title} ({self.outlet})" if self.outlet else self.title
        if self.kind == "create":
            return f"create  {self.path}  <- {who}"
        if self.kind == "fold":
            return f"fold    {self.path}  <- {who}: {self.reason}"
        if self.kind == "fail":
            return f"error   {self.path}  <- {who}: {self.reason}"
        return f"skip    {who}: {self.reason}"


@dataclass
class ImportReport:
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # sources not read, files not written
    sources: int = 0

    def count(self, kind: str) -> int:
        return sum(1 for action in self.actions if action.kind == kind)


@dataclass
class Catalogue:
    """What content/ already holds: URLs (stories and related items), stories, slugs.

    Stories are indexed by time: bucket n holds those published in the n-th `window` since
    the epoch, so an item is compared only with the stories of its bucket and the two next to
    it, not with every story of the site and of the run (that was quadratic).
    """

    root: Path
    window: timedelta = timedelta(hours=72)  # import.fold_window_hours
    urls: dict[str, str] = field(default_factory=dict)  # canonical URL -> file
    stories: list[tuple[str, str, datetime]] = field(default_factory=list)  # file, title, time
    slugs: set[str] = field(default_factory=set)
    folded: list[str] = field(default_factory=list)  # each story's title, casefolded
    buckets: dict[int, list[int]] = field(default_factory=dict)  # bucket -> story numbers

    def add_story(self, path: str, title: str, published: datetime) -> None:
        self.buckets.setdefault(self.bucket(published), []).append(len(self.stories))
        self.stories.append((path, title, published))
        self.folded.append(title.casefold())

    def bucket(self, when: datetime) -> int:
        return int(when.timestamp() // self.window.total_seconds())

    def add_urls(self, path: str, urls: list[str | None]) -> None:
        for url in urls:
            if url:
                self.urls.setdefault(canonical_url(url), path)

    def find_url(self, item: FeedItem) -> str | None:
        for url in (item.url, item.amp_url):
            if url and canonical_url(url) in self.urls:
                return self.urls[canonical_url(url)]
        return None

    def similar_story(self, item: FeedItem, when: datetime, threshold: int
                      ) -> tuple[str, str, float] | None:
        """The existing story most like the item: (file, its title, similarity 0-100); of
        equals, the one catalogued first."""
        middle = self.bucket(when)
        near = sorted(number for key in (middle - 1, middle, middle + 1)
                      for number in self.buckets.get(key, ())
                      if abs(self.stories[number][2] - when) <= self.window)
        best = process.extractOne(item.title.casefold(), [self.folded[n] for n in near],
                                  scorer=fuzz.token_sort_ratio, processor=None,
                                  score_cutoff=threshold)
        if best is None:
            return None
        path, title, _ = self.stories[near[best[2]]]
        return path, title, best[1]


def catalogue_content(config: Config, diagnostics: Diagnostics) -> Catalogue:
    """Every story and related item under content/, drafts included."""
    catalogue = Catalogue(config.root, timedelta(hours=config.importing.fold_window_hours))
    for article in load_articles(config, diagnostics):
        add_article(catalogue, article)
    return catalogue


def add_article(catalogue: Catalogue, article: Article) -> None:
    catalogue.slugs.add(article.slug)
    catalogue.add_story(article.source, article.title, article.published)
    catalogue.add_urls(article.source, [article.url])
    for related in article.related:
        catalogue.add_urls(article.source, [related.url, related.amp_url, related.cdn_amp_url])


# -- reading sources ----------------------------------------------------------------------

@dataclass
class SourceResult:
    source: str
    feed: ParsedFeed | None = None
    not_modified: bool = False
    error: str = ""
    validators: dict[str, str] = field(default_factory=dict)


class SourceReader:
    """Reads feed files and URLs: several at once, at most PER_HOST per host, remembering
    ETag and Last-Modified so an unchanged feed costs one 304."""

    def __init__(self, rules: FetchRules, validators: dict[str, dict[str, str]]) -> None:
        self.rules = rules
        self.validators = validators
        self._lock = threading.Lock()
        self._hosts: dict[str, threading.Semaphore] = {}

    def read_all(self, sources: list[str], progress: Progress | None) -> list[SourceResult]:
        """Every source, expanding OPML files into the feeds they list (one level)."""
        results = self._read_many(sources, progress)
        expanded: list[SourceResult] = []
        for result, listed in results:
            if listed is not None:
                expanded += [r for r, _ in self._read_many(listed, progress, nested=True)]
            else:
                expanded.append(result)
        return expanded

    def _read_many(self, sources: list[str], progress: Progress | None, nested: bool = False
                   ) -> list[tuple[SourceResult, list[str] | None]]:
        done = 0
        results: list[tuple[SourceResult, list[str] | None]] = []
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for outcome in pool.map(lambda s: self.read(s, nested), sources):
                done += 1
                if progress:
                    progress("Reading feeds", done, len(sources))
                results.append(outcome)
        return results

    def read(self, source: str, nested: bool) -> tuple[SourceResult, list[str] | None]:
        result = SourceResult(source)
        try:
            data = self._load(source, result)
            if data is None:
                return result, None
            parsed = parse_document(data, source)
        except (FetchFailed, NotAFeed, OSError) as exc:
            result.error = str(exc) if not isinstance(exc, OSError) else (exc.strerror or
                                                                          str(exc))
            return result, None
        if isinstance(parsed, list):
            if nested:
                result.error = "an OPML file inside an OPML file is not followed"
                return result, None
            return result, parsed
        result.feed = parsed
        return result, None

    def _load(self, source: str, result: SourceResult) -> bytes | None:
        try:
            parts = urlsplit(source)
        except ValueError:  # "http://[::1/feed": an unclosed bracket
            raise FetchFailed("malformed URL") from None
        if parts.scheme.lower() not in ("http", "https"):
            return read_local(Path(source), self.rules.max_bytes)
        host = (parts.hostname or "").lower()
        with self._lock:
            gate = self._hosts.setdefault(host, threading.Semaphore(PER_HOST))
        with gate:
            fetched = fetch_document(source, self.rules, accept=FEED_ACCEPT,
                                     content_types=FEED_TYPES,
                                     validators=self.validators.get(source, {}))
        if fetched.not_modified:
            result.not_modified = True
            return None
        result.validators = fetched.validators
        return fetched.data


def read_local(path: Path, max_bytes: int) -> bytes:
    """A feed file's bytes, at most max_bytes. An OPML file from someone else can list
    /dev/zero or a FIFO: those are refused before reading (their size says 0), the open does
    not wait for a FIFO's writer, and the read stops one byte past the limit."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise FetchFailed("not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FetchFailed(f"too large (over the {max_bytes:,}-byte limit)")
    return data


# -- deciding and writing -----------------------------------------------------------------

@dataclass
class Edit:
    """A story file that items fold into: read and checked at its first fold, written once
    when every feed has been taken. Writing at each fold made 2,000 copies of one story cost
    2,000 parses and writes of an ever longer file (78 s)."""

    text: str
    folds: list[Fold] = field(default_factory=list)


@dataclass
class Importer:
    config: Config
    catalogue: Catalogue
    dry_run: bool
    report: ImportReport
    created: dict[str, str] = field(default_factory=dict)  # file -> text, made by this run
    edits: dict[str, Edit] = field(default_factory=dict)  # file -> the items folded into it

    @property
    def settings(self) -> ImportSettings:
        return self.config.importing

    def take(self, feed: ParsedFeed, source: str) -> None:
        for reason in feed.skipped:
            self.report.warnings.append(f"{source}: left out {reason}")
        for item in feed.items:
            outlet = outlet_for(feed.title, feed.link, item.url)
            self.report.actions.append(self.take_item(item, feed, source, outlet))

    def take_item(self, item: FeedItem, feed: ParsedFeed, source: str, outlet: Outlet
                  ) -> Action:
        known = self.catalogue.find_url(item)
        if known:
            return Action("skip", item.title, outlet.name, known, f"already in {known}")
        published = self.date_of(item, feed, source)
        if published is None:
            return Action("skip", item.title, outlet.name, reason="it has no date, and "
                          "neither has its feed")
        match = self.catalogue.similar_story(item, published, self.settings.fold_threshold)
        if match is not None:
            folded = self.fold(item, published, outlet, match)
            if folded is not None:
                return folded
        return self.create(item, published, outlet)

    def date_of(self, item: FeedItem, feed: ParsedFeed, source: str) -> datetime | None:
        """The item's date, else the feed's (with a warning). A date the validator would
        refuse (outside MIN_YEAR-MAX_YEAR, in UTC or the site's timezone) counts as none."""
        when, timezone = item.published, self.config.tz
        if when is not None and in_range(when, timezone):
            return when
        if when is not None:
            self.report.warnings.append(
                f"{source}: '{shorten(item.title, 120)}' has a date out of range "
                f"({MIN_YEAR} to {MAX_YEAR}), {when.isoformat()}; it is taken as having no date")
        if feed.updated is None or not in_range(feed.updated, timezone):
            return None
        self.report.warnings.append(f"{source}: '{shorten(item.title, 120)}' has no date; "
                                    f"using the feed's ({feed.updated.isoformat()})")
        return feed.updated

    def fold(self, item: FeedItem, published: datetime, outlet: Outlet,
             match: tuple[str, str, float]) -> Action | None:
        path, title, score = match
        fold = Fold(item, published, outlet)
        edit = self.edits.get(path) or self.edit(path, fold)
        if edit is None:
            return None
        edit.folds.append(fold)
        self.catalogue.add_urls(path, [item.url, item.amp_url])
        return Action("fold", item.title, outlet.name, path,
                      f"{score:.0f}% like '{title}'")

    def edit(self, path: str, fold: Fold) -> Edit | None:
        """The file's text, once we know the first item folds into it (None: it cannot).
        A story this run creates is folded into as the real run would, --dry-run too."""
        try:
            text = self.created.get(path)
            if text is None:
                text = (self.config.root / path).read_text(encoding="utf-8")
            fold_into(text, [fold])
        except (OSError, UnicodeDecodeError, FoldImpossible) as exc:
            self.report.warnings.append(
                f"{path}: could not fold '{shorten(fold.item.title, 120)}' into it ({exc}); "
                "creating a new story instead")
            return None
        self.edits[path] = Edit(text)
        return self.edits[path]

    def finish(self) -> None:
        """Write each folded file once; a file that cannot be written fails its folds."""
        for path, edit in self.edits.items():
            problem = "" if self.dry_run else write_file(
                self.config.root / path, fold_into(edit.text, edit.folds), "w")
            if problem:
                self.report.failed.append(f"{path}: cannot be written ({problem})")
                self.report.actions = [
                    replace(action, kind="fail", reason=problem)
                    if action.kind == "fold" and action.path == path else action
                    for action in self.report.actions]

    def create(self, item: FeedItem, published: datetime, outlet: Outlet) -> Action:
        topics = self.topics_for(item)
        text = new_story(item, published, outlet, topics)
        path = self.free_path(item.title)
        shown = path.relative_to(self.config.root).as_posix()
        problem = "" if self.dry_run else write_file(path, text, "x")  # "x": never overwrite
        if problem:
            return self.failure(item, outlet, shown, problem)
        self.catalogue.slugs.add(path.stem)
        self.created[shown] = text
        self.catalogue.add_story(shown, item.title, published)
        self.catalogue.add_urls(shown, [item.url, item.amp_url])
        return Action("create", item.title, outlet.name, shown)

    def failure(self, item: FeedItem, outlet: Outlet, path: str, problem: str) -> Action:
        """A file that could not be written is an error (exit 1), and the next items go on."""
        self.report.failed.append(f"{path}: cannot be written ({problem})")
        return Action("fail", item.title, outlet.name, path, problem)

    def topics_for(self, item: FeedItem) -> list[str]:
        """Categories mapped through `import.topics`; unknown categories are left out."""
        table = {key.casefold(): value for key, value in self.settings.topics.items()}
        topics: list[str] = []
        for category in item.categories:
            topic = table.get(category.casefold())
            if topic and topic not in topics:
                topics.append(topic)
        return topics

    def free_path(self, title: str) -> Path:
        """inbox/<slug>.md, with -2, -3 ... when the name or slug is taken."""
        slug = make_slug(title, "story")
        if len(slug) > MAX_NAME:
            slug = slug[:MAX_NAME].rsplit("-", 1)[0]
        inbox = self.config.root / self.config.content_dir / self.settings.inbox
        candidate, number = slug, 1
        while candidate in self.catalogue.slugs or (inbox / f"{candidate}.md").exists():
            number += 1
            candidate = f"{slug}-{number}"
        return inbox / f"{candidate}.md"


def in_range(when: datetime, timezone: tzinfo) -> bool:
    """Whether the story's validator takes `when`: its year in UTC and in the site's zone."""
    try:
        shown = when.astimezone(timezone).year
    except OverflowError:  # 0001-01-01 UTC is year 0 west of Greenwich
        return False
    return MIN_YEAR <= when.year <= MAX_YEAR and MIN_YEAR <= shown <= MAX_YEAR


def write_file(path: Path, text: str, mode: str) -> str:
    """Write `text`; why it could not be ('' when it was). The inbox may be a file or a
    read-only folder: that is one error message, not a traceback. A new file cut short (a
    full disk) is removed, so no half story is left for the build to refuse."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open(mode, encoding="utf-8")
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        with handle:
            handle.write(text)
    except OSError as exc:
        if mode == "x":
            path.unlink(missing_ok=True)
        return exc.strerror or str(exc)
    return ""


def import_sources(config: Config, sources: list[str], *, dry_run: bool = False,
                   progress: Progress | None = None) -> ImportReport:
    """Import every source; failures are reported, never raised (the rest still import)."""
    report = ImportReport()
    diagnostics = Diagnostics()
    catalogue = catalogue_content(config, diagnostics)
    if diagnostics.errors:
        report.warnings.append(f"{len(diagnostics.errors)} content problems: stories with errors "
                               "were not checked for duplicates (run 'broadsheet check')")
    cache_file = config.root / config.images.cache_dir / VALIDATORS_FILE
    validators = read_validators(cache_file)
    reader = SourceReader(config.importing.fetch_rules, validators)
    results = reader.read_all(sources, progress)
    report.sources = len(results)
    importer = Importer(config, catalogue, dry_run, report)
    for result in results:
        if result.error:
            report.failed.append(f"{result.source}: {result.error}")
        elif result.not_modified:
            report.warnings.append(f"{result.source}: not modified since the last import")
        elif result.feed is not None:
            importer.take(result.feed, result.source)
            if result.validators:
                validators[result.source] = result.validators
    importer.finish()
    if not dry_run:
        write_validators(cache_file, validators)
    return report


def read_validators(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_validators(path: Path, validators: dict[str, dict[str, str]]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(validators, indent=1, sort_keys=True), encoding="utf-8")
    except OSError:
        pass  # a missing cache only costs a full download next time
