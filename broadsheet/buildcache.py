"""The persistent build cache in `.cache/build/`: parsed stories and what each output read.

One pickle file, written atomically after a successful build (its bulkiest blobs in pack
files beside it, see packs.py). It holds
  - every story file's parsed and validated form (or its diagnostics), keyed by its path and
    fingerprint: size and mtime first, the content's digest to confirm;
  - for every rendered unit (a page, a feed, an email), the files it wrote, its static key
    and the facts it read (see tracking.py);
  - the manifest of the output folder it left, and a signature of every input, so a build
    where nothing changed can stop after a few thousand stat() calls.
Stories and units are pickled in parts (PARTS), so that a rebuild which changed a few of
them writes the others' bytes back as it read them.

The cache is an optimisation only. A cache that is missing, from another Broadsheet or
Python version, truncated or corrupt is ignored with a note and rebuilt; it never fails a
build and is never trusted past its fingerprints.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
import time
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from .diagnostics import Diagnostic
from .model import Article, head_of, is_lazy, lazy_article, related_slugs, split_article
from .packs import INLINE_MAX, BlobRef, PackDamaged, Packs, PackWriter, read_blob
from .thumbnails import uses_digest
from .tracking import Derived, Facts, parts_digest

if TYPE_CHECKING:
    from .images import StageMemo

FORMAT = 1
CACHE_FILE = "state.pickle"
_LIBRARIES = ("pyyaml", "markdown-it-py", "jinja2", "feedgen", "pillow", "nh3", "css-inline",
              "python-slugify", "markupsafe", "lxml", "mdit-py-plugins", "pagefind")


@lru_cache(maxsize=1)
def engine_key() -> str:
    """What Broadsheet itself is: its source code, its libraries' versions and Python's.

    A new release, a local edit of Broadsheet or an upgraded Jinja invalidates everything."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{FORMAT} {sys.version}".encode())
    package = Path(__file__).parent
    for path in sorted(package.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for installed in _installed(_LIBRARIES):
        digest.update(f"{installed};".encode())
    return digest.hexdigest()


def _installed(names: tuple[str, ...]) -> list[str]:
    """`name-version` of each library, from the names of the `.dist-info` folders on
    sys.path (importlib.metadata would cost more than the whole nothing-changed build)."""
    wanted = {re.sub(r"[-_.]+", "_", n).lower() for n in names}
    found: set[str] = set()
    for folder in sys.path:
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".dist-info"):
                name, _, version = entry[: -len(".dist-info")].partition("-")
                if re.sub(r"[-_.]+", "_", name).lower() in wanted:
                    found.add(f"{folder}/{name}-{version}")
    return sorted(found)


class StoryEntry:
    """One story file as the last build read it.

    The parsed Article travels as its head (a dict of its fields, with the diagnostics) and
    three pickled blobs (model.split_article): its tail, its coverage keys and its related
    items' first images, read only when a page, linking or a full image stage needs them
    (kept in packs by the cache). The heads are pickled inline with the cache's parts, not
    as blobs of their own: every build reads every head, and one unpickler for a part's
    few hundred shares what they repeat (an outlet, a topic) and takes half the time of
    one per head. The Article is made from its head when first read, and the head let go;
    pickling the entry again takes it back from the Article.
    A rebuild writes the cache again with the parts it loaded, not re-pickling thousands of
    unchanged stories, and a parsing worker's result crosses to the parent in the same
    form. How assembly last linked the story to others (its related items' story slugs) is
    kept beside the blobs, so linking changes none of them."""

    __slots__ = ("_coverage", "_head", "_images", "_parsed", "_tail", "digest", "fingerprint",
                 "links", "mtime_ns", "read_key", "size", "uses")

    def __init__(
        self,
        size: int,
        mtime_ns: int,
        digest: str,  # of the file's bytes
        read_key: str,  # engine and the config slice validation reads
        article: Article | None,
        diagnostics: list[Diagnostic],
    ) -> None:
        self.size, self.mtime_ns, self.digest, self.read_key = size, mtime_ns, digest, read_key
        self.uses = uses_digest(article) if article is not None else ""  # its images in use
        self.links: tuple[str | None, ...] | None = None  # None: as the head has them
        # the derived fields and fingerprint the last build gave its story (tracking.
        # Fingerprints.article): all the rest of it is a function of this entry
        self.fingerprint: Derived | None = None
        self._parsed: tuple[Article | None, list[Diagnostic]] | None = (article, diagnostics)
        self._head: Head | None = None  # the story's head and diagnostics, as unpickled
        self._tail: bytes | BlobRef = b""  # its tail, pickled apart (model.split_article)
        self._images: bytes | BlobRef = b""  # its related items' first images, pickled
        self._coverage: bytes | BlobRef = b""  # its coverage keys, pickled

    @property
    def article(self) -> Article | None:
        return self._content()[0]

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self._content()[1]

    def _content(self) -> tuple[Article | None, list[Diagnostic]]:
        if self._parsed is None:
            assert self._head is not None
            head, diagnostics = self._head
            if head is not None and self.links is not None:
                head["_slugs"] = self.links  # applied to the related items when loaded
            article = (lazy_article(head, self._tail, self._images, self._coverage)
                       if head is not None else None)
            self._parsed = (article, diagnostics)
            self._head = None  # the article holds it now
        return self._parsed

    def same_content(self, size: int, mtime_ns: int) -> StoryEntry:
        """This entry for the same bytes found with another size or mtime (a touched file)."""
        return self._copy(size, mtime_ns, self.links, self._content())

    def relinked(self, article: Article) -> StoryEntry:
        """This entry holding its story as assembly linked it to other stories, so that the
        next build need not link (copy) it again."""
        return self._copy(self.size, self.mtime_ns, related_slugs(article),
                          (article, self.diagnostics))

    def _copy(
        self,
        size: int,
        mtime_ns: int,
        links: tuple[str | None, ...] | None,
        parsed: tuple[Article | None, list[Diagnostic]],
    ) -> StoryEntry:
        entry = StoryEntry.__new__(StoryEntry)
        entry.size, entry.mtime_ns, entry.digest = size, mtime_ns, self.digest
        entry.read_key, entry.uses, entry.links = self.read_key, self.uses, links
        entry.fingerprint = self.fingerprint
        entry._tail, entry._images = self._tail, self._images
        entry._coverage = self._coverage
        entry._head, entry._parsed = None, parsed
        return entry

    def remembering(self, fingerprint: Derived) -> StoryEntry:
        """This entry with its story's new fingerprint (a copy: the cache pickles again
        the parts whose entries are not the very ones it loaded)."""
        entry = self._copy(self.size, self.mtime_ns, self.links, self._content())
        entry.fingerprint = fingerprint
        return entry

    def _split(self) -> None:
        """Pickle the tail, the related items' first images and the coverage keys of a
        story made by its constructor (parsed by this process) apart from its head (see
        model.lazy_article): a rebuild unpickles only the heads of the stories it does not
        show, and never copies their tails. A story from the cache has them already."""
        if self._parsed is None:
            return
        article = self._parsed[0]
        if article is not None and not is_lazy(article):
            _, self._tail, self._images, self._coverage = split_article(article)
            self._parsed = (lazy_article(head_of(article), self._tail, self._images,
                                         self._coverage), self._parsed[1])

    def spill(self, writer: PackWriter) -> None:
        """Make the Article of a story that arrived pickled (every build reads its head),
        and move its tail, its related items' first images and its coverage keys into
        `writer`'s pack until something reads them. At 10,000 stories that is 200 MB the
        build process would hold until the save, and a forked render worker hold again."""
        if self._head is None:
            return
        for name in ("_tail", "_images", "_coverage"):
            setattr(self, name, _spilled(getattr(self, name), writer))
        self._content()  # the story now holds references to those, not their bytes

    def blobs(self) -> tuple[bytes | BlobRef, bytes | BlobRef, bytes | BlobRef]:
        self._split()
        return self._tail, self._images, self._coverage

    def __getstate__(self) -> tuple[Any, ...]:
        self._split()
        head = self._head
        if head is None:
            assert self._parsed is not None
            article, diagnostics = self._parsed
            head = (_shared_head(head_of(article)) if article is not None else None,
                    diagnostics)
        return (self.size, self.mtime_ns, self.digest, self.read_key, self.uses, self.links,
                self.fingerprint, head, self._tail, self._images, self._coverage)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (self.size, self.mtime_ns, self.digest, self.read_key, self.uses, self.links,
         self.fingerprint, self._head, self._tail, self._images, self._coverage) = state
        self._parsed = None

    def parsed(self, shown: str) -> str:
        """What the story's fingerprint builds on: its path (the slug and every diagnostic
        come from it), its bytes and how they were read."""
        return f"{shown}|{self.digest}|{self.read_key}"


Head = tuple["dict[str, Any] | None", list[Diagnostic]]
_SHARED: dict[Any, Any] = {}  # one of each outlet and topic reference, for pickling


def _shared_head(head: dict[str, Any]) -> dict[str, Any]:
    """The head with equal outlets and topic references as one object each: pickled
    together in a part, each is then written (and unpickled) once, not once per story."""
    shared = _SHARED
    if len(shared) > 100_000:  # a long-running server seeing ever new outlets
        shared.clear()
    provider = head["provider"]
    head["provider"] = shared.setdefault(provider, provider)
    head["topics"] = tuple(shared.setdefault(topic, topic) for topic in head["topics"])
    return head


class UnitRecord:
    """One rendered unit: the output files it wrote, its static key and the facts it read.

    What deciding needs of every unit (files, key, shared facts, root fingerprints, the
    stories whose pictures it shows) is pickled inline with the cache, where one unpickler
    shares the values many records hold (each in a blob of its own, unpickling them took
    ten times as long). The facts themselves are a blob of their own, kept from the load: a
    rebuild writes the thousands it did not render back without pickling them again, and
    unpickles them only for a unit where a root or a story changed (see units.Decider)."""

    __slots__ = ("_facts", "_facts_blob", "files", "key", "loose", "roots", "shared",
                 "shared_key", "stories")

    def __init__(
        self,
        files: tuple[str, ...],
        key: dict[str, Any],
        facts: Facts,
        by_story: dict[str, Facts] | None = None,  # picture facts, by the image's story
        shared: tuple[tuple[Any, Any], ...] = (),  # read from `site` and the theme (units.py)
        roots: dict[str, Any] | None = None,  # fingerprint of each root but `site`
    ) -> None:
        self.files, self.key, self.shared = files, key, shared
        # Names the shared facts for the Decider, which checks each distinct set once: a
        # digest is quicker to look up than the tuple, which it would hash for every unit.
        self.shared_key = parts_digest(shared)
        self.roots = roots or {}
        self.stories = tuple(by_story or ())
        self.loose = any(path[0] not in self.roots for path in facts)  # not from a root
        self._facts: tuple[Facts, dict[str, Facts]] | None = (facts, by_story or {})
        self._facts_blob: bytes | BlobRef | None = None

    @property
    def facts(self) -> Facts:
        return self._content()[0]

    @property
    def by_story(self) -> dict[str, Facts]:
        return self._content()[1]

    def _content(self) -> tuple[Facts, dict[str, Facts]]:
        if self._facts is None:
            assert self._facts_blob is not None
            self._facts = pickle.loads(read_blob(self._facts_blob))
        return self._facts

    def facts_blob(self) -> bytes | BlobRef:
        if self._facts_blob is None:
            self._facts_blob = pickle.dumps(self._content(), protocol=pickle.HIGHEST_PROTOCOL)
        return self._facts_blob

    def pickle_facts(self) -> UnitRecord:
        """Hold the facts pickled only (a fifth of the memory; the cache and a worker's
        answer pickle them anyway): a build keeps every unit's record until it ends."""
        self.facts_blob()
        self._facts = None
        return self

    def spill(self, writer: PackWriter) -> None:
        """Move the pickled facts into `writer`'s pack: a build keeps every unit's record
        until the save (at 10,000 stories 65 MB of facts, most of them from a worker)."""
        if self._facts is None and self._facts_blob is not None:
            self._facts_blob = _spilled(self._facts_blob, writer)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_unit_record, (self.files, self.key, self.shared, self.shared_key, self.roots,
                               self.stories, self.loose, self.facts_blob()))


def _unit_record(
    files: tuple[str, ...], key: dict[str, Any], shared: tuple[tuple[Any, Any], ...],
    shared_key: bytes | None, roots: dict[str, Any], stories: tuple[str, ...], loose: bool,
    facts_blob: bytes | BlobRef,
) -> UnitRecord:
    record = UnitRecord.__new__(UnitRecord)
    record.files, record.key, record.shared, record.shared_key = files, key, shared, shared_key
    record.roots, record.stories, record.loose = roots, stories, loose
    record._facts_blob, record._facts = facts_blob, None
    return record


def _spilled(blob: bytes | BlobRef, writer: PackWriter) -> bytes | BlobRef:
    """The blob in `writer`'s pack, or as it was when small (or when it cannot be written)."""
    return (writer.add(blob) or blob) if _packable(blob) else blob


def _packable(blob: object) -> TypeGuard[bytes]:
    """Bytes to keep in a pack rather than inline in the cache file."""
    return type(blob) is bytes and len(blob) > INLINE_MAX


SharedFacts = dict[bytes, tuple[tuple[Any, Any], ...]]  # by UnitRecord.shared_key


def share_facts(records: dict[str, UnitRecord], seen: SharedFacts | None = None) -> None:
    """Let records with equal shared facts hold one tuple of them (or the one in `seen`), so
    the cache pickles it once (most pages of a template read the same facts of `site` and
    the theme) and a build holds it once."""
    seen = {} if seen is None else seen
    for record in records.values():
        if record.shared_key is not None:
            record.shared = seen.setdefault(record.shared_key, record.shared)


@dataclass
class CacheState:
    engine: str
    stories: dict[str, StoryEntry] = field(default_factory=dict)  # by path relative to root
    units: dict[str, UnitRecord] = field(default_factory=dict)  # by unit id
    manifest: frozenset[str] = frozenset()  # every file the last build put in output/
    output_id: tuple[int, int, int] | None = None  # (st_dev, st_ino, st_mtime_ns) of output/
    signature: str = ""  # of every input of the last build, for the nothing-changed exit
    warnings: list[Diagnostic] = field(default_factory=list)  # that build's warnings
    summary: dict[str, int] = field(default_factory=dict)  # its counts, for the report
    pictures: dict[str, str] = field(default_factory=dict)  # images.story_digests
    images: StageMemo | None = None  # what the image stage did, to replay
    # what coverage linking found (assemble.LinkMemo): story URL keys -> slugs, and by
    # story file, (the digest it was found for, its related items' slugs)
    links: tuple[dict[str, str], dict[str, tuple[str, tuple[str | None, ...]]]] = ({}, {})


_IN_MEMORY: dict[Path, CacheState] = {}  # states this process saved, by cache file


class BuildCache:
    """Loads and saves the cache of one site; `note` says why an old one was not used.

    A long-running process (the dev server) keeps the last state in memory too: its next
    build starts from that object instead of reading and unpickling the file, and with
    `persist=False` the file is written only by `flush()` (when the server stops)."""

    def __init__(self, folder: Path, persist: bool = True) -> None:
        self.folder = folder
        self.path = folder / CACHE_FILE
        self.persist = persist
        self.note = ""
        self._parts: dict[str, list[_Part]] = {}  # as loaded: "stories", "units"
        self._extras: dict[str, tuple[Any, bytes]] = {}  # as loaded: EXTRAS, with their bytes

    def load(self, head_only: bool = False) -> CacheState:
        """The last build's state, or an empty one (with a note when one was refused).

        The file holds three pickles: a small head (what the nothing-changed exit needs),
        the stories' parts, then the units' parts and the rest; `head_only` stops after the
        first."""
        fresh = CacheState(engine_key())
        remembered = _IN_MEMORY.get(self.path)
        if remembered is not None:
            return remembered
        packs = Packs(self.folder)
        try:
            with open(self.path, "rb") as handle, packs.loading():
                unpickler = pickle.Unpickler(handle)
                head = unpickler.load()
                if not isinstance(head, dict) or head.get("engine") != fresh.engine:
                    self.note = "the build cache is from another Broadsheet version; rebuilt"
                    return fresh
                state = CacheState(**head)
                if not head_only:
                    stories = unpickler.load()
                    units, extras = unpickler.load()
                    values = []
                    for name, blob in zip(EXTRAS, extras, strict=True):
                        values.append(pickle.loads(blob))
                        self._extras[name] = (values[-1], blob)
                    state.manifest, state.pictures, state.images, *links = values
                    state.links = (links[0], links[1])
                    state.stories = self._unpickle_parts("stories", stories)
                    state.units = self._unpickle_parts("units", units)
                    _check_types(state)
                    packs.check()
        except FileNotFoundError:
            return fresh
        except Exception as exc:  # truncated, corrupt, unpicklable: never fatal
            self.note = f"the build cache could not be read ({type(exc).__name__}); rebuilt"
            self._parts.clear()  # nothing of a refused cache is kept for the save
            self._extras.clear()
            return fresh
        return state

    def save(self, state: CacheState) -> None:
        """Write atomically: a crash leaves the old cache or the new one, never half."""
        if not self.persist:
            _IN_MEMORY[self.path] = state
            return
        _IN_MEMORY.pop(self.path, None)
        self._write(state)

    def flush(self) -> None:
        """Write the state kept in memory to the file (a server stopping)."""
        state = _IN_MEMORY.pop(self.path, None)
        if state is not None:
            self._write(state)

    def _write(self, state: CacheState) -> None:
        head = {
            "engine": state.engine,
            "output_id": state.output_id,
            "signature": state.signature,
            "warnings": state.warnings,
            "summary": state.summary,
        }
        packs = Packs(self.folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            refs, moved = _pack_blobs(state, packs)
            if moved:  # pickled parts name the blobs where they were
                self._parts.clear()
            stories = self._pickle_parts("stories", state.stories)
            units = self._pickle_parts("units", state.units)
            temporary = self.path.with_name(f".{CACHE_FILE}.{os.getpid()}")
            with open(temporary, "wb") as handle:
                pickler = pickle.Pickler(handle, protocol=pickle.HIGHEST_PROTOCOL)
                for part in (head, stories, (units, self._pickle_extras(state))):
                    pickler.dump(part)
            os.replace(temporary, self.path)
            packs.remove_unused(refs)
        except OSError as exc:
            self.note = f"the build cache could not be saved: {exc.strerror or exc}"
        except PackDamaged as exc:  # a pack went away under this save (another process)
            self.note = f"the build cache could not be saved: {exc}"

    def _pickle_extras(self, state: CacheState) -> list[bytes]:
        """The output manifest, pictures, image memo and the two halves of the coverage
        links, each pickled apart: one equal to what was loaded keeps its bytes (an edit
        changes what linking found for its story, rarely the map from URLs to stories).

        A build makes new dicts of these, never changing the loaded ones (which it only
        reads); the very dict loaded is pickled again all the same, in case it was changed.
        The manifest and the image memo are frozen: the same object is the same value."""
        blobs = []
        values = (state.manifest, state.pictures, state.images, *state.links)
        for name, value in zip(EXTRAS, values, strict=True):
            loaded = self._extras.get(name)
            if loaded is not None and type(loaded[0]) is type(value) and (
                    value == loaded[0] if value is not loaded[0] else _frozen(value)):
                blobs.append(loaded[1])
            else:
                blobs.append(_pickle_extra(name, value))
        return blobs

    def _unpickle_parts(self, kind: str, blobs: Any) -> dict[str, Any]:
        if not isinstance(blobs, list) or len(blobs) != PARTS:
            raise TypeError(f"unexpected build cache {kind}")
        found: dict[str, Any] = {}
        parts = []
        for blob in blobs:
            items = pickle.loads(blob)
            parts.append(_Part(blob, items))
            found.update(items)
        self._parts[kind] = parts
        return found

    def _pickle_parts(self, kind: str, entries: dict[str, Any]) -> list[bytes]:
        """`entries` pickled in PARTS parts by name; a part whose entries are all the very
        objects loaded (the stories and pages a rebuild did not touch) keeps its bytes."""
        grouped: list[list[tuple[str, Any]]] = [[] for _ in range(PARTS)]
        for name in sorted(entries):
            grouped[_part_of(name)].append((name, entries[name]))
        loaded: list[_Part | None] = [*self._parts.get(kind, [None] * PARTS)]
        return [
            before.blob if before is not None and before.holds(items)
            else _pickle_part(items)
            for items, before in zip(grouped, loaded, strict=True)
        ]

    def forget(self) -> None:
        """Drop the cache before the output changes, so a crash mid-way cannot leave a cache
        that describes an output folder it no longer matches."""
        _IN_MEMORY.pop(self.path, None)
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            self.note = f"the build cache could not be removed: {exc.strerror or exc}"


EXTRAS = ("manifest", "pictures", "images", "slug_by_url", "found")  # pickled apart


def _pickle_extra(name: str, value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _frozen(value: object) -> bool:
    from .images import StageMemo  # a save comes after the stages are imported

    return type(value) is frozenset or type(value) is StageMemo

# The stories and the unit records are pickled in this many parts (by a hash of the name):
# a rebuild pickles again only the parts where something changed.
PARTS = 32


def _part_of(name: str) -> int:
    return zlib.crc32(name.encode("utf-8", "surrogatepass")) % PARTS


def _pickle_part(items: list[tuple[str, Any]]) -> bytes:
    return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)


class _Part:
    """One part as loaded: its bytes, and the (name, entry) pairs they gave."""

    __slots__ = ("blob", "items")

    def __init__(self, blob: bytes, items: list[tuple[str, Any]]) -> None:
        self.blob, self.items = blob, items

    def holds(self, items: list[tuple[str, Any]]) -> bool:
        """Whether `items` are these very entries (not equal ones: the same objects, which
        nothing changed since they were unpickled from these bytes)."""
        return len(items) == len(self.items) and all(
            name == before_name and entry is before
            for (name, entry), (before_name, before) in zip(items, self.items, strict=True))


def _pack_blobs(state: CacheState, packs: Packs) -> tuple[list[BlobRef], bool]:
    """Move the stories' tails and the units' facts that are still bytes (new since the
    last save) into a new pack, compact the packs when they hold too much dead weight, and
    return every reference the state now holds, and whether compacting moved any."""
    found: dict[int, BlobRef] = {}  # every reference, once (holders share some)
    new: list[tuple[StoryEntry | UnitRecord, str, bytes]] = []
    for entry in state.stories.values():
        for name, blob in zip(("_tail", "_images", "_coverage"), entry.blobs(), strict=True):
            if type(blob) is BlobRef:
                found[id(blob)] = blob
            elif _packable(blob):
                new.append((entry, name, blob))
    for record in state.units.values():
        blob = record.facts_blob()
        if type(blob) is BlobRef:
            found[id(blob)] = blob
        elif _packable(blob):
            new.append((record, "_facts_blob", blob))
    for (holder, name, _), ref in zip(new, packs.store([b for _, _, b in new]), strict=True):
        setattr(holder, name, ref)
        found[id(ref)] = ref
    refs = list(found.values())
    return refs, packs.compact(refs)


def _check_types(state: CacheState) -> None:
    """A cache of the right version but the wrong shape is as bad as a corrupt one."""
    from .images import StageMemo  # only a full load gets here: the stages are imported

    if not (isinstance(state.stories, dict) and isinstance(state.units, dict)
            and isinstance(state.manifest, frozenset) and isinstance(state.pictures, dict)
            and (state.images is None or isinstance(state.images, StageMemo))
            and isinstance(state.links, tuple) and len(state.links) == 2
            and all(isinstance(part, dict) for part in state.links)):
        raise TypeError("unexpected build cache contents")


# -- the signature of every input, for the nothing-changed exit ---------------------------

RACY_NS = 2_000_000_000  # a file changed this recently may change again within one mtime tick


@dataclass(frozen=True)
class Signature:
    value: str
    racy: bool  # some input changed too recently for its mtime to be trusted next time


def input_signature(
    config_text: str, options_text: str, folders: list[Path], skip: list[Path]
) -> Signature:
    """A digest of the names, sizes and mtimes of every file under `folders` (the site
    folder, the theme's), with Broadsheet, the config and the options.

    Equal signatures mean no input changed, so the build can stop after these stat() calls.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{engine_key()}\0{config_text}\0{options_text}\0".encode())
    now = time.time_ns()
    racy = False
    skipped = {str(path) for path in skip}
    walk = _Walk(skipped, [os.path.realpath(folder) for folder in folders])
    for folder in folders:
        for path, size, mtime in walk(str(folder)):
            digest.update(f"{path}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
            racy = racy or now - mtime < RACY_NS
    return Signature(digest.hexdigest(), racy)


def with_file(signature: Signature, path: Path) -> Signature:
    """The signature with one more file that only builds write (the image cache's index):
    its stat is taken when the build ends, as that build left it."""
    try:
        stat = path.stat()
        seen = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        seen = "-"
    value = hashlib.blake2b(f"{signature.value}|{path}|{seen}".encode(), digest_size=16)
    return Signature(value.hexdigest(), signature.racy)


class _Walk:
    """Every file under a folder (hidden ones and `skipped` folders left out), sorted.

    A folder reached through a symlink is walked once, and only when it is inside one of
    the walked folders (`tops`): two `ln -s .` links made the walk endless, and a link to a
    large folder elsewhere (a photo library, /tmp) made every build read all of it, though
    no story or image is ever read from there."""

    def __init__(self, skipped: set[str], tops: list[str]) -> None:
        self.skipped = skipped
        self.tops = [top.rstrip(os.sep) + os.sep for top in tops]
        self.seen: set[tuple[int, int]] = set()  # (device, inode) of each folder walked
        for top in tops:
            try:
                stat = os.stat(top)
            except OSError:
                continue
            self.seen.add((stat.st_dev, stat.st_ino))

    def __call__(self, folder: str) -> list[tuple[str, int, int]]:
        found: list[tuple[str, int, int]] = []
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return found
        for entry in entries:
            if entry.name.startswith(".") or entry.path in self.skipped:
                continue
            try:
                if entry.is_dir():
                    if self._enter(entry):
                        found.extend(self(entry.path))
                else:
                    stat = entry.stat()
                    found.append((entry.path, stat.st_size, stat.st_mtime_ns))
            except OSError:
                continue
        return found

    def _enter(self, entry: os.DirEntry[str]) -> bool:
        if entry.is_symlink():
            target = os.path.realpath(entry.path) + os.sep
            if not any(target.startswith(top) for top in self.tops):
                return False
        stat = entry.stat()
        key = (stat.st_dev, stat.st_ino)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True
