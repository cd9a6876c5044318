"""The build proper: load -> validate -> assemble -> plan -> render -> write, read top to
bottom, reusing the build cache: only changed stories are parsed, only units whose inputs
changed are rendered (see units.py), and the output folder is patched or swapped only once
everything rendered.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Protocol

from .assemble import LinkMemo, assemble_site
from .buildcache import (
    BuildCache,
    CacheState,
    Signature,
    UnitRecord,
    engine_key,
    share_facts,
)
from .config import Config
from .diagnostics import BuildFailed, Diagnostic, Diagnostics, Severity, Subject
from .feeds import OPML, Feed, plan_feeds, render_opml
from .images import PARTS_FILE, StageMemo, render_images, write_placeholder_files
from .model import Article, Site
from .output import Named, OutputError, OutputWriter, PatchWriter
from .packs import PackWriter
from .pictures import PictureBook
from .pipeline import BuildOptions, BuildReport, Counts, Progress, _output_id, with_image_cache
from .routes import Page, plan_pages
from .sitemap import render_robots, render_sitemap
from .stories import Loaded, load_stories
from .templates import StaticFiles, make_environment
from .tracking import FactChecker, Fingerprints
from .units import Decider, Unit, UnitPlanner, fact_specials, render_units, settled_stories
from .urls import ROBOTS, SITEMAP, UrlBuilder, static_route


class Sink(Protocol):
    def write(self, name: str, data: bytes) -> bool: ...

    def write_file(self, name: str, source: Path) -> None: ...

    def write_named(self, name: str, data: Named) -> None: ...

    def adopt(self, name: str, same: bool) -> None: ...

    def keep(self, name: str) -> None: ...


class DiscardingSink:
    """For `check`: render everything, keep nothing."""

    def __init__(self) -> None:
        self.written: set[str] = set()
        self.unchanged = 0

    def write(self, name: str, data: bytes) -> bool:
        self.written.add(name)
        return False

    def write_file(self, name: str, source: Path) -> None:
        self.written.add(name)

    def write_named(self, name: str, data: Named) -> None:
        self.written.add(name)

    def adopt(self, name: str, same: bool) -> None:
        self.written.add(name)

    def keep(self, name: str) -> None:
        self.written.add(name)


def run(
    config: Config,
    options: BuildOptions,
    cache: BuildCache,
    signature: Signature,
    started: float,
    progress: Progress | None,
    write: bool,
) -> BuildReport:
    """The build proper, once `pipeline.build` found that something changed: load ->
    validate -> assemble -> plan -> render -> write, reusing what the cache says is current.

    Stories parsed in worker processes keep their blobs in a new pack of the cache folder
    (`spill`), which the saved cache then refers to; a build that fails removes it. Not in
    the dev server, whose cache lives in memory: each rebuild that read many stories again
    (a config edit) would leave a pack on disk until the server stops."""
    spill = PackWriter(cache.folder) if write and cache.persist else None
    with spill or nullcontext():  # a failure discards the pack: nothing refers to it
        state = cache.load() if options.use_cache else CacheState(engine_key())
        notes = [cache.note] if cache.note else []
        model = read_site(config, options, state, progress, spill)
        output_dir = config.root / config.output_dir
        parts = cache.folder / PARTS_FILE if write and cache.persist else None
        job = RenderJob(model.site, model.pages, model.feeds, config, model.url_builder,
                        Fingerprints(model.loaded.parsed, model.loaded.entries), state,
                        _reusable_output(state, output_dir) if write else None,
                        options.workers, model.loaded.uses, spill, parts, options.use_cache)
        indexing = write and config.search and options.search_index
        outcome = _render(job, cache, output_dir, progress, write, indexing)
        if spill is not None:
            spill.flush()  # the save reads what rendering spilled
        warnings = model.warnings + outcome.pictures.warnings
        counts = Counts.of(model.site)
        if write:
            cache.save(_next_state(job, model, outcome, signature, warnings, counts))
            if cache.note and cache.note not in notes:
                notes.append(cache.note)
        return BuildReport(
            config,
            model.site,
            len(model.pages),
            len(outcome.files),
            outcome.unchanged,
            time.perf_counter() - started,
            warnings,
            outcome.pictures.stats,
            counts,
            outcome.rebuilt,
            outcome.removed,
            model.loaded.reparsed,
            notes=notes,
        )


@dataclass
class SiteModel:
    """The stories as read, the site assembled from them and what it will publish."""

    loaded: Loaded
    links: LinkMemo
    site: Site
    url_builder: UrlBuilder
    feeds: list[Feed]
    pages: list[Page]
    warnings: list[Diagnostic]  # the stories' (errors too, as warnings, with --keep-going)


def read_site(
    config: Config,
    options: BuildOptions,
    state: CacheState,
    progress: Progress | None,
    spill: PackWriter | None,
) -> SiteModel:
    """Load and validate the stories (reusing the cached ones), assemble and plan the site;
    BuildFailed with every story's problems, unless `keep_going`."""
    diagnostics = Diagnostics()
    diagnostics.extend(list(config.warnings))
    loaded = load_stories(config, diagnostics, state.stories, progress, options.workers, spill)
    warnings = diagnostics.warnings
    if diagnostics.errors:
        if not options.keep_going:
            raise BuildFailed(diagnostics.items)
        warnings = [d.as_warning() for d in diagnostics.items]
    links = LinkMemo(loaded.parsed, *state.links)
    site = assemble_site(loaded.articles, config, options.drafts, links)
    for source, article in links.relinked.items():  # cached as linked: not linked again
        loaded.entries[source] = loaded.entries[source].relinked(article)
    url_builder = UrlBuilder(config.base_url)
    feeds = plan_feeds(site, config)
    pages = plan_pages(site, config, url_builder, feeds)
    return SiteModel(loaded, links, site, url_builder, feeds, pages, warnings)


def _render(
    job: RenderJob, cache: BuildCache, output_dir: Path, progress: Progress | None, write: bool,
    indexing: bool,
) -> Outcome:
    try:
        if not write:
            return render_site(job, DiscardingSink(), progress)
        return _render_and_commit(job, cache, output_dir, progress, indexing)
    except OutputError as exc:
        raise BuildFailed(
            [Diagnostic(str(job.config.output_dir), 0, "output_dir", str(exc), Severity.ERROR,
                        Subject.FOLDER)],
            "the output folder could not be written",
        ) from None


def _next_state(
    job: RenderJob,
    model: SiteModel,
    outcome: Outcome,
    signature: Signature,
    warnings: list[Diagnostic],
    counts: Counts,
) -> CacheState:
    """What the next build reads back: this build's stories, units and output."""
    config = job.config
    entries = model.loaded.entries
    for source, fingerprint in job.fingerprints.found.items():
        if source in entries:
            entries[source] = entries[source].remembering(fingerprint)
    return CacheState(
        job.state.engine, entries, outcome.records, frozenset(outcome.files),
        _output_id(config.root / config.output_dir),
        "" if signature.racy else with_image_cache(signature, config).value,
        warnings,
        {"pages": len(model.pages), "files": len(outcome.files), **counts.__dict__},
        outcome.picture_digests,
        outcome.image_memo,
        (model.links.slug_by_url, model.links.found),
    )


def _render_and_commit(
    job: RenderJob, cache: BuildCache, output_dir: Path, progress: Progress | None,
    indexing: bool,
) -> Outcome:
    """Render into a pending folder and patch `output/`, or into a staging folder and swap
    it in; either way `output/` changes only once everything rendered. With `indexing`
    (search on), always the staging folder: the search index is made there, before the swap."""
    sink: OutputWriter | PatchWriter
    if job.previous is not None and not indexing:
        sink = PatchWriter(output_dir, job.state.manifest)
    else:
        sink = OutputWriter(output_dir)
    with sink:
        outcome = render_site(job, sink, progress)
        if indexing and isinstance(sink, OutputWriter):
            from .search import index_site  # runs Pagefind: subprocess, not needed else

            index_site(sink.staging)
        cache.forget()  # the output is about to change: an old cache must not describe it
    if isinstance(sink, PatchWriter):
        outcome.removed = sink.removed
    return outcome


def _reusable_output(state: CacheState, output_dir: Path) -> Path | None:
    """The previous output folder, when it is the one the cache describes."""
    if not state.manifest or state.output_id is None:
        return None
    return output_dir if _output_id(output_dir) == state.output_id else None


# -- load and validate --------------------------------------------------------------------


def load_articles(
    config: Config, diagnostics: Diagnostics, progress: Progress | None = None
) -> list[Article]:
    """Read and validate every story without the build cache (import, benchmarks)."""
    return load_stories(config, diagnostics, {}, progress).articles


# -- render and write ---------------------------------------------------------------------


@dataclass
class RenderJob:
    """Everything rendering needs: the model, the plan and the last build's records."""

    site: Site
    pages: list[Page]
    feeds: list[Feed]
    config: Config
    url_builder: UrlBuilder
    fingerprints: Fingerprints
    state: CacheState
    previous: Path | None  # the output folder whose files unchanged units keep
    workers: int | None = None
    story_uses: dict[str, str] | None = None  # each story's thumbnails.uses_digest
    spill: PackWriter | None = None  # where the rendered units' facts go (render_units)
    image_parts: Path | None = None  # where the image stage keeps its stories' parts
    reuse_parts: bool = False  # and whether it may read them (not with --no-cache)


@dataclass
class Outcome:
    pictures: PictureBook
    records: dict[str, UnitRecord]
    files: set[str]
    unchanged: int
    rebuilt: list[tuple[str, str]]
    picture_digests: dict[str, str] = field(default_factory=dict)  # images.story_digests
    image_memo: StageMemo | None = None
    removed: list[str] = field(default_factory=list)


def render_site(job: RenderJob, sink: Sink, progress: Progress | None = None) -> Outcome:
    """Render the thumbnails, every page, feed and email whose inputs changed, the sitemap,
    robots.txt and static files into `sink`."""
    config, site = job.config, job.site
    static = StaticFiles(config.static_dirs)
    pictures, memo = render_images(site, config, job.url_builder, sink, progress,
                                   job.state.images, job.story_uses, job.image_parts,
                                   job.reuse_parts)
    env = make_environment(config, job.url_builder, static, pictures)
    fp = job.fingerprints
    common = {"engine": engine_key(), "config": fp.of(config)}
    planner = UnitPlanner(env, site, config, job.url_builder, pictures, fp, common)
    units = [*planner.pages(job.pages), *planner.feeds(job.feeds), *planner.emails(site.issues)]
    check_unique_files(units, [*([OPML] if job.feeds else []), SITEMAP, ROBOTS,
                               *map(static_route, static.files)])
    picture_digests = pictures.digests
    checker = FactChecker(fp, fact_specials(env, static, pictures))
    settled = settled_stories(picture_digests, job.state.pictures)
    decider = Decider(job.state.units, checker, job.previous, settled, site)
    decisions = [decider.decide(unit) for unit in units]
    todo = [d.unit for d in decisions if d.reason is not None]
    records: dict[str, UnitRecord] = {}
    for decision in decisions:
        if decision.reason is None:
            records[decision.unit.id] = job.state.units[decision.unit.id]
            for name in decision.unit.files:
                sink.keep(name)

    def rendering(done: int) -> None:
        if progress:
            progress("Rendering pages", done, len(todo))

    rendered = render_units(todo, sink, fp, config, rendering, job.workers,
                            alongside=partial(write_placeholder_files, pictures, sink),
                            spill=job.spill)
    if rendered.problems:
        raise BuildFailed(summarise_template_errors(rendered.problems))
    records.update(rendered.records)
    share_facts(records)
    files = {name for unit in units for name in unit.files}
    for route, data in (
        (OPML, render_opml(job.feeds, config, job.url_builder) if job.feeds else None),
        (SITEMAP, render_sitemap(job.pages, job.url_builder)),
        (ROBOTS, render_robots(job.url_builder)),
        *((static_route(name), path.read_bytes()) for name, path in static.files.items()),
    ):
        if data is not None:
            sink.write(route, data)
            files.add(route)
    files.update(getattr(sink, "written", ()))
    unchanged = getattr(sink, "unchanged", 0)
    rebuilt = [(d.unit.id, d.reason) for d in decisions if d.reason is not None]
    return Outcome(pictures, records, files, unchanged, rebuilt, picture_digests, memo)


def check_unique_files(units: list[Unit], site_files: list[str]) -> None:
    """A last guard, before anything is written: config and content validation refuse
    every input known to make two units (or a unit and a site file: the sitemap, a static
    file) write one file, like feed file names and story slugs. Should one slip through,
    the error names both writers, so it says where to look and not only which file."""
    seen: dict[str, str] = {}
    named = [(unit.id, unit.files) for unit in units]
    for writer, files in [*named, *((f"file:{name}", (name,)) for name in site_files)]:
        for name in files:
            if name in seen:
                raise OutputError(f"two pages would be written to {name}: by {seen[name]} "
                                  f"and by {writer}")
            seen[name] = writer


def summarise_template_errors(problems: list[Diagnostic]) -> list[Diagnostic]:
    """One diagnostic per template bug, not one per page it broke."""

    def key(d: Diagnostic) -> tuple[str, int, str]:
        return (d.path, d.line, d.message.split(": ", 1)[-1])

    counts = Counter(key(d) for d in problems)
    first: dict[tuple[str, int, str], Diagnostic] = {}
    for d in problems:
        first.setdefault(key(d), d)
    return [
        replace(
            d, message=d.message + (f" (and {counts[k] - 1} more pages)" if counts[k] > 1 else "")
        )
        for k, d in first.items()
    ]
