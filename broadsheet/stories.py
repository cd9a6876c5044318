"""Story files -> validated Articles, reusing the build cache and spreading work over cores.

A story whose size and mtime match the cache is not read at all; one whose bytes match (a
touched file) is not parsed. A file changed less than two seconds before it was read is
"racy": its mtime may not move on the next edit within the same clock tick, so the next
build confirms it by its bytes (git's index does the same).

Parsing is the costliest part of a cold build (YAML), so many changed stories are parsed by
a pool of worker processes; each returns the same StoryEntry a serial parse would.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from .assemble import issue_of
from .buildcache import RACY_NS, StoryEntry, engine_key
from .config import Config
from .coverage import prepare_coverage
from .diagnostics import Diagnostic, Diagnostics, Severity
from .frontmatter import parse_front_matter
from .model import Article
from .packs import PackWriter
from .sources import MAX_STORY_BYTES, decode_story, find_story_files, not_readable
from .urls import make_slug
from .validate import check_unique_slugs, validate_story

Progress = Callable[[str, int, int], None]
PARALLEL_MIN = 400  # below this many stories to parse, a pool costs more than it saves
CHUNK = 64


@dataclass(frozen=True)
class Loaded:
    """The stories of one build and what the cache learns from reading them."""

    articles: list[Article]
    entries: dict[str, StoryEntry]  # by shown path, for the next build's cache
    parsed: dict[str, str]  # article.source -> the digest its fingerprint builds on
    uses: dict[str, str]  # article.source -> thumbnails.uses_digest of it
    reparsed: int  # stories parsed this build (0 on a rebuild where none changed)


def read_key(config: Config) -> str:
    """What validation reads besides the file: Broadsheet itself, the timezone, the issues."""
    return f"{engine_key()}|{config.tz.key}|{config.issues!r}"


def load_stories(
    config: Config,
    diagnostics: Diagnostics,
    cached: dict[str, StoryEntry],
    progress: Progress | None = None,
    workers: int | None = None,
    spill: PackWriter | None = None,
) -> Loaded:
    """Read and validate every story; problems go to `diagnostics`, good stories come back.

    Stories parsed in worker processes arrive pickled; with `spill`, their tails and
    other blobs go straight to that pack (flushed before this returns)."""
    root = config.root
    key = read_key(config)
    entries: dict[str, StoryEntry] = {}
    todo: list[tuple[str, str, StoryEntry | None]] = []
    now = time.time_ns()
    unlisted: list[Diagnostic] = []
    for path, shown in find_story_files(root / config.content_dir, root, unlisted):
        entry = cached.get(shown)
        if entry is not None and entry.read_key == key and _unchanged(path, entry, now):
            entries[shown] = entry
        else:
            todo.append((path, shown, entry))
    for done, (shown, entry) in enumerate(_parse_all(todo, config, key, workers), start=1):
        if progress:
            progress("Reading stories", done, len(todo))
        if spill is not None:
            entry.spill(spill)
        entries[shown] = entry
    if spill is not None:
        spill.flush()  # pages read the tails
    diagnostics.extend(unlisted)
    articles = []
    for shown in sorted(entries):
        entry = entries[shown]
        diagnostics.extend(entry.diagnostics)
        if entry.article is not None:
            articles.append(entry.article)
    # A draft never takes a slug from a published story: with --keep-going the draft is the
    # one left out, not the story readers see.
    collisions = check_unique_slugs(sorted(articles, key=lambda article: article.is_draft))
    diagnostics.extend(collisions)
    clashing = {(d.path, d.field) for d in collisions}
    kept = [a for a in articles if (a.source, "slug") not in clashing]
    parsed = {shown: entry.parsed(shown) for shown, entry in entries.items()}
    uses = {shown: entry.uses for shown, entry in entries.items()}
    return Loaded(kept, entries, parsed, uses, len(todo))


def _unchanged(path: str, entry: StoryEntry, now: int) -> bool:
    """Same size and mtime, and the mtime old enough to trust (not racy)."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return (
        stat.st_size == entry.size
        and stat.st_mtime_ns == entry.mtime_ns
        and now - stat.st_mtime_ns > RACY_NS
    )


def _parse_all(
    todo: list[tuple[str, str, StoryEntry | None]], config: Config, key: str,
    workers: int | None,
) -> Iterator[tuple[str, StoryEntry]]:
    workers = workers or min(os.cpu_count() or 1, 4)
    if len(todo) < PARALLEL_MIN or workers < 2:
        for path, shown, previous in todo:
            yield shown, parse_story(path, shown, config, key, previous)
        return
    from concurrent.futures import ProcessPoolExecutor  # not imported by a small rebuild
    from multiprocessing import get_context

    chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
    with ProcessPoolExecutor(
        workers, mp_context=get_context("fork"), initializer=_init_worker, initargs=(config, key)
    ) as pool:
        for results in pool.map(_parse_chunk, chunks):
            yield from results


_worker: tuple[Config, str] | None = None


def _init_worker(config: Config, key: str) -> None:
    global _worker
    _worker = (config, key)


def _parse_chunk(
    jobs: list[tuple[str, str, StoryEntry | None]],
) -> list[tuple[str, StoryEntry]]:
    assert _worker is not None
    config, key = _worker
    return [(shown, parse_story(path, shown, config, key, previous)) for path, shown, previous
            in jobs]


def parse_story(
    path: str | Path, shown: str, config: Config, key: str, previous: StoryEntry | None = None
) -> StoryEntry:
    """One story file, read and validated (or its diagnostics), as a cache entry."""
    try:
        stat = os.stat(path)
        problem = not_readable(stat.st_mode, stat.st_size, shown) or _linked_out(
            path, config.root, shown)
        if problem is not None:
            return StoryEntry(stat.st_size, stat.st_mtime_ns, "", key, None, [problem])
        with open(path, "rb") as handle:
            data = _read_bounded(handle, stat.st_size)
        problem = not_readable(stat.st_mode, len(data), shown)
        if problem is not None:
            return StoryEntry(len(data), stat.st_mtime_ns, "", key, None, [problem])
    except OSError as exc:
        return StoryEntry(0, 0, "", key, None,
                          [Diagnostic(shown, 0, "", f"cannot be read: {exc.strerror or exc}")])
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    if previous is not None and previous.digest == digest and previous.read_key == key:
        return previous.same_content(stat.st_size, stat.st_mtime_ns)
    diagnostics = Diagnostics()
    article = _validate(data, Path(path), shown, config, diagnostics)
    return StoryEntry(stat.st_size, stat.st_mtime_ns, digest, key, article,
                      _at_most(diagnostics.items, shown))


def _read_bounded(handle: BinaryIO, size: int) -> bytes:
    """The file's bytes, at most MAX_STORY_BYTES + 1 (it may have grown since its stat).
    Read to the size stat() gave first: a read of the largest size allocates that much
    for every story, which cost a cold build more than the read."""
    data = handle.read(size + 1)
    if len(data) > size:  # grown
        data += handle.read(MAX_STORY_BYTES + 1 - len(data))
    return data


MAX_TOLD = 100  # problems told per story file; the rest are counted


def _at_most(items: list[Diagnostic], shown: str) -> list[Diagnostic]:
    """A file's first MAX_TOLD problems and a count of the rest: a generated file with
    900,000 repeated keys printed 900,000 lines, which hid every other file's problems."""
    if len(items) <= MAX_TOLD:
        return items
    rest = items[MAX_TOLD:]
    severity = Severity.ERROR if any(d.is_error for d in rest) else Severity.WARNING
    return [*items[:MAX_TOLD], Diagnostic(shown, rest[0].line, "", f"and {len(rest):,} more "
                                          "problems in this file", severity)]


def _linked_out(path: str | Path, root: Path, shown: str) -> Diagnostic | None:
    """A story file that is a link to a file outside the site folder is not read, as local
    images are not: a site copied from elsewhere must not publish what it points at."""
    if not os.path.islink(path):
        return None
    target = Path(os.path.realpath(path))
    if target.is_relative_to(root.resolve()):
        return None
    return Diagnostic(shown, 0, "", "is a link to a file outside the site folder; copy the "
                      "story into the site instead")


def _validate(
    data: bytes, path: Path, shown: str, config: Config, diagnostics: Diagnostics
) -> Article | None:
    text = decode_story(data, shown)
    if isinstance(text, Diagnostic):
        diagnostics.extend([text])
        return None
    front = parse_front_matter(text, shown)
    if isinstance(front, list):
        diagnostics.extend(front)
        return None
    diagnostics.extend(list(front.problems))  # its fields are still read: all in one pass
    default_slug = make_slug(path.stem, "story")
    article = validate_story(front, shown, default_slug, config, diagnostics)
    if article is None or front.problems:
        return None
    article = prepare_coverage(article)
    issue = issue_of(article, config.issues, config.tz)  # what assembly would give it
    return article if article.issue == issue else replace(article, issue=issue)
