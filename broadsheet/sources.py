"""Find story files and turn their bytes into text; nothing is parsed here.

A file we cannot use (too large, not UTF-8) becomes one diagnostic naming the file, like any
other content problem, never an exception.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .diagnostics import Diagnostic, Severity, Subject, display_path

MAX_STORY_BYTES = 5 * 1024 * 1024


def find_story_files(
    content_dir: Path, root: Path, problems: list[Diagnostic] | None = None
) -> list[tuple[str, str]]:
    """Every `*.md` under content/ (its path as a string) and the path diagnostics show for
    it, in a stable order; hidden files and folders are skipped, and so are folders reached
    through symlinks (one may lead anywhere: /etc, or back up in a loop). A folder that
    cannot be listed goes to `problems`, and a warning for each symlinked one: skipped
    silently, their stories would vanish from a build that says it succeeded.

    One os.walk, and strings rather than Paths: pathlib's rglob plus a stat per file took
    most of a second on 10,000 stories, on every rebuild, and a Path per file still cost a
    tenth of one."""
    found: list[tuple[tuple[str, ...], str]] = []
    top = os.fspath(content_dir)

    def unreadable(exc: OSError) -> None:
        if problems is not None:
            shown = display_path(Path(exc.filename or top), root)
            problems.append(Diagnostic(shown, 0, "", f"cannot be read: {exc.strerror or exc}",
                                       Severity.ERROR, Subject.FOLDER))  # os.walk lists folders

    for folder, folders, files in os.walk(top, onerror=unreadable):
        folders[:] = [name for name in folders if not name.startswith(".")]
        if problems is not None:
            for name in folders:  # os.walk does not enter them: say so, or they vanish
                if os.path.islink(os.path.join(folder, name)):
                    shown = display_path(Path(folder, name), root)
                    problems.append(Diagnostic(
                        shown, 0, "", "is a link to a folder, whose stories are not read "
                        "(links to folders are not followed); move or copy the folder into "
                        f"{display_path(content_dir, root)}/ instead", Severity.WARNING,
                        Subject.FOLDER))
        relative = os.path.relpath(folder, top)
        parts = () if relative == "." else tuple(relative.split(os.sep))
        found.extend(
            ((*parts, name), os.path.join(folder, name))
            for name in files
            if name.endswith(".md") and not name.startswith(".")
        )
    found.sort()
    base = display_path(content_dir, root)
    prefix = "" if base == "." else base + "/"
    return [(path, prefix + "/".join(parts)) for parts, path in found]


def not_readable(mode: int, size: int, shown: str) -> Diagnostic | None:
    """Why a story file (as stat() found it, through symlinks) is not read, if it is not:
    only a regular file can be read to its end (a FIFO would wait for a writer forever, a
    link to /dev/zero fill the memory), and only one of at most MAX_STORY_BYTES."""
    if not stat.S_ISREG(mode):
        return Diagnostic(shown, 0, "", "is not a regular file (a device, a pipe or a socket)"
                          "; a story must be a Markdown file")
    if size <= MAX_STORY_BYTES:
        return None
    return Diagnostic(shown, 0, "", f"is {size // 1024} KiB; a story file may be at most "
                      f"{MAX_STORY_BYTES // 1024 // 1024} MiB")


def decode_story(data: bytes, shown: str) -> str | Diagnostic:
    """The file's text, or why it is not UTF-8 (with the line of the first bad byte)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return Diagnostic(shown, line, "", f"is not UTF-8 text (byte 0x{data[exc.start]:02x} "
                          "cannot be decoded); save the file as UTF-8")
