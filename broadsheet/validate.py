"""Front matter -> Article: one small reader per field, every problem reported in one pass.

The validator never stops at the first problem: it reads every field it can, records a
diagnostic for each one it cannot, and returns an Article only when the story has no errors.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime, tzinfo
from functools import lru_cache
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import yaml

from .config import Config
from .diagnostics import Diagnostic, Diagnostics
from .frontmatter import FrontMatter
from .markdown import render_markdown
from .model import Article, Image, Provider, Related, TopicRef
from .periods import issue_number
from .readers import MAX_YEAR, NodeReader, clean_text, is_null, shorten
from .urls import make_slug, windows_reserved

RELATED_FIELDS = {
    "title", "excerpt", "publishedDateTime", "webUrl", "ampWebUrl", "cdnAmpWebUrl", "type",
    "provider", "quality", "images",
}  # fmt: skip
STORY_FIELDS = RELATED_FIELDS | {
    "category", "heat", "published", "topics", "related", "slug", "editor_pick", "issue",
}  # fmt: skip
IMAGE_FIELDS = {"url", "width", "height", "title"}
PROVIDER_FIELDS = {"name", "domain"}
# Fields of the real format that Broadsheet knowingly ignores: never read, never output.
IGNORED_FIELDS = frozenset({"secured"})

MAX_IMAGE_SIDE = 20_000
MAX_IMAGE_ASPECT = 20
MAX_SCORE = 1_000_000_000
MAX_ISSUE = 1_000_000
MAX_TITLE = 500
MAX_PROVIDER_NAME = 200  # provider.name; the importer fits outlet names to it
# A story's topics are each a page and three feeds that all list the story with its topics:
# their size grows with the square of the count (3,000 topics took minutes to build).
MAX_TOPICS = 20
MAX_EXCERPT = 5_000
# The curator's note: a few paragraphs. Rendering Markdown costs ~12 s per MB for crafted
# text (a million-row table, millions of `[`), and 3.8 GB for the table: bounded here.
MAX_BODY = 100_000
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_URL_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*:", re.IGNORECASE)


def validate_story(
    front: FrontMatter, path: str, default_slug: str, config: Config, diagnostics: Diagnostics
) -> Article | None:
    """Read a story's fields; None when any of them is an error (all are reported)."""
    errors_before = diagnostics.error_count
    timezone = config.tz
    reader = NodeReader(path, front.first_line, diagnostics)
    fields = reader.fields(front.root, "") or {}
    reader.unknown(fields, STORY_FIELDS, "", IGNORED_FIELDS)

    title = reader.text(fields.get("title"), "title", required=True, max_length=MAX_TITLE)
    published = reader.timestamp(
        fields.get("publishedDateTime"), "publishedDateTime", timezone, required=True
    )
    url = reader.url(fields.get("webUrl"), "webUrl", required=True)
    reader.url(fields.get("ampWebUrl"), "ampWebUrl")
    reader.url(fields.get("cdnAmpWebUrl"), "cdnAmpWebUrl")
    text = functools.partial(_optional_text, reader, fields)
    pinned_issue = read_issue(reader, fields.get("issue"), config)
    article = Article(
        source=path,
        slug=read_slug(reader, fields.get("slug")) or default_slug,
        title=title or "",
        excerpt=text("excerpt", "", MAX_EXCERPT),
        published=published or datetime.min,
        url=url or "",
        category=text("category", "", 100),
        type=text("type", "article", 100),
        quality=_score(reader, fields.get("quality"), "quality"),
        heat=_score(reader, fields.get("heat"), "heat"),
        is_draft=reader.boolean(fields.get("published"), "published") is False,
        provider=read_provider(reader, fields.get("provider"), "provider", url),
        topics=read_topics(reader, fields.get("topics")),
        images=read_images(reader, fields.get("images"), "images", path),
        related=read_related(reader, fields.get("related"), timezone, path),
        editor_pick=bool(reader.boolean(fields.get("editor_pick"), "editor_pick")),
        pinned_issue=pinned_issue,
        body_html=_body_html(front, path, diagnostics),
    )
    if diagnostics.error_count > errors_before or not (title and published and url):
        return None
    if pinned_issue is None:
        _warn_before_epoch(reader, fields.get("publishedDateTime"), published, config)
    return article


def _body_html(front: FrontMatter, path: str, diagnostics: Diagnostics) -> str:
    if len(front.body) > MAX_BODY:
        diagnostics.error(path, front.body_line, "body", f"is {len(front.body):,} characters "
                          f"long; the note under the front matter may be at most {MAX_BODY:,}")
        return ""
    return render_markdown(clean_text(front.body, single_line=False))


def _optional_text(
    reader: NodeReader, fields: dict[str, yaml.Node], name: str, default: str, max_length: int
) -> str:
    return reader.text(fields.get(name), name, max_length=max_length) or default


def _warn_before_epoch(
    reader: NodeReader, node: yaml.Node | None, published: datetime, config: Config
) -> None:
    """A story before the first issue's period is in no issue: say so, it is rarely meant."""
    if issue_number(published.astimezone(config.tz).date(), config.issues) < 1:
        reader.warning(
            node,
            "publishedDateTime",
            f"is before issues.epoch ({config.issues.epoch.isoformat()}), so the "
            "story is in no issue; set an earlier epoch or pin it with 'issue:'",
        )


def read_issue(reader: NodeReader, node: yaml.Node | None, config: Config) -> int | None:
    """A pinned issue number, one whose period ends by the last year a date may have."""
    last = min(MAX_ISSUE, issue_number(date(MAX_YEAR, 12, 31), config.issues))
    number = reader.integer(node, "issue", minimum=1, maximum=MAX_ISSUE)
    if number is not None and number > last:
        reader.error(node, "issue", f"issue {number} would be after the year {MAX_YEAR}; with "
                     f"{config.issues.period} issues from {config.issues.epoch.isoformat()} the "
                     f"last is {last}")
        return None
    return number


def _score(reader: NodeReader, node: yaml.Node | None, field: str) -> int:
    value = reader.integer(node, field, minimum=-MAX_SCORE, maximum=MAX_SCORE)
    return value if value is not None else 0


def read_slug(reader: NodeReader, node: yaml.Node | None) -> str | None:
    value = reader.text(node, "slug", max_length=100)
    if value is None:
        return None
    if not _SLUG.fullmatch(value):
        reader.error(
            node,
            "slug",
            "expected lowercase letters, digits and single hyphens "
            f"(like 'met-police-cameras'), got {shorten(value)!r}",
        )
        return None
    if windows_reserved(value):
        reader.error(node, "slug", f"{value!r} is a name Windows keeps for a device: the "
                     "site could not be checked out or copied there; choose another, like "
                     f"'{value}-story'")
        return None
    return value


def read_provider(
    reader: NodeReader, node: yaml.Node | None, field: str, url: str | None
) -> Provider:
    """The outlet; when absent it is named after the story URL's domain."""
    fields = reader.fields(node, field) or {}
    reader.unknown(fields, PROVIDER_FIELDS, field)
    domain = reader.hostname(fields.get("domain"), f"{field}.domain")
    name = reader.text(fields.get("name"), f"{field}.name", max_length=MAX_PROVIDER_NAME)
    if not domain and url:
        domain = (urlsplit(url).hostname or "").removeprefix("www.")
    return _provider(name or domain or "", domain or "")


@lru_cache(maxsize=4096)
def _provider(name: str, domain: str) -> Provider:
    """One object per outlet: thousands of related items share a few hundred outlets, and
    the build cache stores each shared object once."""
    return Provider(name=name, domain=domain)


def read_topics(reader: NodeReader, node: yaml.Node | None) -> tuple[TopicRef, ...]:
    """Topic names as written; one per slug (`AI` and `ai` in one story count once, also
    toward the limit: feeds' categories often repeat a name in other cases). A list far
    beyond the limit is refused before its items are read."""
    topics: dict[str, TopicRef] = {}
    if isinstance(node, yaml.SequenceNode) and (count := len(node.value)) > 10 * MAX_TOPICS:
        reader.error(node, "topics", f"at most {MAX_TOPICS} topics per story, got {count}")
        return ()
    for index, item in enumerate(reader.items(node, "topics", "strings")):
        field = f"topics[{index}]"
        if not isinstance(item, yaml.ScalarNode):
            reader.error(item, "topics", "expected a list of strings")
            continue
        name = reader.text(item, field, max_length=100)
        if not name:
            if name is not None or is_null(item):
                reader.error(item, field, "must not be empty")
            continue
        slug = make_slug(name, "topic")
        topics.setdefault(slug, TopicRef(name=name, slug=slug))
    if len(topics) > MAX_TOPICS:
        assert node is not None
        reader.error(node, "topics", f"at most {MAX_TOPICS} topics per story, got {len(topics)}")
        return ()
    return tuple(topics.values())


def read_images(
    reader: NodeReader, node: yaml.Node | None, field: str, path: str
) -> tuple[Image, ...]:
    images = []
    for index, item in enumerate(reader.items(node, field, "images")):
        image = read_image(reader, item, f"{field}[{index}]", path)
        if image is not None:
            images.append(image)
    return tuple(images)


def read_image(reader: NodeReader, node: yaml.Node, field: str, path: str) -> Image | None:
    fields = reader.fields(node, field)
    if fields is None:
        return None
    diagnostics = reader.diagnostics
    errors_before = diagnostics.error_count
    reader.unknown(fields, IMAGE_FIELDS, field)
    require(reader, node, fields, field, "url")
    url = read_image_url(reader, fields.get("url"), f"{field}.url", path)
    sizes_before = diagnostics.error_count
    width = reader.integer(fields.get("width"), f"{field}.width", minimum=1, maximum=MAX_IMAGE_SIDE)
    height = reader.integer(
        fields.get("height"), f"{field}.height", minimum=1, maximum=MAX_IMAGE_SIDE
    )
    if diagnostics.error_count == sizes_before:  # checked even when the URL is wrong
        check_image_size(reader, node, field, width, height)
    title = reader.text(fields.get("title"), f"{field}.title", max_length=MAX_TITLE) or ""
    if diagnostics.error_count > errors_before or url is None:
        return None
    line = reader.line(fields["url"])
    return Image(url, width, height, title, source=path, field=field, line=line)


def check_image_size(
    reader: NodeReader, node: yaml.Node, field: str, width: int | None, height: int | None
) -> None:
    """Both sides or neither, and not a sliver (a typo such as 20000x1)."""
    if (width is None) != (height is None):
        reader.error(node, field, "give both width and height, or neither")
    elif width and height and max(width / height, height / width) > MAX_IMAGE_ASPECT:
        reader.error(
            node,
            field,
            f"{width}x{height} is not a plausible image size (more than {MAX_IMAGE_ASPECT}:1)",
        )


def require(
    reader: NodeReader, node: yaml.Node, fields: dict[str, yaml.Node], field: str, name: str
) -> None:
    """Report a missing required field at the line of the mapping that lacks it."""
    if name not in fields:
        reader.error(node, f"{field}.{name}", "is required")


def read_image_url(reader: NodeReader, node: yaml.Node | None, field: str, path: str) -> str | None:
    """An http(s) URL, or a relative path that stays inside the site folder."""
    raw = reader.scalar(node, field, "an image URL or path")
    if raw is None:
        if node is not None:
            reader.error(node, field, "must not be empty")
        return None
    value = raw.strip()
    if _URL_SCHEME.match(value) or value.startswith("//"):
        return reader.url(node, field)
    posix = PurePosixPath(value.replace("\\", "/"))
    story_dir = PurePosixPath(path).parent
    if not value or posix.is_absolute() or _escapes(story_dir, posix):
        reader.error(
            node,
            field,
            f"expected an http(s) URL or a path inside the site folder, got {shorten(value)!r}",
        )
        return None
    return posix.as_posix()


def _escapes(start: PurePosixPath, relative: PurePosixPath) -> bool:
    """Whether `start/relative` climbs above the site folder (paths are site-relative)."""
    depth = len(start.parts) if start != PurePosixPath(".") else 0
    for part in relative.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return True
    return False


def read_related(
    reader: NodeReader, node: yaml.Node | None, timezone: tzinfo, path: str
) -> tuple[Related, ...]:
    related = []
    for index, item in enumerate(reader.items(node, "related", "related stories")):
        entry = read_related_item(reader, item, f"related[{index}]", timezone, path)
        if entry is not None:
            related.append(entry)
    return tuple(related)


def read_related_item(
    reader: NodeReader, node: yaml.Node, field: str, timezone: tzinfo, path: str
) -> Related | None:
    fields = reader.fields(node, field)
    if fields is None:
        return None
    reader.unknown(fields, RELATED_FIELDS, field, IGNORED_FIELDS)
    require(reader, node, fields, field, "title")
    require(reader, node, fields, field, "webUrl")
    title = reader.text(
        fields.get("title"), f"{field}.title", required="title" in fields, max_length=MAX_TITLE
    )
    url = reader.url(fields.get("webUrl"), f"{field}.webUrl", required="webUrl" in fields)
    related = Related(
        title=title or "",
        excerpt=reader.text(fields.get("excerpt"), f"{field}.excerpt", max_length=MAX_EXCERPT)
        or "",
        published=reader.timestamp(
            fields.get("publishedDateTime"), f"{field}.publishedDateTime", timezone
        ),
        url=url or "",
        amp_url=reader.url(fields.get("ampWebUrl"), f"{field}.ampWebUrl"),
        cdn_amp_url=reader.url(fields.get("cdnAmpWebUrl"), f"{field}.cdnAmpWebUrl"),
        type=reader.text(fields.get("type"), f"{field}.type", max_length=100) or "article",
        provider=read_provider(reader, fields.get("provider"), f"{field}.provider", url),
        quality=_score(reader, fields.get("quality"), f"{field}.quality"),
        images=read_images(reader, fields.get("images"), f"{field}.images", path),
    )
    return related if title and url else None


def check_unique_slugs(articles: list[Article]) -> list[Diagnostic]:
    """Two stories with one slug would overwrite one page; name both files."""
    first: dict[str, Article] = {}
    problems = []
    for article in articles:
        if article.slug in first:
            other = first[article.slug]
            problems.append(
                Diagnostic(
                    article.source,
                    1,
                    "slug",
                    f"{article.slug!r} is already the slug of {other.source}; rename one file or "
                    "give one story a different 'slug:'",
                )
            )
        else:
            first[article.slug] = article
    return problems
