"""The Jinja environment: theme lookup, autoescape, the filters themes use, errors -> diagnostics.

Autoescape is on for every template (Jinja's default is off), undefined names fail loudly
instead of rendering as empty strings, and a template error becomes a Diagnostic that names
the template file and line, like a content error.
"""

from __future__ import annotations

import hashlib
import traceback
import zlib
from collections.abc import Mapping, MutableMapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from . import tracking
from .config import Config
from .diagnostics import Diagnostic, display_path
from .urls import UrlBuilder, static_route

if TYPE_CHECKING:
    from .pictures import PictureBook


class StaticFiles:
    """The theme's static files, overridden by the site's, with content-hash cache busters."""

    def __init__(self, folders: list[Path]) -> None:
        self.files: dict[str, Path] = {}
        for folder in folders:
            if folder.is_dir():
                for path in sorted(folder.rglob("*")):
                    relative = path.relative_to(folder)
                    if path.is_file() and not any(p.startswith(".") for p in relative.parts):
                        self.files[relative.as_posix()] = path
        self._versions: dict[str, str] = {}

    def version(self, name: str) -> str:
        if name not in self._versions:
            digest = hashlib.sha256(self.files[name].read_bytes()).hexdigest()
            self._versions[name] = digest[:10]
        return self._versions[name]


class ThemeEnvironment(jinja2.Environment):
    """Notes every template a rendering loads (extends, imports and includes too), with a
    digest of its source, so a page is rebuilt exactly when a template it used changed."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._digests: dict[str, str | None] = {}

    def template_digest(self, name: str) -> str | None:
        if name not in self._digests:
            try:
                source = self.loader.get_source(self, name)[0] if self.loader else ""
            except jinja2.TemplateNotFound:
                self._digests[name] = None
            else:
                self._digests[name] = hashlib.blake2b(source.encode(), digest_size=16).hexdigest()
        return self._digests[name]

    def get_template(self, name: Any, parent: str | None = None,
                     globals: MutableMapping[str, Any] | None = None) -> jinja2.Template:
        if isinstance(name, str):
            tracking.note(("#template", self.join_path(name, parent) if parent else name),
                          self.template_digest(self.join_path(name, parent) if parent else name))
        return super().get_template(name, parent, globals)

    def select_template(self, names: Any, parent: str | None = None,
                        globals: MutableMapping[str, Any] | None = None) -> jinja2.Template:
        if isinstance(names, list | tuple):
            for name in names:  # every candidate: a new one earlier in the list would win
                if isinstance(name, str):
                    tracking.note(("#template", name), self.template_digest(name))
        return super().select_template(names, parent, globals)


def make_environment(
    config: Config, urls: UrlBuilder, static: StaticFiles, pictures: PictureBook | None = None
) -> jinja2.Environment:
    """`pictures`: the image stage's results for `picture()` (without: placeholders only)."""
    folders = [str(d) for d in config.template_dirs if d.is_dir()]
    env = ThemeEnvironment(
        loader=jinja2.FileSystemLoader(folders),
        # Plain-text templates (the email's text part) are text; everything else is escaped.
        autoescape=jinja2.select_autoescape(disabled_extensions=("txt",), default=True,
                                            default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
        # Compiled templates are kept in .cache/templates (keyed by each source's checksum):
        # compiling the theme costs more than a small rebuild.
        bytecode_cache=_bytecode_cache(config.root / config.images.cache_dir / "templates"),
    )
    tz = config.tz

    def asset(name: str) -> str:
        if name not in static.files:
            raise jinja2.TemplateRuntimeError(f"asset({name!r}): no such file in static/")
        tracking.note(("#asset", name), static.version(name))
        return f"{urls.href(static_route(name))}?v={static.version(name)}"

    if pictures is None:
        from .pictures import PictureBook

        pictures = PictureBook(config.images, urls)
    env.globals.update(
        href=urls.href,
        absolute_url=urls.absolute,
        asset=asset,
        picture=pictures.picture,
        largest_jpeg=pictures.enclosure_for,
    )
    env.filters.update(
        local=lambda value: to_local(value, tz),
        isodate=lambda value: iso_datetime(value, tz),
        longdate=lambda value: long_date(to_local(value, tz)),
        shortdate=lambda value: short_date(to_local(value, tz)),
        clock=lambda value: clock(to_local(value, tz)),
        daterange=date_range,
        plural=plural,
        json_ld=json_ld,
        hue=hue,
    )
    return env


def _bytecode_cache(folder: Path) -> jinja2.BytecodeCache | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only site folder: compile every time
    return jinja2.FileSystemBytecodeCache(str(folder))


def to_local(value: datetime | date, tz: ZoneInfo) -> datetime | date:
    return value.astimezone(tz) if isinstance(value, datetime) else value


def iso_datetime(value: datetime | date, tz: ZoneInfo) -> str:
    """For `<time datetime>`: full ISO 8601 with offset, or a plain date."""
    if isinstance(value, datetime):
        local = value.astimezone(tz)
        offset = local.utcoffset()
        if offset is not None and offset % timedelta(minutes=1):  # a local mean time
            local = value.astimezone(UTC)  # HTML takes offsets in whole minutes only
        return local.isoformat(timespec="seconds")
    return value.isoformat()


# English month names, as strftime's %B and %b give them in the C locale Broadsheet runs in;
# formatting from a table is eight times quicker, and dates are on every card of every page.
MONTHS = ("", "January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def long_date(value: datetime | date) -> str:
    return f"{value.day} {MONTHS[value.month]} {value.year}"


def short_date(value: datetime | date) -> str:
    return f"{value.day} {MONTHS[value.month][:3]} {value.year}"


def clock(value: datetime | date) -> str:
    if not isinstance(value, datetime):
        return "00:00"  # as strftime("%H:%M") gives it for a date
    return f"{value.hour:02d}:{value.minute:02d}"


def date_range(start: date, end: date) -> str:
    """`20–26 January 2020`, `27 January – 2 February 2020`, `30 Dec 2019 – 5 Jan 2020`."""
    if start == end:
        return long_date(start)
    if start.year != end.year:
        return f"{long_date(start)} – {long_date(end)}"
    if start.month != end.month:
        return f"{start.day} {MONTHS[start.month]} – {long_date(end)}"
    return f"{start.day}–{long_date(end)}"


def plural(count: int, singular: str, many: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (many or singular + 's')}"


HUE_STEPS = 24  # placeholder tints, 15 degrees apart


def hue(text: str) -> int:
    """A stable colour angle (0-345, a multiple of 15) for a placeholder, from any text such
    as an image URL. Few steps on purpose: a placeholder file is one per size and hue, so a
    site's remote images share a few hundred files, not one each (a large site's first build
    wrote 13,000 of them), and readers' browsers cache them across pages. A checksum, not a
    cryptographic hash: asked for every card on every page, and the angle needs no more."""
    step = zlib.crc32(text.encode("utf-8", "surrogatepass")) % HUE_STEPS
    return step * (360 // HUE_STEPS)


def json_ld(data: Mapping[str, Any]) -> Markup:
    """JSON for a `<script type="application/ld+json">`; `<`, `>`, `&` cannot end the script."""
    import json

    plain = data if isinstance(data, dict) else dict(data)  # routes.Deferred: a Mapping
    text = json.dumps(plain, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def template_diagnostic(exc: Exception, config: Config, page_route: str) -> Diagnostic:
    """Where in which template an error happened, as a diagnostic."""
    filename, line = getattr(exc, "filename", None), getattr(exc, "lineno", None)
    if not filename:
        template_frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if f.filename.endswith((".html", ".xml", ".txt", ".j2"))
        ]
        if template_frames:
            filename, line = template_frames[-1].filename, template_frames[-1].lineno
    shown = display_path(Path(filename), config.root) if filename else "templates"
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return Diagnostic(
        shown, line or 0, "", f"template error while rendering /{page_route}: {message}"
    )
