"""build(): is anything new? then load -> validate -> assemble -> render -> write.

A build first compares a signature of every input (names, sizes and mtimes of the site's
files, the theme, the config, the options, Broadsheet itself) with the last build's: when
nothing changed it stops there, before even importing the rendering stages. Otherwise
`stages.run` does the work, reusing what the build cache says is still current. Every story
is read and checked before anything renders, and nothing in `output/` changes until every
page rendered, so any error leaves the previous site intact.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .buildcache import BuildCache, CacheState, Signature, with_file
from .buildcache import input_signature as _signature
from .config import IMAGE_CACHE_FOLDER, Config, load_config, output_problem, unreachable_path
from .diagnostics import BuildFailed, Diagnostic, Severity, Subject
from .packs import PackDamaged

if TYPE_CHECKING:
    from .model import Site
    from .pictures import ImageStats

Progress = Callable[[str, int, int], None]
# A cache kept in memory (the dev server's) is never asked whether nothing changed (the
# server rebuilds when its watcher saw a change, into a folder of its own): it stores no
# signature, sparing a stat() of every file in the site per rebuild.
UNSIGNED = Signature("", racy=True)


class CacheVanished(BuildFailed):
    """The build cache was removed or rewritten by another process while a build read it.

    A BuildFailed like any other for `broadsheet build` (nothing written; run it again), but
    its own type so that a caller that can do better, the dev server building again without
    the cache, recognises it without looking at what was being handled when it was raised."""


@dataclass(frozen=True)
class BuildOptions:
    drafts: bool = False
    keep_going: bool = False
    output_dir: Path | None = None  # overrides site.yaml's output_dir
    base_url: str | None = None  # overrides site.yaml's base_url (the dev server's own URL)
    offline: bool = False  # use only cached images (images.fetch: false)
    refetch: bool = False  # download again the images that failed before
    use_cache: bool = True  # False: build from scratch (--no-cache); the cache is rewritten
    cache_name: str = "build"  # the cache's folder in .cache/ (the dev server keeps its own)
    workers: int | None = None  # processes for parsing and rendering; None: one per core
    persist_cache: bool = True  # False: keep the cache in this process's memory (serve)
    search_index: bool = True  # False: no Pagefind run; the caller indexes (serve, afterwards)


@dataclass(frozen=True)
class Counts:
    stories: int = 0
    drafts: int = 0
    topics: int = 0
    issues: int = 0

    @classmethod
    def of(cls, site: Site) -> Counts:
        drafts = sum(1 for a in site.articles if a.is_draft)
        return cls(len(site.articles), drafts, len(site.topics), len(site.issues))


@dataclass(frozen=True)
class BuildReport:
    config: Config
    site: Site | None  # None when nothing changed and the model was not even loaded
    pages: int
    files: int
    unchanged: int
    seconds: float
    warnings: list[Diagnostic] = field(default_factory=list)
    images: ImageStats | None = None
    counts: Counts = field(default_factory=Counts)
    rebuilt: list[tuple[str, str]] = field(default_factory=list)  # (unit, why), for --explain
    removed: list[str] = field(default_factory=list)  # stale output files deleted
    reparsed: int = 0  # story files parsed (the rest came from the cache)
    nothing_changed: bool = False
    notes: list[str] = field(default_factory=list)  # about the cache: why it was not used


def build(
    root: Path,
    options: BuildOptions = BuildOptions(),
    progress: Progress | None = None,
    *,
    write: bool = True,
) -> BuildReport:
    """Build the site in `root`; raise BuildFailed (nothing written) on any error, and its
    subclass CacheVanished when another process removed or rewrote the cache meanwhile.

    With the build cache (the default) only changed stories are parsed and only pages whose
    inputs changed are rendered; the result is byte-identical to a build from scratch."""
    started = time.perf_counter()
    site_config = load_config(root)
    config = configure(site_config, options)
    cache = build_cache(config, options)
    output_dir = config.root / config.output_dir
    signature = (input_signature(config, options, site_config.output_dir)
                 if options.persist_cache else UNSIGNED)
    if write and options.use_cache and not options.refetch:
        head = cache.load(head_only=True)
        if unchanged_since(head, with_image_cache(signature, config), output_dir):
            return _nothing_changed(config, head, started)
    from . import stages  # the stages import Jinja, Pillow, lxml...: only when needed

    try:
        with collector_paused():
            return stages.run(config, options, cache, signature, started, progress, write)
    except PackDamaged as exc:  # another process removed or rewrote the cache mid-build
        cache.forget()
        folder = cache.folder.relative_to(config.root) if cache.folder.is_relative_to(
            config.root) else cache.folder
        raise CacheVanished(
            [Diagnostic(str(folder), 0, "", f"the build cache changed during the build ({exc})",
                        Severity.ERROR, Subject.FOLDER)],
            "the build cache was changed by another process during this build; nothing was "
            "written: run the build again",
        ) from None


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a build runs.

    A build allocates hundreds of thousands of long-lived objects (the model, the cache, the
    fact records) and almost no garbage cycles, so the collector's repeated full scans are pure
    cost: they were a fifth of a cold build and a sixth of a one-edit rebuild. Reference
    counting still frees everything else at once. Afterwards the build's objects are moved
    out of the collector's sight (gc.freeze): otherwise the first collection after it would
    walk the whole model, seconds on a large site, just before the command exits. The dev
    server unfreezes and collects while it waits for the next edit."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()


def build_cache(config: Config, options: BuildOptions) -> BuildCache:
    folder = config.root / config.images.cache_dir / options.cache_name
    return BuildCache(folder, persist=options.persist_cache)


def _nothing_changed(config: Config, state: CacheState, started: float) -> BuildReport:
    summary = dict(state.summary)
    pages = summary.pop("pages", 0)
    files = summary.pop("files", 0)
    return BuildReport(
        config,
        None,
        pages,
        files,
        files,
        time.perf_counter() - started,
        list(state.warnings),
        counts=Counts(**summary),
        nothing_changed=True,
    )


def _output_id(output_dir: Path) -> tuple[int, int, int] | None:
    try:
        stat = output_dir.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns)


def input_signature(
    config: Config, options: BuildOptions, site_output: Path | None = None
) -> Signature:
    """Every input a build reads: the site folder (stories, local images, site.yaml, a
    site theme), the theme folders, the image cache's index, the config and the options.

    Neither output folder is an input: the one built into, nor site.yaml's own when
    `--output` builds elsewhere (walking the 13,000 files of a 10,000-story site's output/
    made each such build's nothing-changed check 0.17 s slower)."""
    root = config.root
    folders = [root, *(d for d in (*config.template_dirs, *config.static_dirs)
                       if not d.resolve().is_relative_to(root.resolve()))]
    skip = [root / config.output_dir, root / config.images.cache_dir]
    if site_output is not None:
        skip.append(root / site_output)
    return _signature(repr(config), repr(options), folders, skip)


def with_image_cache(signature: Signature, config: Config) -> Signature:
    """The signature with the image cache's files only builds write, as a build left them:
    its index, and today's list of unreachable hosts (so the first build of a new day is
    not a nothing-changed one when a host failed the day before: it tries them again)."""
    folder = config.root / config.images.cache_dir / IMAGE_CACHE_FOLDER
    return with_file(with_file(signature, folder / "index.json"), unreachable_path(folder))


def unchanged_since(state: CacheState, signature: Signature, output_dir: Path) -> bool:
    return bool(
        state.signature
        and state.signature == signature.value
        and state.output_id is not None
        and _output_id(output_dir) == state.output_id
    )


def configure(config: Config, options: BuildOptions) -> Config:
    """Apply command-line overrides to the site's config; an output folder given there is
    held to the rules site.yaml's is (config.output_problem)."""
    if options.output_dir is not None:
        config = replace(config, output_dir=options.output_dir)
        problem = output_problem(config, cache_too=True)
        if problem is not None:
            refused = Diagnostic("--output", 0, "", problem, Severity.ERROR, Subject.OPTION)
            raise BuildFailed([refused],
                              "the output folder was refused; nothing was written")
    if options.base_url is not None:
        config = replace(config, base_url=options.base_url.rstrip("/") + "/")
    if options.offline or options.refetch:
        fetch = config.images.fetch and not options.offline
        images = replace(config.images, fetch=fetch, refetch=options.refetch)
        config = replace(config, images=images)
    return config
