"""Diagnostics: every problem Broadsheet finds in a site, with the file, line and field it is about.

The build collects all of them in one pass and shows them together, so a curator fixes
everything at once instead of one error per run. The library raises `BuildFailed`; only
the CLI prints and exits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"


class Subject(Enum):
    """What a diagnostic's `path` names. Summaries count files ("2 errors in 1 file"): a
    folder (the output folder, the build cache) or a command-line option is not one, and
    telling them apart by the look of the path was guesswork."""

    FILE = "file"
    FOLDER = "folder"
    OPTION = "option"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem: `content/x.md:12: topics: expected a list of strings`."""

    path: str
    line: int
    field: str
    message: str
    severity: Severity = Severity.ERROR
    # Not compared: an Enum cannot be ordered, and `field` here is the str above.
    subject: Subject = dataclasses.field(default=Subject.FILE, compare=False)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        what = f"{self.field}: {self.message}" if self.field else self.message
        tag = "warning: " if self.severity is Severity.WARNING else ""
        return f"{where}: {tag}{what}"

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    @property
    def in_a_file(self) -> bool:
        """Whether `path` is a file's: not a folder's or a command-line option's."""
        return self.subject is Subject.FILE

    def as_warning(self) -> Diagnostic:
        return replace(self, severity=Severity.WARNING)


@dataclass
class Diagnostics:
    """A collector that stages append to; nothing is printed here."""

    items: list[Diagnostic] = field(default_factory=list)
    # Kept as they come: validation asks after every image whether it added errors, and
    # counting them over again made a file of 20,000 bad images take minutes to check.
    error_count: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.error_count = sum(1 for d in self.items if d.is_error)

    def error(self, path: str, line: int, field_path: str, message: str) -> None:
        self.items.append(Diagnostic(path, line, field_path, message))
        self.error_count += 1

    def warning(self, path: str, line: int, field_path: str, message: str) -> None:
        self.items.append(Diagnostic(path, line, field_path, message, Severity.WARNING))

    def extend(self, others: list[Diagnostic] | Diagnostics) -> None:
        added = others.items if isinstance(others, Diagnostics) else others
        self.items.extend(added)
        self.error_count += sum(1 for d in added if d.is_error)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if not d.is_error]

    def __bool__(self) -> bool:
        return bool(self.items)


class BuildFailed(Exception):
    """Raised when a build cannot produce a site; carries every diagnostic found."""

    exit_code = 1

    def __init__(self, diagnostics: list[Diagnostic], summary: str = "") -> None:
        self.diagnostics = sorted(diagnostics, key=_sort_key)
        errors = sum(1 for d in self.diagnostics if d.is_error)
        self.summary = summary or f"{errors} error{'s' if errors != 1 else ''}; nothing was written"
        super().__init__(self.summary)


def _sort_key(d: Diagnostic) -> tuple[str, int, str, str]:
    return (d.path, d.line, d.field, d.message)


def sorted_diagnostics(items: list[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in file and line order, so output is stable between runs."""
    return sorted(items, key=_sort_key)


def display_path(path: Path, root: Path) -> str:
    """The path as the user should see it: relative to the site folder when inside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
