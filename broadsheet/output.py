"""The one write sink: every output byte goes into a staging folder, swapped in on success.

A failed build therefore never touches the previous `output/`, and files that earlier builds
wrote but this one did not are gone after the swap. A file whose bytes did not change is
hard-linked from the previous output instead of rewritten, so its mtime stays put (rsync and
the dev server's caches see only what really changed).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from types import TracebackType

Named = bytes | Callable[[], bytes]  # a content-named file's bytes, or how to make them


class OutputError(Exception):
    """The output folder cannot be prepared or swapped (permissions, a busy folder...)."""


class _StagedWriter:
    """What both writers share: files go into a folder next to `output/` first, each output
    name is claimed once, and the block commits when it ends normally, else aborts."""

    def __init__(self, output_dir: Path, staging_suffix: str) -> None:
        self.output = output_dir
        self.staging = output_dir.parent / f".{output_dir.name}.{staging_suffix}"
        self.written: set[str] = set()
        self.unchanged = 0
        self._folders: set[Path] = set()  # made in staging already

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        _remove(self.staging)

    def _claim(self, name: str) -> None:
        if _outside(name):
            raise OutputError(f"refusing to write outside the output folder: {name!r}")
        if name in self.written:
            raise OutputError(f"two pages would be written to {name}")
        self.written.add(name)

    def _staged(self, name: str) -> Path:
        """Where `name` goes in the staging folder (its folders made)."""
        target = self.staging.joinpath(*PurePosixPath(name).parts)
        if target.parent not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(target.parent)
        return target


class OutputWriter(_StagedWriter):
    """Builds the whole site in a staging folder and swaps it in for `output/` on success."""

    def __init__(self, output_dir: Path) -> None:
        super().__init__(output_dir, "staging")
        self.retired = output_dir.parent / f".{output_dir.name}.old"

    def __enter__(self) -> OutputWriter:
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            _remove(self.staging)
            _remove(self.retired)
            self.staging.mkdir()
        except OSError as exc:
            raise OutputError(f"cannot prepare {self.staging}: {exc.strerror or exc}") from exc
        return self

    def write(self, name: str, data: bytes) -> bool:
        """Write one output file, `name` relative to the output folder (POSIX form); True
        when the previous output had the same bytes."""
        target = self._target(name)
        previous = self.output / name
        if _same_bytes(previous, data):
            try:
                os.link(previous, target)
                self.unchanged += 1
                return True
            except OSError:
                pass  # another filesystem or no hard links: write a copy
        target.write_bytes(data)
        return False

    def adopt(self, name: str, same: bool) -> None:
        """A file a worker process wrote into the staging folder through its copy of this
        writer: account for it here as if written here."""
        self._claim(name)
        self.unchanged += same

    def write_named(self, name: str, data: Named) -> None:
        """A file named by a hash of its bytes: the previous output's file of that name is
        the same file, so it is linked without being read (or its bytes made)."""
        target = self._target(name)
        previous = self.output / name
        if previous.is_file():
            try:
                os.link(previous, target)
                self.unchanged += 1
                return
            except OSError:
                pass
        target.write_bytes(data if isinstance(data, bytes) else data())

    def keep(self, name: str) -> None:
        """Carry a file over from the previous output unchanged (its unit was not rendered)."""
        target = self._target(name)
        previous = self.output / name
        self.unchanged += 1
        try:
            os.link(previous, target)
        except OSError:
            shutil.copyfile(previous, target)

    def write_file(self, name: str, source: Path) -> None:
        """Put an existing file into the output without reading it: a hard link to `source`.

        For files named by a hash of their content (thumbnails), where the same name means
        the same bytes: a name the previous output had is linked from there (unchanged)."""
        target = self._target(name)
        previous = os.path.join(self.output, name)
        unchanged = os.path.isfile(previous)
        self.unchanged += unchanged
        for origin in (previous, source) if unchanged else (source,):
            try:
                os.link(origin, target)
                return
            except OSError:
                continue
        shutil.copyfile(source, target)  # no hard links here: a copy

    def _target(self, name: str) -> Path:
        self._claim(name)
        return self._staged(name)

    def commit(self) -> None:
        """Swap the staging folder in: two renames, then the old output is removed."""
        retired = False
        try:
            if self.output.exists() or self.output.is_symlink():
                os.replace(self.output, self.retired)
                retired = True
            os.replace(self.staging, self.output)
        except OSError as exc:
            if retired and not self.output.exists():
                os.replace(self.retired, self.output)  # put the previous site back
            self.abort()
            raise OutputError(f"cannot replace {self.output}: {exc.strerror or exc}") from exc
        _remove(self.retired)


class PatchWriter(_StagedWriter):
    """Updates the previous output in place: only files whose bytes changed are written.

    For rebuilds, where relinking every file into a staging folder would cost more than the
    rendering saved. Changed files are first written into a pending folder; nothing in
    `output/` changes until `commit`, so a build that fails still leaves it as it was. Commit
    renames each pending file into place (atomic per file) and removes the files that the
    last build wrote (`manifest`) and this one did not.
    """

    def __init__(self, output_dir: Path, manifest: frozenset[str]) -> None:
        super().__init__(output_dir, "pending")
        self.manifest = manifest
        self.changed: list[str] = []
        self._present = Listing(output_dir)

    def __enter__(self) -> PatchWriter:
        try:
            _remove(self.staging)
            self.staging.mkdir(parents=True)
        except OSError as exc:
            raise OutputError(f"cannot prepare {self.staging}: {exc.strerror or exc}") from exc
        return self

    def write(self, name: str, data: bytes) -> bool:
        self._claim(name)
        if _same_bytes(self.output / name, data):
            self.unchanged += 1
            return True
        self._staged(name).write_bytes(data)
        self.changed.append(name)
        return False

    def adopt(self, name: str, same: bool) -> None:
        """A file a worker process rendered through its copy of this writer (into the pending
        folder when its bytes changed): commit must move it and must not delete it."""
        self._claim(name)
        if same:
            self.unchanged += 1
        else:
            self.changed.append(name)

    def write_file(self, name: str, source: Path) -> None:
        """A file named by its content's hash: present under that name means unchanged."""
        self._claim(name)
        if self._present.has(name):
            self.unchanged += 1
            return
        target = self._staged(name)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        self.changed.append(name)

    def write_named(self, name: str, data: Named) -> None:
        """A file named by a hash of its bytes: present under that name means unchanged."""
        self._claim(name)
        if self._present.has(name):
            self.unchanged += 1
            return
        self._staged(name).write_bytes(data if isinstance(data, bytes) else data())
        self.changed.append(name)

    def keep(self, name: str) -> None:
        self._claim(name)
        self.unchanged += 1

    def commit(self) -> None:
        try:
            for name in self.changed:
                target = self.output.joinpath(*PurePosixPath(name).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.staging.joinpath(*PurePosixPath(name).parts), target)
            for name in sorted(self.manifest - self.written):
                _remove_file(self.output, name)
        except OSError as exc:
            raise OutputError(f"cannot update {self.output}: {exc.strerror or exc}") from exc
        finally:
            _remove(self.staging)

    @property
    def removed(self) -> list[str]:
        return sorted(self.manifest - self.written)


class Listing:
    """Which files the previous output holds, one directory read per folder.

    Thumbnails and placeholders live by the thousand in one folder and are named by their
    content: a rebuild asks for each whether the previous output has it, and one scandir of
    the folder answers them all (a stat() each was a tenth of a dev-server rebuild)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self._folders: dict[str, frozenset[str]] = {}

    def has(self, name: str) -> bool:
        folder, _, base = name.rpartition("/")
        names = self._folders.get(folder)
        if names is None:
            names = self._folders[folder] = _files_in(os.path.join(self.root, folder))
        return base in names


def _files_in(folder: str) -> frozenset[str]:
    try:
        with os.scandir(folder) as entries:
            return frozenset(entry.name for entry in entries if entry.is_file())
    except OSError:
        return frozenset()


def _outside(name: str) -> bool:
    """Whether `name` (POSIX, relative to the output folder) would leave it or is empty."""
    if ".." not in name and not name.startswith("/") and name.strip("/."):
        return False  # the usual name, decided without splitting it
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return not parts or name.startswith("/") or ".." in parts


def _remove_file(root: Path, name: str) -> None:
    """Remove one stale output file and the folders it leaves empty."""
    path = root.joinpath(*PurePosixPath(name).parts)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    folder = path.parent
    while folder != root:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
