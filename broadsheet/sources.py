"""Find and read story files; nothing is parsed here.

Reading is separate from parsing so that a file we cannot read (permissions, bad encoding, a
runaway size) becomes one diagnostic naming the file, like any other content problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .diagnostics import Diagnostic, display_path

MAX_STORY_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """One story file's text and the path shown in diagnostics."""

    path: Path
    shown: str
    text: str


def find_story_files(content_dir: Path) -> list[Path]:
    """Every `*.md` under content/, in a stable order; hidden files and folders are skipped."""
    return sorted(
        path
        for path in content_dir.rglob("*.md")
        if (path.is_file() or path.is_symlink())
        and not any(part.startswith(".") for part in path.relative_to(content_dir).parts)
    )


def read_sources(paths: list[Path], root: Path) -> Iterator[Source | Diagnostic]:
    for path in paths:
        yield read_source(path, display_path(path, root))


def read_source(path: Path, shown: str) -> Source | Diagnostic:
    try:
        size = path.stat().st_size
        if size > MAX_STORY_BYTES:
            return Diagnostic(
                shown,
                0,
                "",
                f"is {size // 1024} KiB; a story file may be at "
                f"most {MAX_STORY_BYTES // 1024 // 1024} MiB",
            )
        data = path.read_bytes()
    except OSError as exc:
        return Diagnostic(shown, 0, "", f"cannot be read: {exc.strerror or exc}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return Diagnostic(
            shown,
            line,
            "",
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} "
            "cannot be decoded); save the file as UTF-8",
        )
    return Source(path=path, shown=shown, text=text)
