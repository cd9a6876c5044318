"""Pack files: the bulky parts of the build cache, kept beside it and read only when needed.

Most of the cache's bytes are stories' tails (related coverage, body) and the facts of
rendered units, and a rebuild reads almost none of them. Kept inside the cache file they
were read and written whole by every build (a quarter of a gigabyte at 10,000 stories).
Here they go into immutable pack files in the cache folder: a save writes only the blobs
that are new since the last one (into a new pack), the cache file holds references (the
pack's name and a place in it), and a blob is read with one pread() when something asks for it.
A build that parses many stories also writes their blobs to a pack while it reads them
(`PackWriter`), so that it need not hold them until the save.

Packs are never changed once written, so a reference stays good for as long as its pack
exists; a save deletes the packs the new cache no longer refers to, and rewrites the live
blobs into one pack when more than half of the packs' bytes are dead (or when there are
more than a few packs). A missing or short
pack makes the whole cache untrusted (`check`), like any other damage.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PREFIX, SUFFIX = "pack-", ".bin"
INLINE_MAX = 256  # smaller blobs stay inside the cache file
COMPACT_SLACK = 16 * 2**20  # dead bytes tolerated before live blobs are rewritten
MAX_PACKS = 8  # more packs than this are rewritten as one


class PackDamaged(Exception):
    """A pack is missing or shorter than a reference into it."""


class BlobRef:
    """Bytes in a pack file, read on demand (`read`). Shared by every holder of the same
    blob, so rewriting a pack moves them all by updating this one object."""

    __slots__ = ("length", "offset", "path")

    def __init__(self, path: str, offset: int, length: int) -> None:
        self.path, self.offset, self.length = path, offset, length

    def __reduce__(self) -> tuple[Any, tuple[str, int, int]]:
        """Pickled as its pack's path and the place in it. Unpickled while a cache loads
        (`Packs.loading`), it is bound to that cache's folder by the pack's name (a site
        folder may have moved); elsewhere (a worker process) it keeps its path."""
        return (_loaded_ref, (self.path, self.offset, self.length))

    def read(self) -> bytes:
        try:  # os.open, not open(): no buffered file object for one pread (a fifth the time)
            fd = os.open(self.path, os.O_RDONLY)
            try:
                data = os.pread(fd, self.length, self.offset)
            finally:
                os.close(fd)
        except OSError as exc:
            raise PackDamaged(f"{self.path} cannot be read: {exc.strerror or exc}") from None
        if len(data) != self.length:
            raise PackDamaged(f"{self.path} is shorter than the build cache expects")
        return data


_LOADING: list[Packs] = []  # the folder whose cache is being unpickled (Packs.loading)


def _loaded_ref(path: str, offset: int, length: int) -> BlobRef:
    if not _LOADING:
        return BlobRef(path, offset, length)
    return _LOADING[-1].bind_path(path, offset, length)


def read_blob(blob: bytes | BlobRef) -> bytes:
    return blob if isinstance(blob, bytes) else blob.read()


class Packs:
    """The packs of one cache folder, as one load or save sees them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._needed: dict[str, int] = {}  # pack name -> end of the furthest reference
        self._bound: dict[Any, str] = {}  # pack name -> its path in this folder
        self._names: dict[str, str] = {}  # a saved reference's path -> its pack's name

    # -- loading: references come back bound to this folder --------------------------

    @contextmanager
    def loading(self) -> Iterator[Packs]:
        """Unpickle a cache inside this block: its references are bound to this folder."""
        _LOADING.append(self)
        try:
            yield self
        finally:
            _LOADING.pop()

    def bind_path(self, path: str, offset: Any, length: Any) -> BlobRef:
        """`bind` for a reference saved with its pack's path (the name is its last part).
        Forty thousand calls a load: the common case (a path seen before, a reference
        within what was already needed of its pack) is a few lookups."""
        name = self._names.get(path)
        if name is not None and type(offset) is int and type(length) is int:
            bound = self._bound[name]
            if offset + length > self._needed.get(name, 0):
                self._needed[name] = offset + length
            return BlobRef(bound, offset, length)
        name = os.path.basename(path)
        ref = self.bind(name, offset, length)
        self._names[path] = name  # only once bound: a bad name fails every time
        return ref

    def bind(self, name: Any, offset: Any, length: Any) -> BlobRef:
        """A reference into this folder's pack `name` (tens of thousands per load, into a
        few packs: each pack's name is checked and its path made once)."""
        path = self._bound.get(name)
        if path is None:
            if not (isinstance(name, str) and name.startswith(PREFIX) and "/" not in name):
                raise PackDamaged(f"unexpected pack reference {name!r}")
            path = self._bound[name] = os.path.join(self.folder, name)
        end = offset + length
        if end > self._needed.get(name, 0):
            self._needed[name] = end
        return BlobRef(path, offset, length)

    def check(self) -> None:
        """Every pack the loaded cache refers to exists and is long enough."""
        for name, needed in self._needed.items():
            try:
                size = os.stat(self.folder / name).st_size
            except OSError:
                raise PackDamaged(f"{name} is missing") from None
            if size < needed:
                raise PackDamaged(f"{name} is truncated")

    # -- saving -----------------------------------------------------------------------

    def store(self, blobs: list[bytes]) -> list[BlobRef]:
        """Write `blobs` into a new pack; their references, in order."""
        if not blobs:
            return []
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{PREFIX}{secrets.token_hex(6)}{SUFFIX}"
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        refs = []
        offset = 0
        with open(temporary, "wb") as handle:
            for blob in blobs:
                handle.write(blob)
                refs.append(BlobRef(str(path), offset, len(blob)))
                offset += len(blob)
        os.replace(temporary, path)
        return refs

    def compact(self, refs: list[BlobRef]) -> bool:
        """Keep the packs few and mostly alive (references are updated in place); whether
        any moved.

        Each save adds a small pack of what changed; past MAX_PACKS, all but the largest
        pack are merged into one (cheap: they are the recent, small ones). When more bytes
        are dead than alive (and more than COMPACT_SLACK), every live blob is rewritten."""
        paths = self.paths()
        sizes = {str(path): _size(path) for path in paths}
        live = sum(ref.length for ref in refs)
        if sum(sizes.values()) - live > max(live, COMPACT_SLACK):
            self._rewrite(refs)
            return True
        if len(paths) > MAX_PACKS:
            largest = max(sizes, key=lambda path: sizes[path])
            self._rewrite([ref for ref in refs if ref.path != largest])
            return True
        return False

    def _rewrite(self, refs: list[BlobRef]) -> None:
        ordered = sorted(refs, key=lambda r: (r.path, r.offset))
        fresh = self.store([ref.read() for ref in ordered])
        for ref, moved in zip(ordered, fresh, strict=True):
            ref.path, ref.offset = moved.path, moved.offset

    def remove_unused(self, refs: Iterable[BlobRef]) -> None:
        """Delete the packs (and leftovers of interrupted writes) no reference needs."""
        used = {ref.path for ref in refs}
        for path in self.paths(leftovers=True):
            if str(path) not in used:
                with contextlib.suppress(OSError):
                    path.unlink()

    def paths(self, leftovers: bool = False) -> list[Path]:
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        return [
            self.folder / name
            for name in names
            if (name.startswith(PREFIX) and name.endswith(SUFFIX))
            or (leftovers and name.startswith(f".{PREFIX}"))
        ]


class PackWriter:
    """A new pack written blob by blob, while a build runs: the blobs of the stories it
    parses in worker processes and the facts of the units it renders go to disk as they
    arrive, so the build process does not hold them until the save (at 10,000 stories,
    185 MB of stories, which a forked render worker would also hold, and 65 MB of facts).
    Its references can be read once it is flushed (a build flushes it after reading, for
    rendering to read tails, and again before the save). A build that fails discards it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"{PREFIX}{secrets.token_hex(6)}{SUFFIX}"
        self._handle: Any = None
        self._offset = 0
        self._failed = False

    def add(self, blob: bytes) -> BlobRef | None:
        """The blob written; None when it cannot be (it then stays where it was)."""
        if self._failed:
            return None
        try:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = open(self.path, "wb")  # noqa: SIM115 (closed by close())
            self._handle.write(blob)
        except OSError:
            self._failed = True
            return None
        ref = BlobRef(str(self.path), self._offset, len(blob))
        self._offset += len(blob)
        return ref

    def flush(self) -> None:
        """Make every blob added so far readable through its reference (which reads the
        file). If that fails, those references read short: packs.PackDamaged, like any
        damaged pack."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        """Closed on success; discarded when the block failed (the build that wrote it)."""
        if kind is None:
            self.close()
        else:
            self.discard()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
