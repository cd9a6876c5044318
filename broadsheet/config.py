"""site.yaml -> a frozen Config, validated with the same readers and diagnostics as content.

Every setting has a documented default, so a site.yaml with only a title and base_url works.
Paths are resolved against the site folder once, here, and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .diagnostics import BuildFailed, Diagnostic, Diagnostics, display_path
from .frontmatter import compose_mapping
from .readers import NodeReader, is_null, normalise_url, shorten, url_problem

if TYPE_CHECKING:
    from .fetch import FetchRules  # http.client, ssl...: imported when something is fetched

IMAGE_CACHE_FOLDER = "images"  # under images.cache_dir; the build cache sits beside it


def unreachable_path(folder: Path, day: date | None = None) -> Path:
    """The file of the hosts that could not be reached on `day` (today): part of what
    a nothing-changed build compares, so the first build of a new day tries them again."""
    return folder / f"unreachable-{(day or date.today()).isoformat()}.json"


CONFIG_FILE = "site.yaml"
PERIODS = ("daily", "weekly", "monthly")
DEFAULT_EPOCH = date(2024, 1, 1)  # a Monday; documented in the README
BUILTIN_THEMES = Path(__file__).resolve().parent / "themes"
SOURCE_THEMES = Path(__file__).resolve().parent.parent / "themes"

TOP_FIELDS = {
    "feeds",
    "import",
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
    "images",
}
ISSUE_FIELDS = {"period", "epoch", "title"}
TOPIC_FIELDS = {"page_size"}
HOME_FIELDS = {"stories", "recent_issues"}
IMPORT_FIELDS = {"inbox", "topics", "fold_threshold", "fold_window_hours", "timeout",
                 "max_bytes", "allow_private_hosts"}
FEED_FIELDS = {"entries", "digest_entries", "site", "topics", "digest", "rss", "atom", "json"}
DEFAULT_FEED_FILES = {"rss": "feed.xml", "atom": "atom.xml", "json": "feed.json"}
_FEED_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
IMAGE_FIELDS = {
    "widths",
    "card_aspect",
    "quality",
    "fetch",
    "cache_dir",
    "timeout",
    "max_bytes",
    "max_pixels",
    "allow_private_hosts",
}
_ASPECT = re.compile(r"\s*([0-9]{1,3})\s*:\s*([0-9]{1,3})\s*")
_SECONDS = re.compile(r"\s*[0-9]{1,4}(\.[0-9]{1,3})?\s*")


@dataclass(frozen=True)
class FeedSettings:
    """Which feeds are published and what their files are called in each feed's folder."""

    entries: int = 50
    # Issues in the digest feed, each whole: with 48 stories a week, 50 of them made a
    # 1.5 MB file per format that every reader fetches and any edit of the year re-renders.
    digest_entries: int = 10
    site: bool = True
    topics: bool = True
    digest: bool = True
    formats: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FEED_FILES))


@dataclass(frozen=True)
class ImageSettings:
    """How story images become thumbnails and how remote ones are downloaded (`images:`)."""

    widths: tuple[int, ...] = (320, 640, 1280)  # srcset widths, never wider than the source
    card_aspect: tuple[int, int] = (16, 9)  # the centred crop of cards and lists
    quality: int = 80  # JPEG and WebP
    fetch: bool = True  # false (or --offline): use only what the cache holds
    refetch: bool = False  # --refetch only: try failed downloads again
    cache_dir: Path = Path(".cache")
    timeout: float = 10.0  # seconds, to connect and for each read
    max_bytes: int = 20_000_000  # per source image
    max_pixels: int = 60_000_000  # larger images are refused as decompression bombs
    allow_private_hosts: bool = False  # fetch from loopback/private/link-local addresses


@dataclass(frozen=True)
class ImportSettings:
    """`broadsheet import` (`import:`): where new stories go, topics, folding, network rules."""

    inbox: Path = Path("inbox")  # inside content_dir
    topics: Mapping[str, str] = field(default_factory=dict)  # feed category -> topic
    fold_threshold: int = 80  # title similarity (0-100, rapidfuzz token_sort_ratio) to fold
    fold_window_hours: int = 72  # ... when published at most this far apart
    timeout: float = 10.0
    max_bytes: int = 10_000_000
    allow_private_hosts: bool = False

    @property
    def fetch_rules(self) -> FetchRules:
        from .fetch import FetchRules

        return FetchRules(timeout=self.timeout, max_bytes=self.max_bytes,
                          allow_private_hosts=self.allow_private_hosts,
                          private_setting="import.allow_private_hosts")


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
    images: ImageSettings = ImageSettings()
    importing: ImportSettings = ImportSettings()
    search: bool = False
    # site.yaml's warnings (unknown keys): told with the stories' by every build, and in no
    # key, fingerprint or comparison of settings
    warnings: tuple[Diagnostic, ...] = field(default=(), compare=False, repr=False)

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
    return replace(config, warnings=tuple(diagnostics.warnings))


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
    _check_names(reader, fields, settings)
    timezone = _timezone(reader, fields.get("timezone"))
    if timezone:
        settings["timezone"] = timezone
    for name in ("content_dir", "output_dir"):
        value = _folder(reader, fields.get(name), name)
        if value:
            settings[name] = Path(value)
    settings["issues"] = _issues(reader, fields.get("issues"))
    settings["feeds"] = _feeds(reader, fields.get("feeds"))
    settings["images"] = _images(reader, fields.get("images"))
    settings["importing"] = _import(reader, fields.get("import"))
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
    _check_theme(reader, fields, config)
    return config


_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_THEME_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def _check_names(reader: NodeReader, fields: dict[str, Any], settings: dict[str, Any]) -> None:
    """`language` is the pages' `lang` and the feeds' language: a language tag or nothing
    valid; `theme` names a folder of themes/, never a path."""
    language = settings.get("language")
    if language is not None and not _LANGUAGE.fullmatch(language):
        reader.error(fields.get("language"), "language",
                     f"expected a language tag like en or en-GB, got {shorten(language)!r}")
        del settings["language"]
    theme = settings.get("theme")
    if theme is not None and not _THEME_NAME.fullmatch(theme):
        reader.error(fields.get("theme"), "theme",
                     f"expected the name of a folder in themes/, got {shorten(theme)!r}")
        del settings["theme"]


# A longer file name, or path, is one no system holds: stat() fails on it (ENAMETOOLONG)
# instead of finding nothing, and the build crashed.
MAX_NAME_BYTES = 255
MAX_FOLDER_BYTES = 1024


def _folder(reader: NodeReader, node: Any, field_name: str) -> str | None:
    """A folder setting: text that a file system can hold as a path."""
    value = reader.text(node, field_name)
    problem = folder_problem(value) if value else None
    if value and problem:
        reader.error(node, field_name, f"{shorten(value)!r} {problem}")
        return None
    return value


def folder_problem(path: str | Path) -> str | None:
    """Why no file system can hold `path` (a name or the whole too long), or None."""
    size = len(str(path).encode("utf-8", "surrogatepass"))
    if size > MAX_FOLDER_BYTES:
        return f"is {size:,} bytes long; a folder's path may be at most {MAX_FOLDER_BYTES:,}"
    for part in Path(path).parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            return (f"has a name of more than {MAX_NAME_BYTES} bytes, longer than a file "
                    "system allows")
    return None


def _check_theme(reader: NodeReader, fields: dict[str, Any], config: Config) -> None:
    if not (config.theme_dir / "templates").is_dir():
        own = sorted({p.name for folder in (BUILTIN_THEMES, SOURCE_THEMES) if folder.is_dir()
                      for p in folder.iterdir() if (p / "templates").is_dir()})
        reader.error(fields.get("theme"), "theme",
                     f"no theme {config.theme!r}: looked for themes/{config.theme}/templates/ in "
                     f"the site and among Broadsheet's themes ({', '.join(own)})")


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
    value = normalise_url(raw)  # a real URI: every feed link and id starts with it
    value = value if value.endswith("/") else value + "/"
    parts = value.split("/")[3:]  # the path's: pages link each other by path alone
    if "" in parts[:-1] or any(part.lower() in _DOT_SEGMENTS for part in parts):
        # https://example.org// made every link //static/..., //feed.xml: another host's
        reader.error(node, "base_url", "expected a path without empty, '.' or '..' parts, "
                     f"like https://example.org/digest/, got {shorten(raw)!r}")
        return None
    return value


_DOT_SEGMENTS = {".", "..", "%2e", "%2e%2e", ".%2e", "%2e."}  # as browsers read them


def _timezone(reader: NodeReader, node: Any) -> str | None:
    name = reader.text(node, "timezone")
    if not name:
        return None
    try:
        if name == "localtime":  # the machine's own setting: another machine, other issues
            raise ZoneInfoNotFoundError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        reader.error(
            node,
            "timezone",
            f"unknown timezone {shorten(name)!r}; use an IANA name like UTC or Europe/London",
        )
        return None
    return name


def _site_name(name: str) -> bool:
    """Whether a feed file called `name` would take the place of one of the site's own files
    or folders (or an issue's), in any case, for case-blind file systems."""
    from .urls import SITE_NAMES  # with slugify: not for every nothing-changed check

    return name.lower() in SITE_NAMES or name.isdigit()


def _windows_device(name: str) -> bool:
    from .urls import windows_reserved  # with slugify, like SITE_NAMES

    return windows_reserved(name)


def _taken_by(name: str, formats: dict[str, str]) -> str | None:
    """The format whose feed file is already called `name`, in any case: `Feed.xml` and
    `feed.xml` are two files here and one on macOS and Windows, where one feed would
    silently replace the other in a copy of the output."""
    return next((fmt for fmt, taken in formats.items() if taken.lower() == name.lower()), None)


def _defaults_after(fmt: str, fields: dict[str, Any]) -> dict[str, str]:
    """The default file names of the formats read after `fmt` and not set: `rss: atom.xml`
    took Atom's default, and both feeds were written to one file (a failed build that
    named no line of site.yaml)."""
    later = list(DEFAULT_FEED_FILES)[list(DEFAULT_FEED_FILES).index(fmt) + 1:]
    return {other: DEFAULT_FEED_FILES[other] for other in later if is_null(fields.get(other))}


def _feeds(reader: NodeReader, node: Any) -> FeedSettings:
    """`feeds:` in site.yaml; a format set to false is not published."""
    fields = reader.fields(node, "feeds") or {}
    reader.unknown(fields, FEED_FIELDS, "feeds")
    entries = reader.integer(fields.get("entries"), "feeds.entries", minimum=1, maximum=10_000)
    digest_entries = reader.integer(fields.get("digest_entries"), "feeds.digest_entries",
                                    minimum=1, maximum=10_000)
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
        elif _site_name(raw.strip()):
            reader.error(node_value, f"feeds.{fmt}", f"{raw.strip()!r} is a name the site's "
                         f"own pages use; choose another, like {default!r}")
        elif _windows_device(raw.strip()):
            reader.error(node_value, f"feeds.{fmt}", f"{raw.strip()!r} is a name Windows keeps "
                         "for a device: the site could not be copied there; choose another, "
                         f"like {default!r}")
        elif (taken := _taken_by(raw.strip(), {**_defaults_after(fmt, fields), **formats})):
            reader.error(node_value, f"feeds.{fmt}", f"{raw.strip()!r} is feeds.{taken}'s "
                         "file name too (in any letter case: some file systems ignore it); "
                         f"choose another, like {default!r}")
        elif not _FEED_FILE.fullmatch(raw.strip()):
            reader.error(
                node_value,
                f"feeds.{fmt}",
                "expected false or a file name like "
                f"{default!r} (letters, digits, '.', '-', '_'), got {shorten(raw)!r}",
            )
        else:
            formats[fmt] = raw.strip()
    return FeedSettings(entries=entries or 50, digest_entries=digest_entries or 10,
                        formats=formats, **kinds)


def _images(reader: NodeReader, node: Any) -> ImageSettings:
    """`images:` in site.yaml; every key is optional."""
    fields = reader.fields(node, "images") or {}
    reader.unknown(fields, IMAGE_FIELDS, "images")
    settings: dict[str, Any] = {}
    widths = [
        reader.integer(item, f"images.widths[{i}]", minimum=16, maximum=8192)
        for i, item in enumerate(reader.items(fields.get("widths"), "images.widths", "widths"))
    ]
    if widths and all(widths):
        settings["widths"] = tuple(sorted({w for w in widths if w}))
    elif "widths" in fields and not widths and not is_null(fields["widths"]):
        reader.error(fields["widths"], "images.widths", "give at least one width, like [640]")
    aspect = _card_aspect(reader, fields.get("card_aspect"))
    if aspect:
        settings["card_aspect"] = aspect
    for name in ("fetch", "allow_private_hosts"):
        flag = reader.boolean(fields.get(name), f"images.{name}")
        if flag is not None:
            settings[name] = flag
    limits = {"quality": (30, 95), "max_bytes": (10_000, 500_000_000),
              "max_pixels": (10_000, 150_000_000)}
    settings.update(_limits(reader, fields, "images", limits))
    cache_dir = _folder(reader, fields.get("cache_dir"), "images.cache_dir")
    if cache_dir:
        settings["cache_dir"] = Path(cache_dir)
    return ImageSettings(**settings)


def _limits(reader: NodeReader, fields: dict[str, Any], section: str,
            ranges: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """The whole numbers of a section within their ranges, and its `timeout` in seconds."""
    found: dict[str, Any] = {}
    for name, (low, high) in ranges.items():
        number = reader.integer(fields.get(name), f"{section}.{name}", minimum=low, maximum=high)
        if number:
            found[name] = number
    timeout = _seconds(reader, fields.get("timeout"), f"{section}.timeout")
    if timeout:
        found["timeout"] = timeout
    return found


def _import(reader: NodeReader, node: Any) -> ImportSettings:
    """`import:` in site.yaml; every key is optional."""
    fields = reader.fields(node, "import") or {}
    reader.unknown(fields, IMPORT_FIELDS, "import")
    settings: dict[str, Any] = {}
    inbox = _folder(reader, fields.get("inbox"), "import.inbox")
    if inbox:
        relative = Path(inbox)
        if (relative.is_absolute() or ".." in relative.parts
                or any(part.startswith(".") for part in relative.parts)):
            # a hidden folder is skipped when stories are read: its drafts would never show,
            # nor be seen as duplicates by the next import
            reader.error(fields.get("inbox"), "import.inbox",
                         "expected a folder inside content_dir whose name does not start "
                         f"with '.', got {shorten(inbox)!r}")
        else:
            settings["inbox"] = relative
    table = reader.fields(fields.get("topics"), "import.topics") or {}
    topics = {}
    for category, value in table.items():
        topic = reader.text(value, f"import.topics.{category}", max_length=100)
        if topic:
            topics[category] = topic
    settings["topics"] = topics
    limits = {"fold_threshold": (50, 100), "fold_window_hours": (1, 24 * 365),
              "max_bytes": (10_000, 500_000_000)}
    settings.update(_limits(reader, fields, "import", limits))
    flag = reader.boolean(fields.get("allow_private_hosts"), "import.allow_private_hosts")
    if flag is not None:
        settings["allow_private_hosts"] = flag
    return ImportSettings(**settings)


def _card_aspect(reader: NodeReader, node: Any) -> tuple[int, int] | None:
    raw = reader.scalar(node, "images.card_aspect", "an aspect ratio like 16:9")
    if raw is None:
        return None
    match = _ASPECT.fullmatch(raw)
    if match is None or not all(int(n) for n in match.groups()):
        reader.error(
            node, "images.card_aspect", f"expected an aspect like 16:9, got {shorten(raw)!r}"
        )
        return None
    width, height = int(match[1]), int(match[2])
    if max(width / height, height / width) > 5:
        reader.error(node, "images.card_aspect", f"{width}:{height} is too narrow for a card")
        return None
    return width, height


def _seconds(reader: NodeReader, node: Any, field_name: str) -> float | None:
    raw = reader.scalar(node, field_name, "a number of seconds")
    if raw is None:
        return None
    value = float(raw) if _SECONDS.fullmatch(raw) else 0.0
    if not 0.05 <= value <= 300:
        reader.error(node, field_name, f"expected seconds from 0.05 to 300, got {shorten(raw)!r}")
        return None
    return value


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
    """The output folder is replaced on every build, so it must never hold, or be inside,
    anything of the site's own; the cache and the content must stay inside the site."""
    root = config.root
    output = (root / config.output_dir).resolve()
    content = (root / config.content_dir).resolve()
    if content != root and root not in content.parents:
        reader.error(fields.get("content_dir"), "content_dir",
                     f"{config.content_dir} is outside the site folder; stories must be in a "
                     "folder inside it, like 'content'")
        return
    problem = output_problem(config)
    if problem is not None:
        reader.error(fields.get("output_dir"), "output_dir", problem)
        return
    _check_cache_dir(reader, fields, config, output, _protected(config))
    if not content.is_dir():
        reader.error(
            fields.get("content_dir"), "content_dir", f"folder {config.content_dir} does not exist"
        )
    else:
        _check_inbox(reader, fields, config, content)


def _protected(config: Config) -> list[Path]:
    """The site's own folders, which no build may replace: the site, content, templates..."""
    root = config.root
    content = (root / config.content_dir).resolve()
    return [root, content, root / "templates", root / "static", root / "themes"]


def output_problem(config: Config, cache_too: bool = False) -> str | None:
    """Why `config.output_dir` may not be built into, or None. The output folder is replaced
    on every build, so it must never hold, or be inside, anything of the site's own. For
    site.yaml's `output_dir` and `--output` alike: the option once replaced content/ with
    the built site. With `cache_too`, nor hold the cache (site.yaml's checks tell that at
    images.cache_dir)."""
    root = config.root
    if problem := folder_problem(config.output_dir):  # --output; site.yaml's is checked
        return f"{shorten(str(config.output_dir))!r} {problem}"
    output = (root / config.output_dir).resolve()
    protected = _protected(config)
    clash = next((path for path in protected if output == path or output in path.parents), None)
    inside = next((path for path in protected[1:] if path in output.parents), None)
    cache = (root / config.images.cache_dir).resolve()
    if clash is not None:
        what = f"would replace {clash.name or clash}"
    elif inside is not None:
        what = f"is inside {display_path(inside, root)}/ and would be replaced"
    elif output.exists() and not output.is_dir():
        return (f"{config.output_dir} is a file, which the build would replace; choose a "
                "folder of its own, like 'output'")
    elif cache_too and (cache == output or output in cache.parents):
        what = f"holds the cache ({config.images.cache_dir}), which would be replaced"
    else:
        return None
    return f"{config.output_dir} {what} on every build; choose a folder of its own, like 'output'"


def _check_inbox(reader: NodeReader, fields: dict[str, Any], config: Config,
                 content: Path) -> None:
    """`broadsheet import` writes story files into the inbox: it must be a folder."""
    inbox = content / config.importing.inbox
    if inbox.exists() and not inbox.is_dir():
        node = _setting_node(fields.get("import"), "inbox")
        reader.error(node, "import.inbox",
                     f"{display_path(inbox, config.root)} is a file, not a folder")


def _setting_node(node: Any, name: str) -> Any:
    """The value node of `name` in a mapping node (for its line), else the mapping's."""
    pairs = node.value if isinstance(node, yaml.MappingNode) else []
    return next((value for key, value in pairs if key.value == name), node)


def _check_cache_dir(
    reader: NodeReader, fields: dict[str, Any], config: Config, output: Path, protected: list[Path]
) -> None:
    """The image cache must outlive builds (not in the output) and keep out of the site's own
    folders (Broadsheet writes and prunes files in it)."""
    cache = (config.root / config.images.cache_dir).resolve()
    node = _setting_node(fields.get("images"), "cache_dir")
    if config.root not in cache.parents:
        reader.error(
            node,
            "images.cache_dir",
            "must be a folder inside the site folder (Broadsheet writes and prunes files "
            "in it); the default is '.cache'",
        )
    elif cache == output or output in cache.parents:
        reader.error(
            node,
            "images.cache_dir",
            "must not be inside the output folder, which is replaced on every build; "
            "the default is '.cache'",
        )
    elif holder := next((path for path in protected[1:]
                         if cache == path or path in cache.parents), None):
        reader.error(
            node,
            "images.cache_dir",
            f"must be a folder of its own, not in {display_path(holder, config.root)}/; the "
            "default is '.cache'",
        )
