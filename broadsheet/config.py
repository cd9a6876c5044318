"""site.yaml -> a frozen Config, validated with the same readers and diagnostics as content.

Every setting has a documented default, so a site.yaml with only a title and base_url works.
Paths are resolved against the site folder once, here, and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .diagnostics import BuildFailed, Diagnostic, Diagnostics
from .frontmatter import compose_mapping
from .readers import NodeReader, shorten, url_problem

CONFIG_FILE = "site.yaml"
PERIODS = ("daily", "weekly", "monthly")
DEFAULT_EPOCH = date(2024, 1, 1)  # a Monday; documented in the README
BUILTIN_THEMES = Path(__file__).resolve().parent / "themes"
SOURCE_THEMES = Path(__file__).resolve().parent.parent / "themes"

TOP_FIELDS = {
    "feeds",
    "search",
    "title",
    "description",
    "base_url",
    "language",
    "timezone",
    "author",
    "theme",
    "content_dir",
    "output_dir",
    "issues",
    "topics",
    "home",
    "footer",
}
ISSUE_FIELDS = {"period", "epoch", "title"}
TOPIC_FIELDS = {"page_size"}
HOME_FIELDS = {"stories", "recent_issues"}
FEED_FIELDS = {"entries", "site", "topics", "digest", "rss", "atom", "json"}
DEFAULT_FEED_FILES = {"rss": "feed.xml", "atom": "atom.xml", "json": "feed.json"}
_FEED_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class FeedSettings:
    """Which feeds are published and what their files are called in each feed's folder."""

    entries: int = 50
    site: bool = True
    topics: bool = True
    digest: bool = True
    formats: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FEED_FILES))


@dataclass(frozen=True)
class IssueSettings:
    period: str = "weekly"
    epoch: date = DEFAULT_EPOCH
    title: str = "Issue"  # the word before the number: "Issue 12", "Edition 12"


@dataclass(frozen=True)
class Config:
    """A site's settings; `root` is the folder that holds site.yaml."""

    root: Path
    title: str
    base_url: str  # absolute http(s), always ends with "/"
    description: str = ""
    language: str = "en"
    timezone: str = "UTC"
    author: str = ""
    footer: str = ""
    theme: str = "default"
    content_dir: Path = Path("content")
    output_dir: Path = Path("output")
    issues: IssueSettings = IssueSettings()
    topic_page_size: int = 20
    home_stories: int = 12
    home_recent_issues: int = 8
    feeds: FeedSettings = FeedSettings()
    search: bool = False

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def publisher(self) -> str:
        return self.author or self.title

    @property
    def theme_dir(self) -> Path:
        """A theme folder in the site wins; otherwise Broadsheet's own themes."""
        for candidate in (
            self.root / "themes" / self.theme,
            BUILTIN_THEMES / self.theme,
            SOURCE_THEMES / self.theme,
        ):
            if (candidate / "templates").is_dir():
                return candidate
        return BUILTIN_THEMES / self.theme

    @property
    def template_dirs(self) -> list[Path]:
        return [self.root / "templates", self.theme_dir / "templates"]

    @property
    def static_dirs(self) -> list[Path]:
        """Later folders override earlier ones: the site's static/ over the theme's."""
        return [self.theme_dir / "static", self.root / "static"]


def load_config(root: Path) -> Config:
    """Read and validate `root/site.yaml`; raise BuildFailed with every problem found."""
    path = root / CONFIG_FILE
    shown = CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BuildFailed(
            [
                Diagnostic(
                    str(path),
                    0,
                    "",
                    "no site.yaml here: run Broadsheet in "
                    "a site folder, give --site DIR, or create one with "
                    "'broadsheet new DIR'",
                )
            ],
            "not a Broadsheet site",
        ) from None
    except UnicodeDecodeError as exc:
        raise BuildFailed([Diagnostic(shown, 0, "", f"is not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise BuildFailed([Diagnostic(shown, 0, "", f"cannot be read: {exc.strerror}")]) from None
    root_node = compose_mapping(text, shown, 1, what="site.yaml")
    if isinstance(root_node, list):
        raise BuildFailed(root_node)
    diagnostics = Diagnostics()
    config = _read_config(NodeReader(shown, 1, diagnostics), root_node, root.resolve())
    if diagnostics.errors or config is None:
        raise BuildFailed(diagnostics.items)
    return config


def _read_config(reader: NodeReader, node: Any, root: Path) -> Config | None:
    fields = reader.fields(node, "") or {}
    reader.unknown(fields, TOP_FIELDS, "")
    title = reader.text(fields.get("title"), "title", required=True, max_length=200)
    base_url = _base_url(reader, fields.get("base_url"))
    settings: dict[str, Any] = {}
    for name in ("description", "language", "author", "footer", "theme"):
        value = reader.text(fields.get(name), name, max_length=2000)
        if value:
            settings[name] = value
    timezone = _timezone(reader, fields.get("timezone"))
    if timezone:
        settings["timezone"] = timezone
    for name in ("content_dir", "output_dir"):
        value = reader.text(fields.get(name), name)
        if value:
            settings[name] = Path(value)
    settings["issues"] = _issues(reader, fields.get("issues"))
    settings["feeds"] = _feeds(reader, fields.get("feeds"))
    settings["search"] = bool(reader.boolean(fields.get("search"), "search"))
    topics = reader.fields(fields.get("topics"), "topics") or {}
    reader.unknown(topics, TOPIC_FIELDS, "topics")
    page_size = reader.integer(topics.get("page_size"), "topics.page_size", minimum=1, maximum=1000)
    if page_size:
        settings["topic_page_size"] = page_size
    home = reader.fields(fields.get("home"), "home") or {}
    reader.unknown(home, HOME_FIELDS, "home")
    for name in ("stories", "recent_issues"):
        count = reader.integer(home.get(name), f"home.{name}", minimum=1, maximum=1000)
        if count:
            settings[f"home_{name}"] = count
    if not title or not base_url:
        return None
    config = Config(root=root, title=title, base_url=base_url, **settings)
    _check_paths(reader, fields, config)
    return config


def _base_url(reader: NodeReader, node: Any) -> str | None:
    raw = reader.text(node, "base_url", required=True)
    if raw is None:
        return None
    problem = url_problem(raw)
    if problem:
        reader.error(
            node,
            "base_url",
            f"expected an http(s) URL like https://example.org/, got {shorten(raw)!r}{problem}",
        )
        return None
    if "?" in raw or "#" in raw:
        reader.error(node, "base_url", "must not have a query or fragment")
        return None
    return raw if raw.endswith("/") else raw + "/"


def _timezone(reader: NodeReader, node: Any) -> str | None:
    name = reader.text(node, "timezone")
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        reader.error(
            node,
            "timezone",
            f"unknown timezone {shorten(name)!r}; use an IANA name like UTC or Europe/London",
        )
        return None
    return name


def _feeds(reader: NodeReader, node: Any) -> FeedSettings:
    """`feeds:` in site.yaml; a format set to false is not published."""
    fields = reader.fields(node, "feeds") or {}
    reader.unknown(fields, FEED_FIELDS, "feeds")
    entries = reader.integer(fields.get("entries"), "feeds.entries", minimum=1, maximum=10_000)
    kinds = {}
    for kind in ("site", "topics", "digest"):
        value = reader.boolean(fields.get(kind), f"feeds.{kind}")
        kinds[kind] = True if value is None else value
    formats: dict[str, str] = {}
    for fmt, default in DEFAULT_FEED_FILES.items():
        node_value = fields.get(fmt)
        raw = reader.scalar(node_value, f"feeds.{fmt}", "a file name or false")
        if raw is None:
            formats[fmt] = default
        elif raw.strip().lower() in ("false", "no", "off"):
            continue
        elif not _FEED_FILE.fullmatch(raw.strip()) or raw.strip() in formats.values():
            reader.error(
                node_value,
                f"feeds.{fmt}",
                "expected false or a file name like "
                f"{default!r} (letters, digits, '.', '-', '_'), different from the "
                f"other formats', got {shorten(raw)!r}",
            )
        else:
            formats[fmt] = raw.strip()
    return FeedSettings(entries=entries or 50, formats=formats, **kinds)


def _issues(reader: NodeReader, node: Any) -> IssueSettings:
    fields = reader.fields(node, "issues") or {}
    reader.unknown(fields, ISSUE_FIELDS, "issues")
    period = reader.text(fields.get("period"), "issues.period") or "weekly"
    if period not in PERIODS:
        reader.error(
            fields.get("period"),
            "issues.period",
            f"expected one of {', '.join(PERIODS)}, got {shorten(period)!r}",
        )
        period = "weekly"
    epoch = reader.calendar_date(fields.get("epoch"), "issues.epoch") or DEFAULT_EPOCH
    title = reader.text(fields.get("title"), "issues.title", max_length=50) or "Issue"
    return IssueSettings(period=period, epoch=epoch, title=title)


def _check_paths(reader: NodeReader, fields: dict[str, Any], config: Config) -> None:
    """The output folder is replaced on every build, so it must never hold the site itself."""
    output = (config.root / config.output_dir).resolve()
    content = (config.root / config.content_dir).resolve()
    protected = [
        config.root,
        content,
        config.root / "templates",
        config.root / "static",
        config.root / "themes",
    ]
    for path in protected:
        if output == path or output in path.parents:
            reader.error(
                fields.get("output_dir"),
                "output_dir",
                f"{config.output_dir} would replace {path.name or path} on every "
                "build; choose a folder of its own, like 'output'",
            )
            return
    if not content.is_dir():
        reader.error(
            fields.get("content_dir"), "content_dir", f"folder {config.content_dir} does not exist"
        )
