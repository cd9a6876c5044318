"""Render units: each page, feed and email edition, what it depends on, and whether to redo it.

A unit is one thing a template renders (one page; a feed in all its formats; an issue's two
email parts). Its *key* holds what is known before rendering (Broadsheet's version, the
config, the page's head, the feed's entries) and its *facts* what the rendering read (see
tracking.py). A unit whose key and facts match the last build, and whose files are still in
the output folder, is kept as it is; the reason for every other one is what `--explain`
prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import jinja2

from . import tracking
from .buildcache import SharedFacts, UnitRecord, share_facts
from .config import Config
from .diagnostics import Diagnostic
from .feeds import Feed, render_feeds
from .model import Article, Image, Issue, Site, forget
from .newsletter import email_routes, render_email_html, render_email_text
from .packs import PackWriter
from .pictures import ENCLOSURE, PLANNED, SOURCE_AT, UNPLANNED, PictureBook, picture_fact
from .routes import Page
from .templates import StaticFiles, template_diagnostic
from .tracking import FactChecker, Fingerprints, Recorder, Tracked
from .urls import UrlBuilder, output_file

if TYPE_CHECKING:
    from concurrent.futures import Future

RENDER_ERRORS = (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError)
FEED_ISSUE_TEMPLATE = "feed-issue.html"
PARALLEL_MIN = 300  # fewer units than this render faster in this process than in a pool

Renderer = Callable[[Recorder], list[tuple[str, bytes]]]


@dataclass
class Unit:
    id: str
    files: tuple[str, ...]
    key: dict[str, Any]
    roots: Mapping[str, Any]  # what fact paths start from
    render: Renderer
    error_route: str  # named in a template error


@dataclass
class Decision:
    unit: Unit
    reason: str | None  # None: keep the last build's files


class FileSink(Protocol):
    def write(self, name: str, data: bytes) -> bool: ...

    def keep(self, name: str) -> None: ...

    def adopt(self, name: str, same: bool) -> None: ...


@dataclass
class Rendered:
    """What rendering some units gave: new records, and template errors."""

    records: dict[str, UnitRecord] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)
    written: list[tuple[str, bool]] = field(default_factory=list)  # (file, same bytes as before)

    def add(self, other: Rendered) -> None:
        self.records.update(other.records)
        self.problems.extend(other.problems)
        self.written.extend(other.written)


# -- planning -----------------------------------------------------------------------------


class UnitPlanner:
    """Makes the units of one build; everything they share is computed once."""

    def __init__(
        self,
        env: jinja2.Environment,
        site: Site,
        config: Config,
        url_builder: UrlBuilder,
        pictures: PictureBook,
        fingerprints: Fingerprints,
        common: dict[str, Any],
    ) -> None:
        self.env, self.site, self.config = env, site, config
        self.urls, self.pictures, self.fp = url_builder, pictures, fingerprints
        self.common = common  # key parts of every unit: engine, config

    def pages(self, pages: list[Page]) -> Iterator[Unit]:
        for page in pages:
            yield Unit(
                f"page:{page.route}",
                (output_file(page.route),),
                {**self.common, "template": page.template, "page": self._page_key(page)},
                {"site": self.site, **page.context},
                self._page_renderer(page),
                page.route,
            )

    def _page_key(self, page: Page) -> Any:
        """A fingerprint of the page's head: of what it is made from when the page says so
        (a story's page: the story; the config is in every key anyway), else of itself."""
        if page.basis is None:
            return self.fp.of(page.info)
        basis = tuple(self.fp.of(part) for part in page.basis)  # no digest: a few parts
        return ("basis", basis, self.fp.of(page.info.feeds))

    def _page_renderer(self, page: Page) -> Renderer:
        def render(recorder: Recorder) -> list[tuple[str, bytes]]:
            context = {name: recorder.wrap(value, (name,)) for name, value in page.context.items()}
            template = self.env.get_template(page.template)
            html = template.render(site=Tracked(self.site, ("site",), recorder),
                                   config=self.config, page=page.info, **context)
            return [(output_file(page.route), html.encode("utf-8"))]

        return render

    def feeds(self, feeds: list[Feed]) -> Iterator[Unit]:
        names = self.config.feeds.formats
        for feed in feeds:
            yield Unit(
                f"feed:{feed.folder}",
                tuple(feed.folder + name for name in names.values()),
                {**self.common, "feed": self.fp.of(feed)},
                {"site": self.site},
                self._feed_renderer(feed),
                feed.page,
            )

    def _feed_renderer(self, feed: Feed) -> Renderer:
        def render(recorder: Recorder) -> list[tuple[str, bytes]]:
            template = self.env.get_template(FEED_ISSUE_TEMPLATE) if feed.issues else None

            def issue_html(issue: Issue) -> str:
                assert template is not None
                site = Tracked(self.site, ("site",), recorder)
                return template.render(site=site, config=self.config, issue=issue).strip()

            files = list(render_feeds([feed], self.config, self.urls, issue_html,
                                      self.pictures.enclosure_for))
            for article in feed.stories:  # their bodies, read once per feed
                let_go(article)
            return files

        return render

    def emails(self, issues: Iterable[Issue]) -> Iterator[Unit]:
        for position, issue in enumerate(issues):
            yield Unit(
                f"email:{issue.number}",
                email_routes(issue),
                {**self.common, "issue": issue.number},
                {"site": self.site, "issue": self.site.issues[position]},
                self._email_renderer(position),
                email_routes(issue)[0],
            )

    def _email_renderer(self, position: int) -> Renderer:
        def render(recorder: Recorder) -> list[tuple[str, bytes]]:
            # The proxy stands in for the Site, noting what the templates read of it.
            site = cast(Site, Tracked(self.site, ("site",), recorder))
            issue = recorder.wrap(self.site.issues[position], ("issue",))
            html_route, text_route = email_routes(self.site.issues[position])
            return [
                (html_route, render_email_html(self.env, site, self.config, issue)),
                (text_route, render_email_text(self.env, site, self.config, issue)),
            ]

        return render


def let_go(article: Article) -> None:
    """Let a story's tail (related items, body) go once the page or feed that shows it is
    rendered: kept, tails were most of a build's memory (model.forget)."""
    forget(article, "related")
    forget(article, "body_html")


# -- deciding -----------------------------------------------------------------------------


def fact_specials(
    env: jinja2.Environment, static: StaticFiles, pictures: PictureBook
) -> dict[str, tracking.Special]:
    """How to evaluate the facts that are not read from the model."""

    def template(path: tuple[Any, ...]) -> Any:
        digest = getattr(env, "template_digest", None)
        return digest(path[1]) if digest else None

    def asset(path: tuple[Any, ...]) -> Any:
        return static.version(path[1]) if path[1] in static.files else None

    def picture(path: tuple[Any, ...]) -> Any:
        image = Image(*path[4:]) if len(path) > 4 else None
        return picture_fact(pictures.make_picture(image, path[1], path[2], path[3]))

    def enclosure(path: tuple[Any, ...]) -> Any:
        return picture_fact(pictures.make_enclosure(Image(*path[1:]) if len(path) > 1 else None))

    return {
        "#template": template,
        "#asset": asset,
        PLANNED: picture,
        UNPLANNED: picture,
        ENCLOSURE: enclosure,
    }


SHARED_ROOTS = frozenset({"site", "#template", "#asset"})  # the same for every unit


def split_facts(
    facts: tracking.Facts,
) -> tuple[tracking.Facts, dict[str, tracking.Facts], tuple[tuple[Any, Any], ...]]:
    """A unit's facts in three parts, so that checking thousands of units repeats no work:

    - its own facts (its article, issue, pager...), checked one by one;
    - picture and enclosure facts grouped by the story file their image comes from: a
      group whose story's images are as the last build left them (images.
      story_digests) holds as a whole, without a look at any of its facts;
    - facts read from `site` and the theme's templates and assets, as one tuple: most
      units of one template read the same ones, and the Decider checks each distinct
      tuple once."""
    own: tracking.Facts = {}
    by_story: dict[str, tracking.Facts] = {}
    shared: list[tuple[Any, Any]] = []
    for path, value in facts.items():
        at = SOURCE_AT.get(path[0])
        if at is not None and len(path) > at:
            by_story.setdefault(path[at], {})[path] = value
        elif path[0] in SHARED_ROOTS:
            shared.append((path, value))
        else:
            own[path] = value
    return own, by_story, tuple(shared)


def settled_stories(digests: Mapping[str, str], previous: Mapping[str, str]) -> set[str]:
    """The story files whose images the image stage sees exactly as in the last build."""
    return {story for story, digest in digests.items() if previous.get(story) == digest}


class Decider:
    """Compares each unit with the last build's record of it."""

    def __init__(
        self,
        records: Mapping[str, UnitRecord],
        checker: FactChecker,
        output: Path | None,
        settled: set[str] | None = None,
        site: Site | None = None,
    ) -> None:
        self.records = records
        self.checker = checker
        self.output = output  # the previous output folder, None when it cannot be reused
        self._prefix = os.path.join(output, "") if output is not None else ""  # for isfile
        self.settled = settled or set()  # story files whose pictures cannot have changed
        self.site = site  # the `site` every unit's shared facts are read from
        self._shared: dict[Any, tuple[Any, ...] | None] = {}  # by UnitRecord.shared_key

    def decide(self, unit: Unit) -> Decision:
        return Decision(unit, self.reason(unit))

    def reason(self, unit: Unit) -> str | None:
        if self.output is None:
            return "no previous output to reuse"
        record = self.records.get(unit.id)
        if record is None or record.files != unit.files:
            return "new"
        if record.key != unit.key:
            changed = sorted(k for k in unit.key.keys() | record.key.keys()
                             if unit.key.get(k) != record.key.get(k))
            sources = [v.source for v in unit.roots.values() if isinstance(v, Article)]
            return _key_reason(changed) + (f" ({', '.join(sources)})" if sources else "")
        changed_fact = self._changed_shared(unit, record)
        if changed_fact is None:
            changed_fact = self.checker.changed(unit.roots, self._open_facts(unit, record))
        for story in record.stories:
            if changed_fact is not None:
                break
            if story not in self.settled:
                changed_fact = self.checker.changed(unit.roots, record.by_story[story])
        if changed_fact is not None:
            return self._fact_reason(unit, changed_fact)
        for name in unit.files:
            if not os.path.isfile(self._prefix + name):  # names are relative, made here
                return f"{name} is missing from the output folder"
        return None

    def _open_facts(self, unit: Unit, record: UnitRecord) -> tracking.Facts:
        """The unit's own facts that may have changed: none of those read from a root
        (the story, the topic, the pager...) whose fingerprint is what it was, since a
        fact is a function of its root. Cheaper than evaluating each: the fingerprints
        of shared roots (a topic, an issue) are computed once for all their pages."""
        if not record.roots:
            return record.facts
        fp = self.checker.fp
        stale = {name for name, seen in record.roots.items()
                 if name not in unit.roots or fp.of(unit.roots[name]) != seen}
        if not stale and not record.loose:
            return {}
        if len(stale) == len(record.roots):
            return record.facts
        return {path: value for path, value in record.facts.items()
                if path[0] in stale or path[0] not in record.roots}

    def _changed_shared(self, unit: Unit, record: UnitRecord) -> tuple[Any, ...] | None:
        """The first shared fact that changed, each distinct set evaluated once."""
        shared = record.shared
        if not shared:
            return None
        if (self.site is None or unit.roots.get("site") is not self.site
                or record.shared_key is None):
            return self.checker.changed(unit.roots, dict(shared))
        try:
            return self._shared[record.shared_key]
        except KeyError:
            found = self.checker.changed(unit.roots, dict(shared))
            self._shared[record.shared_key] = found
            return found

    def _fact_reason(self, unit: Unit, path: tuple[Any, ...]) -> str:
        head = path[0]
        if head == "#template":
            return f"template {path[1]} changed"
        if head == "#asset":
            return f"static file {path[1]} changed"
        if head in (PLANNED, UNPLANNED):
            return f"picture {path[4] if len(path) > 4 else '(none)'} changed"
        if head == ENCLOSURE:
            return f"feed enclosure {path[1] if len(path) > 1 else '(none)'} changed"
        shown = tracking.describe(path)
        value = _resolve(unit.roots, path)
        if isinstance(value, Article):
            return f"{shown} changed ({value.source})"
        return f"{shown} changed"


def _key_reason(changed: list[str]) -> str:
    words = {
        "engine": "Broadsheet or a library it uses changed",
        "config": "site.yaml changed",
        "template": "it uses another template",
        "page": "its title, description, date or feeds changed",
        "feed": "its entries changed",
    }
    return "; ".join(words.get(name, f"{name} changed") for name in changed)


def _resolve(roots: Mapping[str, Any], path: tuple[Any, ...]) -> Any:
    value: Any = roots.get(path[0])
    try:
        for step in path[1:]:
            if isinstance(step, str) and step.startswith("#"):
                return value
            if isinstance(step, tuple):
                value = value[slice(*step[1:])]
            else:
                value = value[step] if isinstance(step, int) else getattr(value, step)
    except (AttributeError, IndexError, TypeError):
        return None
    return value


# -- rendering ----------------------------------------------------------------------------


def render_units(
    units: list[Unit],
    sink: FileSink,
    fp: Fingerprints,
    config: Config,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    alongside: Callable[[], None] | None = None,
    spill: PackWriter | None = None,
) -> Rendered:
    """Render every unit into `sink`, in this process or spread over worker processes;
    `alongside` is other work of this process, done while the workers start rendering.
    With `spill`, the records' facts go to that pack as they come (UnitRecord.spill).

    Workers are forked, so they share the site model without copying it; each writes its
    files through its copy of the sink and sends back its records and the names of the
    files it wrote, which the parent's sink then adopts (so a writer that patches the
    previous output moves them into place, and deletes none of them as stale). The parent
    renders too, so one process fewer holds a copy of the model: the units are cut into
    small slices, which the workers claim from the front and the parent from the back, each
    slice only when it starts on it (a slice handed out in advance, as a pool queues its
    tasks, left the parent idle for a tenth of a large site's build while a worker finished
    two large slices). Output is the same as serial."""
    workers = workers or min(os.cpu_count() or 1, 4)
    if len(units) < PARALLEL_MIN or workers < 2:
        if alongside is not None:
            alongside()
        return _Collector(units, spill).take(_render_serial(units, sink, fp, config, progress))
    from concurrent.futures import ProcessPoolExecutor  # not imported by a small rebuild
    from multiprocessing import get_context

    global _shared
    context = get_context("fork")
    parts = max(workers * 8, len(units) // SLICE_UNITS)
    slices = [list(range(i, len(units), parts)) for i in range(parts)]
    bounds = context.Array("i", [0, parts])  # the next slice from the front; the end
    _shared = (units, slices, bounds, sink, fp, config)
    collector = _Collector(units, spill)
    try:
        result = Rendered()
        with ProcessPoolExecutor(workers - 1, mp_context=context) as pool:
            futures = [pool.submit(_render_claimed) for _ in range(parts)]
            if alongside is not None:
                alongside()
            pending = futures
            while (index := _claim(bounds, front=False)) is not None:
                result.add(collector.take(_render_serial([units[i] for i in slices[index]],
                                                         sink, fp, config, None)))
                pending = _take_done(pending, sink, collector, result)
                if progress:
                    progress(len(units) * (parts - _unclaimed(bounds)) // parts)
            for future in pending:
                future.cancel()  # all claimed: those not started have nothing left to do
            _take_done(pending, sink, collector, result, wait=True)
        return result
    finally:
        _shared = None


def _take_done(
    futures: list[Future[Rendered]], sink: FileSink, collector: _Collector, result: Rendered,
    wait: bool = False,
) -> list[Future[Rendered]]:
    """Take the workers' slices that are done (all of them, with `wait`) into `result`;
    return the others. Taken as they come, not at the end: the pool's thread unpickles each
    answer when it arrives, and the facts of half a large site's pages would wait in this
    process (~30 MB at 10,000 stories) until the collector sent them to the spill pack."""
    left = []
    for future in futures:
        if future.cancelled():
            continue
        if not (wait or future.done()):
            left.append(future)
            continue
        rendered = future.result()
        for name, same in rendered.written:
            sink.adopt(name, same)
        result.add(collector.take(rendered))
    return left


class _Collector:
    """Keeps the records of rendered units lean, as they come: a build holds them all until
    the save. A worker's record gets the planned unit's key and files instead of its own
    copies, records with equal shared facts hold one tuple of them (buildcache.share_facts),
    and with `spill` the pickled facts go to that pack."""

    def __init__(self, units: list[Unit], spill: PackWriter | None) -> None:
        self.units = {unit.id: unit for unit in units}
        self.spill = spill
        self.shared: SharedFacts = {}

    def take(self, rendered: Rendered) -> Rendered:
        share_facts(rendered.records, self.shared)
        for unit_id, record in rendered.records.items():
            unit = self.units[unit_id]
            record.key, record.files = unit.key, unit.files
            if self.spill is not None:
                record.spill(self.spill)
        return rendered


# Units per slice on a large site: small enough that the last slices even out the processes'
# shares, large enough that claiming one (a lock, a message back) costs nothing in comparison.
SLICE_UNITS = 32

_shared: tuple[list[Unit], list[list[int]], Any, FileSink, Fingerprints, Config] | None = None


def _claim(bounds: Any, front: bool) -> int | None:
    """The next unclaimed slice from the front (workers) or the back (the parent), if any."""
    with bounds.get_lock():
        first, end = bounds[0], bounds[1]
        if first >= end:
            return None
        if front:
            bounds[0] = first + 1
            return int(first)
        bounds[1] = end - 1
        return int(end - 1)


def _unclaimed(bounds: Any) -> int:
    with bounds.get_lock():
        return max(0, int(bounds[1] - bounds[0]))


def _render_claimed() -> Rendered:
    """In a worker: render the next unclaimed slice (nothing when all are claimed)."""
    assert _shared is not None
    units, slices, bounds, sink, fp, config = _shared
    index = _claim(bounds, front=True)
    if index is None:
        return Rendered()
    return _render_serial([units[i] for i in slices[index]], sink, fp, config, None)


def _render_serial(
    units: list[Unit],
    sink: FileSink,
    fp: Fingerprints,
    config: Config,
    progress: Callable[[int], None] | None,
) -> Rendered:
    result = Rendered()
    for done, unit in enumerate(units, start=1):
        if progress:
            progress(done)
        recorder = Recorder(fp)
        try:
            with tracking.recording(recorder):
                files = unit.render(recorder)
        except RENDER_ERRORS as exc:
            result.problems.append(template_diagnostic(exc, config, unit.error_route))
            continue
        for name, data in files:
            result.written.append((name, sink.write(name, data)))
        for value in unit.roots.values():
            if type(value) is Article:  # its page: the one that shows its tail
                let_go(value)
        roots = {name: fp.of(value) for name, value in unit.roots.items()
                 if name not in SHARED_ROOTS}
        result.records[unit.id] = UnitRecord(unit.files, unit.key, *split_facts(recorder.facts),
                                             roots).pickle_facts()
    return result
