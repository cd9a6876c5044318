"""The image stage: story images -> thumbnails in the output, and the pictures pages show.

It runs after the site is assembled and before pages render: find each source (a file in the
site, or a download in the cache), download what is missing, have worker processes make the
missing thumbnails into the cache, then link every file the pages need into the output
through the write sink. A source that cannot be had is one warning and a placeholder, never
a failed build; and a rebuild where nothing changed does no Pillow work at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import urlsplit

from .buildcache import RACY_NS, engine_key
from .config import IMAGE_CACHE_FOLDER, Config, ImageSettings, unreachable_path
from .diagnostics import Diagnostic, Severity, Subject
from .model import Image, Site
from .output import Named
from .pictures import (
    ImageStats,
    PictureBook,
    SourceView,
    image_key,
    placeholder_data,
    placeholder_name,
    placeholder_shapes,
)
from .thumbnails import (
    FIT,
    THUMBS_FOLDER,
    ImagePlan,
    ImageUse,
    ThumbSpec,
    crop_operation,
    preview_scale,
    story_uses,
    thumb_specs,
)
from .urls import UrlBuilder

if TYPE_CHECKING:  # Pillow, http.client...: imported when the stage really runs (not replayed)
    import multiprocessing.context

    from .fetch import Fetched
    from .imagecache import ImageCache, RemoteRecord
    from .imaging import ImageJob, JobResult, SourceInfo

Progress = Callable[[str, int, int], None]
FETCH_THREADS = 8
OFFLINE = "not downloaded yet, and fetching is off (--offline or images.fetch: false)"
PER_HOST = 2  # downloads at once from one host
UNANSWERED_LIMIT = 3  # timeouts in a row from one host before its other images are skipped


class FileSink(Protocol):
    def write(self, name: str, data: bytes) -> bool: ...

    def write_file(self, name: str, source: Path) -> None: ...

    def write_named(self, name: str, data: Named) -> None: ...


@dataclass(slots=True)
class Source:
    """One distinct source (a URL or a file in the site): where its bytes are and what they
    are. A large site has ~150,000 (slots: less memory); its uses are not kept (Grouped)."""

    key: str
    first: Image | None = None  # a local file's first use: where to look for it
    host: str = ""  # a remote source's host name (lower case), once it is downloaded
    count: int = 0  # its uses
    operations: tuple[str, ...] = ()  # everything its uses ask for, sorted
    path: Path | None = None  # where its bytes are
    digest: str = ""
    info: SourceInfo | None = None
    problem: str = ""
    remembered: bool = False  # the problem is a cached failure of a download
    offline: bool = False  # not downloaded because fetching is off
    # Not asked for, and why: its host could not be reached or stopped answering, in this
    # build or (with `remembered`) an earlier one today (images.download)
    skipped: str = ""

    def specs(self, settings: ImageSettings) -> list[ThumbSpec]:
        """Every file the pages need of this source (known once it has been decoded)."""
        if self.info is None or self.problem:
            return []
        size, jpeg = (self.info.width, self.info.height), self.info.jpeg
        widths, quality = settings.widths, settings.quality
        return [
            spec
            for operation in self.operations
            for spec in thumb_specs(self.digest, size, operation, widths, quality, jpeg)
        ]


@dataclass
class Outcome:
    """What the stage did, gathered as it goes."""

    warnings: list[Diagnostic] = field(default_factory=list)
    fetched: int = 0
    decoded: int = 0
    made: int = 0
    unsettled: int = 0  # sources that failed for the moment (not remembered): look again


StatKey = tuple[int, int, int, int]  # size, mtime_ns, inode, mode
LocalState = tuple[str, StatKey | None]  # where a path really leads, and what is there
Shape = tuple[int, int, int]  # a placeholder's width, height and hue
# The uses the stage is asked about, story by story (story file, its uses): read more than
# once, so a story's uses can be made again rather than kept (thumbnails.ImagePlan).
Plan = Sequence[tuple[str, Iterable[ImageUse]]]


@dataclass(frozen=True)
class StageMemo:
    """What the image stage found (`run`). Kept from a build where it downloaded and made
    nothing, with a key: a later build with the same key does exactly the same, so it
    replays this instead of looking at every source again (tens of thousands of them on a
    large site)."""

    key: str  # stage_key; "" until kept
    # by story file, its uses' views in plan order (pickled: a replay unpickles only the
    # stories whose pages render)
    views: dict[str, bytes]
    published: tuple[tuple[str, str], ...]  # (route, cached thumbnail name) linked into output
    placeholders: tuple[Shape, ...]  # the placeholder files to write (shapes)
    local: tuple[tuple[str, LocalState], ...]  # each local candidate path and what it was
    stats: ImageStats
    warnings: tuple[Diagnostic, ...]
    digests: dict[str, str]  # story_digests


def render_images(
    site: Site,
    config: Config,
    urls: UrlBuilder,
    sink: FileSink,
    progress: Progress | None = None,
    memo: StageMemo | None = None,
    story_uses: Mapping[str, str] | None = None,
    parts_file: Path | None = None,
    reuse_parts: bool = False,
) -> tuple[PictureBook, StageMemo | None]:
    """Every picture the site shows, made or reused, linked into `sink`; and the memo the
    next build may replay. `story_uses` maps each story file to `thumbnails.uses_digest`
    of its article (kept in the build cache), which with the image settings and the state
    of the image cache is what the stage's result depends on.

    When the stage runs, each story's part of the grouping is kept in `parts_file` (in
    the build cache's folder) by its uses' digest, and with `reuse_parts` (a build that
    uses the build cache) read back first: a new story then costs the stage only its own
    images."""
    key = stage_key(site, config, story_uses) if story_uses is not None else None
    if memo is not None and key is not None and memo.key == key and _same_local(memo.local):
        return replay(memo, site, config, urls, sink), memo
    plan = ImagePlan(site, crop_operation(config.images.card_aspect))
    known = read_story_parts(parts_file) if reuse_parts and parts_file else {}
    with PartsWriter(parts_file) as keep:
        found, busy = run(plan, config, progress, known, story_uses, keep)
    book = picture_book(found, site, config, urls, sink, found.stats)
    if story_uses is None or key is None or busy:
        return book, None  # the cache changed under it: the next build looks again
    return book, replace(found, key=stage_key(site, config, story_uses) or "")  # as it is now


def stage_key(site: Site, config: Config, story_uses: Mapping[str, str]) -> str | None:
    """What the stage's result depends on besides local files: the stories' image uses, the
    image settings, and the image cache's index and folders (any download, thumbnail or
    decode changes them). The day is part of it, because the first build of a day stamps
    what is in use, which keeps it from being pruned."""
    settings = config.images
    if settings.refetch:
        return None
    folder = config.root / settings.cache_dir / IMAGE_CACHE_FOLDER
    digest = hashlib.blake2b(digest_size=16)
    parts = ("index.json", "remote", "originals", "thumbs", unreachable_path(folder).name)
    state = [_stat_key(folder / part) for part in parts]
    digest.update(repr((settings, str(config.root), date.today().isoformat(), state)).encode())
    for article in sorted(site.articles, key=lambda a: a.source):
        uses = story_uses.get(article.source)
        if uses is None:
            return None
        digest.update(f"{article.source}\0{uses}\n".encode())
    return digest.hexdigest()


def _stat_key(path: Path | str) -> StatKey | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_mode)


def _local_candidates(sources: list[Source], config: Config) -> Iterator[tuple[str, LocalState]]:
    """Every path a local image was looked for at, and what was there (see _same_local)."""
    for source in sources:
        if source.first is not None:
            for candidate in _candidates(source.first, config):
                yield str(candidate), _local_state(str(candidate))


def _local_state(path: str) -> LocalState:
    real = os.path.realpath(path)
    return (real, _stat_key(real))


def _racy(local: tuple[tuple[str, LocalState], ...]) -> bool:
    """A local image changed so recently that another change might keep its mtime."""
    now = time.time_ns()
    return any(stat is not None and now - stat[1] < RACY_NS for _, (_, stat) in local)


def _same_local(local: tuple[tuple[str, LocalState], ...]) -> bool:
    return all(_local_state(path) == state for path, state in local)


def _views_by_story(grouped: Grouped, views: list[SourceView]) -> dict[str, bytes]:
    """Each story's views (one per use), pickled in plan order (see StoryViews)."""
    owners = grouped.owners
    return {
        story: pickle.dumps(tuple(views[owners[i]] for i in range(start, end)),
                            protocol=pickle.HIGHEST_PROTOCOL)
        for story, start, end, _ in grouped.stories
    }


def story_digests(
    grouped: Grouped, views: list[SourceView], placeholders: Sequence[Shape]
) -> dict[str, str]:
    """For each story file, a digest of everything the image stage decided about the
    images it gives: what they are (their keys), what each one's source is, and whether
    the placeholder file of each one's card and story shape exists (`placeholders`).

    A picture of a planned image is a function of that image, its source's view and
    those placeholders, so while a story's digest stays the same the pictures of its
    images cannot change: the build cache then keeps those facts without re-checking
    each one (tens of thousands of related-coverage cards on a large site)."""
    written = set(placeholders)
    present = [shape in written for shape in grouped.shape_list]
    by_view: dict[int, tuple[object, ...]] = {}  # many sources share one (unreadable)
    values = [by_view.setdefault(id(view), tuple(vars(view).values())) for view in views]
    owners, shapes = grouped.owners, grouped.shapes
    # Pickled rather than repr'd for speed: equal entries pickle alike here, and a digest
    # that differed anyway would only make the build cache check that story's pictures.
    return {
        story: hashlib.blake2b(
            pickle.dumps((keys, [(values[owners[i]], present[shapes[2 * i]],
                                  present[shapes[2 * i + 1]]) for i in range(start, end)]),
                         protocol=5),
            digest_size=16,
        ).hexdigest()
        for story, start, end, keys in grouped.stories
    }


class StoryViews(Mapping[Image, SourceView]):
    """What the image stage found for each image it planned, worked out story by story when
    a page first asks: `views` holds each story's views in plan order (thumbnails.
    story_uses), pickled.

    A mapping keyed by every planned image kept each one alive from the image stage to the
    end of the build: at 10,000 stories ~285,000 related items' images (~200 MB with the
    mapping), counted twice once the render worker forks. Here a story's own images (its
    cards, shown on many list pages) are kept once found, and its related items' images
    (asked for by its own page) only for the last RECENT stories. A replayed stage also
    skips pairing every use with its view, which reads every story's related coverage."""

    RECENT = 64

    def __init__(self, views: dict[str, bytes], site: Site, card_operation: str) -> None:
        self._views = views
        self._articles = {a.source: a for a in site.articles}
        self._operation = card_operation
        self._own: dict[str, dict[Image, SourceView]] = {}
        self._related: OrderedDict[str, dict[Image, SourceView]] = OrderedDict()
        # The last story's views unpickled: its page asks for its own images and then its
        # related items' (two pairings, one unpickling).
        self._last: tuple[str, tuple[SourceView, ...]] = ("", ())

    def find(self, image: object) -> SourceView | None:
        """The view of `image`, or None when the stage was not asked about it."""
        if not isinstance(image, Image):
            return None
        story = image.source
        own = self._own.get(story)
        if own is None:
            own = self._own[story] = self._pairs(story, own=True)
        found = own.get(image)
        if found is not None:
            return found
        related = self._related.get(story)
        if related is None:
            related = self._related[story] = self._pairs(story, own=False)
            if len(self._related) > self.RECENT:
                self._related.popitem(last=False)
        else:
            self._related.move_to_end(story)
        return related.get(image)

    def _pairs(self, story: str, own: bool) -> dict[Image, SourceView]:
        """The story's own images (story_uses gives them first) or its other planned ones,
        each with its view. A list page's card needs only the first: it does not read the
        story's related items' images."""
        article = self._articles.get(story)
        blob = self._views.get(story)
        if article is None or blob is None:
            return {}
        if self._last[0] != story:
            self._last = (story, pickle.loads(blob))
        views = self._last[1]
        mine = len(article.images)
        if own:
            return dict(zip(article.images, views[:mine], strict=True))
        # The same uses as when the views were found: the stage key holds each story's
        # thumbnails.uses_digest.
        uses = list(story_uses(article, self._operation))
        return {use.image: view for use, view in zip(uses[mine:], views[mine:], strict=True)}

    def __getitem__(self, image: Image) -> SourceView:
        found = self.find(image)
        if found is None:
            raise KeyError(image)
        return found

    def __contains__(self, image: object) -> bool:
        return self.find(image) is not None

    def __iter__(self) -> Iterator[Image]:
        for story in self._views:
            article = self._articles.get(story)
            if article is not None:
                yield from (use.image for use in story_uses(article, self._operation))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def replay(
    memo: StageMemo, site: Site, config: Config, urls: UrlBuilder, sink: FileSink
) -> PictureBook:
    """The memo's result, its files linked into `sink` again (no image is looked at)."""
    stats = replace(memo.stats, fetched=0, decoded=0, made=0)
    return picture_book(memo, site, config, urls, sink, stats)


def picture_book(
    found: StageMemo,
    site: Site,
    config: Config,
    urls: UrlBuilder,
    sink: FileSink,
    stats: ImageStats,
) -> PictureBook:
    """The pictures of what the stage found (just now, or in an earlier build), its files
    linked into `sink`."""
    files = link(found.published, config, sink)
    views = StoryViews(found.views, site, crop_operation(config.images.card_aspect))
    names = frozenset(placeholder_name(*shape) for shape in found.placeholders)
    return PictureBook(config.images, urls, views, files, names, stats, list(found.warnings),
                       found.digests, found.placeholders)


def link(published: Iterable[tuple[str, str]], config: Config, sink: FileSink) -> dict[str, Path]:
    """Link each published thumbnail (route, name) from the cache into the output; the
    files by name."""
    thumbs = config.root / config.images.cache_dir / IMAGE_CACHE_FOLDER / "thumbs"
    files: dict[str, Path] = {}
    for route, name in published:
        files[name] = path = thumbs / name
        sink.write_file(route, path)
    return files


def process_images(
    plan: Plan,
    config: Config,
    sink: FileSink,
    progress: Progress | None = None,
) -> tuple[ImageStats, list[Diagnostic]]:
    """The stage for any plan (the benchmark passes its own): locate, download, decode and
    make what the cache lacks, publish, write placeholders, warn, tidy the cache; what it
    did, and its warnings."""
    found, _ = run(plan, config, progress)
    link(found.published, config, sink)
    _write_placeholders(found.placeholders, sink)
    return found.stats, list(found.warnings)


def run(
    plan: Plan,
    config: Config,
    progress: Progress | None,
    known: Mapping[str, tuple[str, bytes]] | None = None,
    uses: Mapping[str, str] | None = None,
    keep: KeepPart | None = None,
) -> tuple[StageMemo, bool]:
    """Run the stage over `plan`: what it found, as a memo without a key (its files are not
    linked into any output yet: `link`); and whether it was busy, having changed the image
    cache or seen a local image change just now, so that the next build looks again.
    `known`, `uses` and `keep`: see group_sources."""
    from .imagecache import ImageCache

    settings = config.images
    cache = ImageCache(config.root / settings.cache_dir)
    outcome = Outcome()
    grouped = group_sources(plan, config, known, uses, keep)
    sources = grouped.sources
    locate_sources(sources, config, cache, outcome, progress)
    describe_sources(sources, settings, cache, outcome, progress)
    published = tuple((spec.route, spec.name) for spec in _published_specs(sources, settings))
    shapes = tuple(_placeholder_shapes(grouped))
    cache.finish(
        {name for _, name in published},
        {s.digest for s in sources if s.digest},
        {s.key for s in sources if not s.key.startswith("file:")},
    )
    outcome.warnings.extend(failure_warnings(grouped, plan))
    outcome.warnings.extend(summarise_placeholders(sources, settings))
    stats = ImageStats(
        sources=len(sources),
        fetched=outcome.fetched,
        failed=sum(1 for s in sources if s.problem),
        decoded=outcome.decoded,
        made=outcome.made,
        files=len(published),
    )
    views = [source_view(source) for source in sources]
    local = tuple(_local_candidates(sources, config))
    downloaded = stats.fetched or any(  # a download failed just now, not remembered
        s.problem and not (s.remembered or s.offline or s.key.startswith("file:"))
        for s in sources)
    busy = bool(downloaded or stats.made or stats.decoded or outcome.unsettled or _racy(local))
    found = StageMemo(
        "",
        _views_by_story(grouped, views),
        published,
        shapes,  # the placeholder files, not written yet (after the pages)
        local,
        stats,
        tuple(outcome.warnings),
        story_digests(grouped, views, shapes),
    )
    return found, busy


# -- where each source is -----------------------------------------------------------------


@dataclass
class Grouped:
    """A plan's uses grouped by source, without the images: a large site plans ~300,000
    (most of them related items' first images, unpickled story by story), and keeping
    them all at once left ~55 MB in the allocator for the rest of the build."""

    sources: list[Source] = field(default_factory=list)  # in first-use order
    owners: list[int] = field(default_factory=list)  # each use's source (its index)
    # each use's placeholder shapes as a card and in its own shape (ids into shape_list),
    # and which of the two it asks for (CARD | OWN)
    shapes: list[int] = field(default_factory=list)
    asks: bytearray = field(default_factory=bytearray)
    shape_list: list[Shape] = field(default_factory=list)
    # each story, its uses (owners[start:end]) and a digest of its images' keys
    stories: list[tuple[str, int, int, bytes]] = field(default_factory=list)


CARD, OWN = 1, 2


# A story's part of the grouping: each use's source key, its two placeholder shapes (as a
# card, in its own shape), what it asks for (CARD | OWN), the image of each use of a local
# file (where to look for it) by the use's index, and a digest of its images' keys. A
# function of the story's uses alone, so kept by their digest (PARTS_FILE).
StoryPart = tuple[tuple[str, ...], tuple[Shape, ...], bytes, tuple[tuple[int, Image], ...], bytes]
PARTS_FILE = "image-parts.pickle"
KeepPart = Callable[[str, str, bytes], None]  # (story file, its key, its part pickled)


def group_sources(
    plan: Plan,
    config: Config,
    known: Mapping[str, tuple[str, bytes]] | None = None,
    uses: Mapping[str, str] | None = None,
    keep: KeepPart | None = None,
) -> Grouped:
    """One Source per distinct URL or file, in first-use order, and each use's Source.

    Each story's part is given to `keep` as it is made (pickled, with its key: the story's
    `uses` digest and the card crop), not held: ~16 MB at 10,000 stories, which held until
    the stage ended raised a cold build's peak memory. A story whose key matches its part
    in `known` is not read again: its images (most of them its related items', unpickled
    from its blob) are most of the stage's work."""
    card = crop_operation(config.images.card_aspect)
    both = (card, FIT)
    asks: dict[tuple[str, ...], int] = {}  # by a use's operations
    grouped = Grouped()
    found: dict[str, int] = {}
    shape_ids: dict[Shape, int] = {}
    operations = {0: (), CARD: (card,), OWN: (FIT,), CARD | OWN: (card, FIT)}  # by asks
    for story, planned in plan:
        digest = uses.get(story) if uses is not None else None
        key = f"{digest}|{card}" if digest else ""
        before = known.get(story) if known and key else None
        part = _known_part(before[1]) if before is not None and before[0] == key else None
        if part is not None and before is not None:
            blob = before[1]
        else:
            part = _story_part(planned, both, card, asks)
            blob = pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL) if key and keep else b""
        if key and keep is not None:
            keep(story, key, blob)
        _add_part(grouped, story, part, found, shape_ids, operations)
    grouped.shape_list = list(shape_ids)
    return grouped


def _story_part(
    uses: Iterable[ImageUse], both: tuple[str, str], card: str, asks: dict[tuple[str, ...], int]
) -> StoryPart:
    keys: list[str] = []
    shapes: list[Shape] = []
    wanted = bytearray()
    local: list[tuple[int, Image]] = []
    image_keys = []
    for use in uses:
        image = use.image
        key = source_key(image)
        if key.startswith("file:"):
            local.append((len(keys), image))
        keys.append(key)
        shapes.extend(placeholder_shapes(image, both))
        ask = asks.get(use.operations)
        if ask is None:
            ask = asks[use.operations] = _asks(use.operations, card)
        wanted.append(ask)
        image_keys.append(image_key(image))
    keyed = hashlib.blake2b(pickle.dumps(image_keys, protocol=5), digest_size=16).digest()
    return tuple(keys), tuple(shapes), bytes(wanted), tuple(local), keyed


def _known_part(blob: bytes) -> StoryPart | None:
    """A kept part, or None when it is not one (a damaged or foreign file)."""
    try:
        part = pickle.loads(blob)
        keys, shapes, wanted, local, keyed = part
        if not (type(wanted) is bytes and type(keyed) is bytes
                and len(shapes) == 2 * len(keys) == 2 * len(wanted)
                and max(wanted, default=0) <= CARD | OWN
                and all(type(key) is str for key in keys)
                and all(type(i) is int and type(image) is Image for i, image in local)):
            return None
    except Exception:  # unpicklable, or not a part at all
        return None
    return part  # type: ignore[no-any-return]


def _add_part(
    grouped: Grouped, story: str, part: StoryPart, found: dict[str, int],
    shape_ids: dict[Shape, int], operations: Mapping[int, tuple[str, ...]],
) -> None:
    """Add one story's uses to the grouping: each use to its source (a new one at its
    first use), its shapes as ids into the distinct ones."""
    keys, shapes, wanted, local, keyed = part
    images = dict(local)
    sources, owners = grouped.sources, grouped.owners
    start = len(owners)
    for use, key in enumerate(keys):
        index = found.get(key)
        if index is None:
            index = found[key] = len(sources)
            sources.append(Source(key, images.get(use)))
        source = sources[index]
        source.count += 1
        source.operations = _merged(source.operations, operations[wanted[use]])
        owners.append(index)
    grouped.shapes.extend([shape_ids.setdefault(shape, len(shape_ids)) for shape in shapes])
    grouped.asks.extend(wanted)
    grouped.stories.append((story, start, len(owners), keyed))


def read_story_parts(path: Path) -> dict[str, tuple[str, bytes]]:
    """The stories' parts the last run of the stage kept, by story file (none if the file
    is missing, damaged or from another version of Broadsheet: they are made again)."""
    parts: dict[str, tuple[str, bytes]] = {}
    try:
        with open(path, "rb") as handle:
            unpickler = pickle.Unpickler(handle)
            if unpickler.load() != engine_key():
                return {}
            while (record := unpickler.load()) is not None:
                story, key, blob = record
                if not (type(story) is str and type(key) is str and type(blob) is bytes):
                    return {}
                parts[story] = (key, blob)
    except Exception:  # missing, truncated, not ours: never fatal
        return {}
    return parts


def remove_orphans(path: Path) -> None:
    """Remove the temporary parts files of builds that were killed (SIGTERM, SIGKILL: no
    clean-up ran), each up to ~16 MB; a file whose build is still running is left alone."""
    for leftover in path.parent.glob(f".{path.name}.*"):
        pid = leftover.name.rsplit(".", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _writer_running(leftover, int(pid)):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _writer_running(leftover: Path, pid: int) -> bool:
    """Whether the build that wrote `leftover` may still run: process `pid` does, and it
    started before the file was last written (pids are reused: a process that started
    later cannot have written it, and would otherwise keep the file for good)."""
    if not pid_running(pid):
        return False
    started = process_start(pid)
    try:
        written = leftover.stat().st_mtime
    except OSError:
        return True
    return started is None or written >= started - 1  # /proc's boot time is in seconds


def pid_running(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), where /proc tells (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            ticks = int(handle.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


class PartsWriter:
    """Writes each story's part to a new parts file as the stage makes it (`KeepPart`),
    and puts the file in place when the stage is done; with no path, or when the file
    cannot be written, it keeps nothing (the next run makes the parts again)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._handle: BinaryIO | None = None

    def __enter__(self) -> KeepPart | None:
        if self.path is None:
            return None
        self._temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_orphans(self.path)
            self._handle = open(self._temporary, "wb")  # closed by _close
            pickle.dump(engine_key(), self._handle)
        except OSError:
            self._close(keep=False)
            return None
        return self._keep

    def _keep(self, story: str, key: str, blob: bytes) -> None:
        if self._handle is not None:
            try:  # one pickle per part: a pickler kept for all would hold them in its memo
                pickle.dump((story, key, blob), self._handle, protocol=pickle.HIGHEST_PROTOCOL)
            except OSError:
                self._close(keep=False)

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self._close(keep=kind is None)

    def _close(self, keep: bool) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            if keep:
                pickle.dump(None, handle)  # the end: a file without it is truncated
            handle.close()
            if keep and self.path is not None:
                os.replace(self._temporary, self.path)
                return
        except OSError:
            handle.close()
        self._temporary.unlink(missing_ok=True)


def _asks(operations: tuple[str, ...], card: str) -> int:
    bits = {card: CARD, FIT: OWN}
    unknown = set(operations) - set(bits)
    if unknown:
        raise ValueError(f"an image use asks for {sorted(unknown)}: only {card!r} and {FIT!r}")
    return sum(bits[operation] for operation in set(operations))


@lru_cache(maxsize=64)
def _merged(known: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({*known, *more}))


def source_key(image: Image) -> str:
    if is_remote(image.url):
        return image.url
    story_dir = Path(image.source).parent
    return "file:" + (story_dir / image.url).as_posix()


def is_remote(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def locate_sources(
    sources: list[Source],
    config: Config,
    cache: ImageCache,
    outcome: Outcome,
    progress: Progress | None,
) -> None:
    """Give each source its bytes' path and digest, downloading what is missing."""
    settings = config.images
    missing: list[Source] = []
    down = {} if settings.refetch or not settings.fetch else cache.unreachable_hosts(
        fetch_rules(settings))
    for source in sources:
        if source.key.startswith("file:"):
            read_local(source, config, cache)
            continue
        if not locate_remote(source, settings, cache) and not host_remembered(source, down):
            missing.append(source)
    if missing and settings.fetch:
        download(missing, settings, cache, progress)
        outcome.fetched = sum(1 for source in missing if source.digest)
        if settings.refetch:  # a new download of known bytes is decoded again too
            for source in missing:
                if source.digest and isinstance(cache.source(source.digest), str):
                    cache.forget(source.digest)
    elif missing:
        for source in missing:
            source.problem, source.offline = OFFLINE, True


def read_local(source: Source, config: Config, cache: ImageCache) -> None:
    """A file next to the story or under content/, which must really be inside the site."""
    root = config.root
    assert source.first is not None  # a local source
    candidates = _candidates(source.first, config)
    for candidate in candidates:
        real = os.path.realpath(candidate)  # symlinks resolved: where the bytes really are
        if not os.path.exists(real):
            continue
        if not Path(real).is_relative_to(root):
            source.problem = "the path leads outside the site folder (through a symlink?); refused"
            return
        if os.path.isfile(real):
            source.path, source.digest = Path(real), local_digest(real, config, cache, source)
            return
    shown = sorted({os.path.relpath(c.parent, root) + "/" for c in candidates})
    source.problem = f"no such file (looked in {' and '.join(shown)})"


def _candidates(image: Image, config: Config) -> list[Path]:
    return [
        config.root / Path(image.source).parent / image.url,
        config.root / config.content_dir / image.url,
    ]


def local_digest(path: str, config: Config, cache: ImageCache, source: Source) -> str:
    """The sha256 of a local image, read only when its size or mtime changed."""
    try:
        stat = os.stat(path)
        if stat.st_size > config.images.max_bytes:
            limit = config.images.max_bytes
            source.problem = f"too large ({stat.st_size:,} bytes; the limit is {limit:,})"
            return ""
        digest = cache.known_digest(path, stat)
        if digest is None:
            with open(path, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            cache.remember_digest(path, stat, digest)
    except OSError as exc:
        source.problem = f"cannot be read ({exc.strerror or exc})"
        return ""
    return digest


def locate_remote(source: Source, settings: ImageSettings, cache: ImageCache) -> bool:
    """Whether the cache settles this URL: downloaded before, or failed before."""
    record = cache.remote(source.key)
    if record is None:
        return False
    if record.digest:
        if settings.refetch and isinstance(cache.source(record.digest), str):
            return False  # downloaded, but unreadable: try the URL again
        if record.size > settings.max_bytes:
            return False  # a lower limit since: a clean build refuses it
        if not settings.allow_private_hosts and from_private_host(record):
            return False  # allowed then, not now: downloaded again, the URL is refused
        source.path, source.digest = cache.original(record.digest), record.digest
        return True
    if settings.refetch or record.rules != fetch_rules(settings):
        return False  # or the failure may have been the settings' (a size cap, a timeout)
    source.problem, source.remembered = record.problem, True
    return True


def host_remembered(source: Source, down: Mapping[str, str]) -> bool:
    """Whether the URL's host could not be reached in an earlier build today (`down`, from
    download): then it is a placeholder without asking again, until another day or
    --refetch."""
    if not down:
        return False
    source.host = _host(source.key)
    problem = down.get(source.host)
    if problem is None:
        return False
    source.problem, source.skipped, source.remembered = f"not tried: {problem}", problem, True
    return True


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:  # refused by the download's own checks
        return ""


def from_private_host(record: RemoteRecord) -> bool:
    """Whether a kept download came through an address images.allow_private_hosts must
    allow, as the download found it, so no name is looked up again to decide. A record
    from before this was kept is judged by its URL: a private IP literal or localhost."""
    if record.private is not None:
        return record.private
    from .fetch import is_ip_literal, is_public

    host = (urlsplit(record.url).hostname or "").rstrip(".")
    if is_ip_literal(host):
        return not is_public(host)
    return host == "localhost" or host.endswith(".localhost")


def fetch_rules(settings: ImageSettings) -> str:
    """The settings a download's failure may come from, as its record keeps them."""
    return (f"timeout={settings.timeout:g} max_bytes={settings.max_bytes} "
            f"allow_private_hosts={settings.allow_private_hosts}")


def download(
    sources: list[Source], settings: ImageSettings, cache: ImageCache, progress: Progress | None
) -> None:
    """Fetch in parallel, at most PER_HOST at once from any one host; keep every outcome.

    A host that cannot be reached (its name does not resolve, nothing takes a connection)
    or that leaves UNANSWERED_LIMIT downloads in a row unanswered is not asked for its
    other images in this build: each would fail the same way, or wait the whole timeout
    (hours for a large site whose CDN is down). Such a host is remembered for the day, not
    each of its URLs: offline, a large site's ~140,000 images would otherwise each leave a
    record and a warning, and stay placeholders until --refetch once back online."""
    from .fetch import (
        NO_NETWORK,
        FetchFailed,
        FetchRules,
        HostUnreachable,
        Unanswered,
        fetch_image,
        is_ip_literal,
    )
    from .imagecache import RemoteRecord

    rules = FetchRules(settings.timeout, settings.max_bytes, settings.allow_private_hosts)
    rules_text = fetch_rules(settings)
    queues: dict[str, deque[Source]] = {}  # each host's sources, hosts in first-use order
    for source in sources:
        source.host = source.host or _host(source.key)
        queues.setdefault(source.host, deque()).append(source)
    silent = dict.fromkeys(queues, 0)  # downloads in a row each host left unanswered
    down: dict[str, str] = {}  # hosts not asked again in this build: why
    counting = threading.Lock()  # two downloads of one host run at once
    finished = [0]

    def attempt(source: Source, host: str) -> Fetched:
        if host not in down and rules.lookups.network_down() and not is_ip_literal(host):
            with counting:
                down.setdefault(host, NO_NETWORK)
        if host in down:
            source.skipped = down[host]
            raise FetchFailed(f"not tried: {down[host]} in this build")
        try:
            fetched = fetch_image(source.key, rules)
        except HostUnreachable as failure:
            with counting:
                down.setdefault(failure.host, str(failure))
            raise
        except Unanswered:
            with counting:
                silent[host] += 1
                if silent[host] >= UNANSWERED_LIMIT:
                    down.setdefault(host, f"it left {UNANSWERED_LIMIT} downloads in a row "
                                          "unanswered")
            raise
        with counting:
            silent[host] = 0
        return fetched

    def fetch(source: Source) -> None:
        try:
            fetched = attempt(source, source.host)
        except HostUnreachable as failure:
            source.problem = str(failure)
            if failure.host == source.host:
                return  # its host is remembered for the day instead (below)
            # a redirect's host: remembered with this URL, which the day's record of that
            # host would not settle (asked again, the next build would look again, and so on)
            record, data = RemoteRecord(source.key, problem=str(failure), rules=rules_text), None
        except FetchFailed as failure:
            source.problem = str(failure)
            if source.skipped:
                return
            record = RemoteRecord(source.key, problem=str(failure), rules=rules_text)
            data = None
        else:
            digest = hashlib.sha256(fetched.data).hexdigest()
            record = RemoteRecord(source.key, digest, fetched.content_type,
                                  size=len(fetched.data), private=fetched.private)
            data = fetched.data
            source.path, source.digest = cache.original(digest), digest
        try:
            cache.save_remote(record, data)
        except OSError as exc:
            source.path, source.problem = None, f"cannot be kept in the cache ({exc})"

    def drain(queue: deque[Source]) -> None:
        """One of a host's PER_HOST lanes: its sources one after another, until none is
        left (a host that is down empties its queue at once)."""
        while True:
            try:
                source = queue.popleft()  # atomic: the host's other lane takes the next
            except IndexError:
                return
            fetch(source)
            with counting:
                finished[0] += 1

    # A task per lane, not per source: a large site has ~140,000 sources, and a task each
    # (and a worker blocked on a busy host's limit) cost seconds before any download.
    with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(sources))) as pool:
        pending = {pool.submit(drain, queue) for queue in queues.values()
                   for _ in range(min(PER_HOST, len(queue)))}
        while pending:
            done, pending = wait(pending, timeout=0.1)
            for future in done:
                future.result()
            if progress:
                progress("Fetching images", finished[0], len(sources))
    for host, problem in down.items():
        cache.remember_host_failure(host, problem, rules_text)


# -- what each source is, and its thumbnails ----------------------------------------------


def describe_sources(
    sources: list[Source],
    settings: ImageSettings,
    cache: ImageCache,
    outcome: Outcome,
    progress: Progress | None,
) -> None:
    """Learn each readable source's facts, making whatever thumbnails the cache lacks."""
    jobs: list[tuple[Source, ImageJob]] = []
    present = cache.thumb_names()
    limits = (settings.max_pixels, settings.max_bytes)
    for source in sources:
        if source.problem or source.path is None:
            continue
        known = still_known(source, settings, cache, limits)
        if isinstance(known, str):
            source.problem, source.remembered = known, is_remote(source.key)
            continue
        source.info = known
        if (
            known is None
            or known.preview_scale != preview_scale(known.size, settings.widths, known.jpeg)
            or any(s.name not in present for s in source.specs(settings))
        ):  # something to make, or a preview from another decode (other widths)
            jobs.append((source, make_job(source, settings, cache)))
    for source, result in zip_results(jobs, progress):
        outcome.decoded += result.decoded
        outcome.made += result.made
        if result.transient:
            outcome.unsettled += 1
        else:
            cache.remember(source.digest, result.info or result.problem, limits)
        source.info, source.problem = result.info, result.problem


def still_known(
    source: Source, settings: ImageSettings, cache: ImageCache, limits: tuple[int, int]
) -> SourceInfo | str | None:
    """What the cache knows of a source's bytes that still holds: a problem met under these
    limits (unless --refetch tries failures again), or facts within max_pixels. None: decode
    it, as a clean build would."""
    known = cache.source(source.digest, limits)
    if isinstance(known, str):
        return None if settings.refetch else known
    if known is not None and known.width * known.height > settings.max_pixels:
        return None  # a lower limit: a clean build refuses it
    return known


def make_job(source: Source, settings: ImageSettings, cache: ImageCache) -> ImageJob:
    from .imaging import ImageJob

    assert source.path is not None
    return ImageJob(
        path=str(source.path),
        digest=source.digest,
        operations=source.operations,
        widths=settings.widths,
        quality=settings.quality,
        max_pixels=settings.max_pixels,
        max_bytes=settings.max_bytes,
        thumbs_dir=str(cache.prepare_thumbs()),
    )


def zip_results(
    jobs: list[tuple[Source, ImageJob]], progress: Progress | None
) -> Iterable[tuple[Source, JobResult]]:
    """Run the jobs (in worker processes when there are several) as results come in."""
    if not jobs:
        return
    from concurrent.futures import ProcessPoolExecutor  # with multiprocessing: 15 ms

    from .imaging import make_thumbnails, prepare_worker

    workers = min(len(jobs), os.cpu_count() or 1)
    executor: Executor = (
        ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=prepare_worker)
        if workers > 1
        else InlineExecutor()
    )
    with executor:
        futures = {executor.submit(make_thumbnails, job): source for source, job in jobs}
        for done, future in enumerate(as_completed(futures), start=1):
            if progress:
                progress("Making thumbnails", done, len(futures))
            yield futures[future], future.result()


def worker_context() -> multiprocessing.context.BaseContext:
    """Forked workers start at once, but forking a process that runs other threads (the dev
    server's) can deadlock a child, so then workers come from a clean fork server."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if sys.platform == "linux" and threading.active_count() == 1 and "fork" in methods:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["broadsheet.imaging"])
        return context
    return multiprocessing.get_context("spawn")


class InlineExecutor(ThreadPoolExecutor):
    """One job, or one core: run in this process (one thread), without starting workers."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)


# -- into the output ----------------------------------------------------------------------


def _published_specs(sources: list[Source], settings: ImageSettings) -> Iterator[ThumbSpec]:
    seen: set[str] = set()
    for source in sources:
        for spec in source.specs(settings):
            if spec.name not in seen:
                seen.add(spec.name)
                yield spec


def write_placeholder_files(book: PictureBook, sink: FileSink) -> None:
    """Write the placeholder files the stage named but left unwritten: thousands of small
    files on a large site, which nothing rendered reads, so a parallel build writes them
    while worker processes render pages (see units.render_units)."""
    _write_placeholders(book.unwritten, sink)
    book.unwritten = ()


def _write_placeholders(shapes: Iterable[Shape], sink: FileSink) -> None:
    for shape in shapes:
        name = placeholder_name(*shape)
        sink.write_named(THUMBS_FOLDER + name, partial(placeholder_data, *shape))


def _placeholder_shapes(grouped: Grouped) -> Iterator[Shape]:
    """The shape of each distinct placeholder file, in first-use order: each use of a
    source that cannot be shown needs one for each operation it asks for."""
    seen: set[int] = set()
    problems = [bool(source.problem) for source in grouped.sources]
    shapes, asks, shape_list = grouped.shapes, grouped.asks, grouped.shape_list
    for use, owner in enumerate(grouped.owners):
        if problems[owner]:
            for slot, ask in enumerate((CARD, OWN)):
                shape = shapes[2 * use + slot]
                if asks[use] & ask and shape not in seen:
                    seen.add(shape)
                    yield shape_list[shape]


_UNREADABLE = SourceView()


def source_view(source: Source) -> SourceView:
    """What pages need to know of a source once the stage has been through it."""
    info = source.info if not source.problem else None
    if info is None:
        return _UNREADABLE
    return SourceView(source.digest, info.width, info.height, info.color, info.preview,
                      source.operations, info.jpeg)


def summarise_placeholders(sources: list[Source], settings: ImageSettings) -> list[Diagnostic]:
    """Placeholders the curator already knows about get one line, not one warning each:
    downloads that failed in an earlier build (named then), images not fetched offline, and
    a host's images not asked for because it could not be reached (one line a host)."""
    where = (settings.cache_dir / "images").as_posix()
    remembered = sum(1 for s in sources if s.problem and s.remembered and not s.skipped)
    offline = sum(1 for s in sources if s.offline)
    lines = []
    if remembered:
        noun = (
            "image is still a placeholder" if remembered == 1 else "images are still placeholders"
        )
        lines.append(
            f"{remembered} {noun}: the download failed in an earlier build, which "
            "named each one; --refetch tries again"
        )
    if offline:
        noun = "remote image is a placeholder" if offline == 1 else "remote images are placeholders"
        lines.append(f"{offline} {noun}: {OFFLINE}")
    lines.extend(_skipped_lines(sources))
    return [Diagnostic(where, 0, "", line, Severity.WARNING, Subject.FOLDER) for line in lines]


def _skipped_lines(sources: list[Source]) -> list[str]:
    """A line for each host whose images were not asked for (in this build, or remembered
    from an earlier one today), and why; hosts not asked because no name resolved at all
    share one line (offline, each of a site's outlets would get one)."""
    if not any(s.skipped for s in sources):
        return []
    from .fetch import NO_NETWORK

    counts: Counter[tuple[str, str, bool]] = Counter()
    offline: dict[bool, set[str]] = {False: set(), True: set()}
    for source in sources:
        if source.skipped:
            host = source.host
            if source.skipped == NO_NETWORK:
                offline[source.remembered].add(host)
                host = ""
            counts[(host, source.skipped, source.remembered)] += 1
    again = "the first build of another day tries again, or --refetch"
    lines = []
    for (host, why, before), count in sorted(counts.items()):
        noun = "image" if count == 1 else "images"
        hosts = len(offline[before])
        origin = host or (f"{hosts} hosts" if hosts != 1 else "1 host")
        if before:
            are = "is a placeholder" if count == 1 else "are placeholders"
            lines.append(f"{count} {noun} from {origin} {are}: {why} in an earlier build "
                         f"today; {again}")
        else:
            lines.append(f"{count} more {noun} from {origin} not tried: {why} in this build; "
                         f"{again}")
    return lines


def failure_warnings(grouped: Grouped, plan: Plan) -> list[Diagnostic]:
    """One warning per source that failed in this build, at its first use. The uses are
    not kept (Grouped), so the stories that use such sources are planned again: a few,
    in a build where something failed."""
    failed = {
        index for index, source in enumerate(grouped.sources)
        if source.problem and not source.remembered and not source.offline
        and not source.skipped
    }
    if not failed:
        return []
    firsts: dict[int, Image] = {}
    owners = grouped.owners
    for (_, start, end, _), (_, uses) in zip(grouped.stories, plan, strict=True):
        if failed.isdisjoint(owners[start:end]):
            continue
        for owner, use in zip(owners[start:end], uses, strict=True):
            first = firsts.get(owner)
            if owner in failed and (first is None or _place(use.image) < _place(first)):
                firsts[owner] = use.image
    return [warn(grouped.sources[index], firsts[index]) for index in sorted(failed)]


def _place(image: Image) -> tuple[str, int, str]:
    return (image.source, image.line, image.field)


def warn(source: Source, first: Image) -> Diagnostic:
    """One warning per source, at its first use; the others are counted (a story gives
    each image once, so each use is another place)."""
    others = source.count - 1
    notes = [f"used {others} more {'time' if others == 1 else 'times'}"] if others else []
    also = f" ({'; '.join(notes)})" if notes else ""
    return Diagnostic(
        first.source,
        first.line,
        f"{first.field}.url",
        f"image not available: {source.problem}; showing a placeholder{also}",
        Severity.WARNING,
    )
