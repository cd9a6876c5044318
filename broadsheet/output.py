"""The one write sink: every output byte goes into a staging folder, swapped in on success.

A failed build therefore never touches the previous `output/`, and files that earlier builds
wrote but this one did not are gone after the swap. A file whose bytes did not change is
hard-linked from the previous output instead of rewritten, so its mtime stays put (rsync and
the dev server's caches see only what really changed).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from types import TracebackType


class OutputError(Exception):
    """The output folder cannot be prepared or swapped (permissions, a busy folder...)."""


class OutputWriter:
    """Use as a context manager: commits when the block ends normally, else aborts."""

    def __init__(self, output_dir: Path) -> None:
        self.output = output_dir
        self.staging = output_dir.parent / f".{output_dir.name}.staging"
        self.retired = output_dir.parent / f".{output_dir.name}.old"
        self.written: set[str] = set()
        self.unchanged = 0
        self._folders: set[Path] = set()  # made in staging already

    def __enter__(self) -> OutputWriter:
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            _remove(self.staging)
            _remove(self.retired)
            self.staging.mkdir()
        except OSError as exc:
            raise OutputError(f"cannot prepare {self.staging}: {exc.strerror or exc}") from exc
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()

    def write(self, name: str, data: bytes) -> None:
        """Write one output file, `name` relative to the output folder (POSIX form)."""
        target = self._target(name)
        previous = self.output / name
        if _same_bytes(previous, data):
            try:
                os.link(previous, target)
                self.unchanged += 1
                return
            except OSError:
                pass  # another filesystem or no hard links: write a copy
        target.write_bytes(data)

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
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise OutputError(f"refusing to write outside the output folder: {name!r}")
        if name in self.written:
            raise OutputError(f"two pages would be written to {name}")
        self.written.add(name)
        target = self.staging.joinpath(*relative.parts)
        if target.parent not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(target.parent)
        return target

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

    def abort(self) -> None:
        _remove(self.staging)


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
