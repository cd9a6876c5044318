"""Write story files the way a curator would: new ones in the real format, and folds that add
related items to an existing file without touching any of its other lines.

Strings are written as JSON strings, which are valid YAML double-quoted scalars: every
character survives, nothing can be read as a YAML 1.1 boolean, a date or a tag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import yaml

from .feedreader import FeedItem, ItemImage
from .frontmatter import parse_front_matter
from .readers import HOSTNAME
from .validate import MAX_IMAGE_ASPECT, MAX_PROVIDER_NAME, MAX_TITLE


@dataclass(frozen=True)
class Outlet:
    name: str
    domain: str  # a valid host name, or "" (then the story's own URL names the outlet)


def quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def fitted(text: str, limit: int) -> str:
    """`text` cut to the validator's limit, so an import never writes a story that the next
    `build --drafts` refuses. The cut is at a word boundary unless the last word is over
    half the limit long (a 700-character "word" is cut where it must), marked with "…"."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]  # room for the ellipsis
    space = cut.rfind(" ")
    if not text[limit - 1].isspace() and space > limit // 2:
        cut = cut[:space]  # the last word would be cut in two
    return cut.rstrip(" ,;:-–—") + "…"


def provider_lines(outlet: Outlet, indent: str) -> list[str]:
    """`name`, and `domain` only when there is a valid one (quoted all the same)."""
    lines = [f"{indent}name: {quoted(outlet.name)}"]
    if outlet.domain:
        lines.append(f"{indent}domain: {quoted(outlet.domain)}")
    return lines


def timestamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_lines(images: tuple[ItemImage, ...], title: str, indent: str) -> list[str]:
    lines = []
    for image in images:
        lines.append(f"{indent}- url: {quoted(image.url)}")
        if image.width and image.height and max(image.width / image.height,
                                                  image.height / image.width) <= MAX_IMAGE_ASPECT:
            lines += [f"{indent}  width: {image.width}", f"{indent}  height: {image.height}"]
        if title:
            lines.append(f"{indent}  title: {quoted(fitted(title, MAX_TITLE))}")
    return lines


def new_story(item: FeedItem, published: datetime, outlet: Outlet, topics: list[str]) -> str:
    """A draft story file (`published: false`) in the real content format."""
    lines = [
        "---",
        f"title: {quoted(fitted(item.title, MAX_TITLE))}",
        f"excerpt: {quoted(item.excerpt)}" if item.excerpt else "",
        f"publishedDateTime: {timestamp(published)}",
        f"webUrl: {quoted(item.url)}",
        "type: article",
        "published: false",
        "",
        "provider:",
        *provider_lines(outlet, "  "),
    ]
    if topics:
        lines += ["", "topics:", *(f"  - {quoted(topic)}" for topic in topics)]
    if item.images:
        lines += ["", "images:", *image_lines(item.images, item.title, "  ")]
    lines.append("---")
    return "\n".join(line for i, line in enumerate(lines) if line or lines[i - 1]) + "\n"


@dataclass(frozen=True)
class Fold:
    """An item to add to a story's `related:` list, with its date and outlet."""

    item: FeedItem
    published: datetime | None
    outlet: Outlet


def related_lines(fold: Fold, indent: str) -> list[str]:
    """One `related:` entry for a folded item, at the list's own indentation."""
    item, published, outlet = fold.item, fold.published, fold.outlet
    inner = indent + "  "
    lines = [f"{indent}- title: {quoted(fitted(item.title, MAX_TITLE))}"]
    if item.excerpt:
        lines.append(f"{inner}excerpt: {quoted(item.excerpt)}")
    if published is not None:
        lines.append(f"{inner}publishedDateTime: {timestamp(published)}")
    lines += [
        f"{inner}webUrl: {quoted(item.url)}",
        f"{inner}type: article",
        f"{inner}provider:",
        *provider_lines(outlet, inner + "  "),
    ]
    if item.images:
        lines += [f"{inner}images:", *image_lines(item.images[:1], "", inner + "  ")]
    return lines


class FoldImpossible(Exception):
    """The file's `related:` is written in a form we will not edit by hand (say which)."""


def fold_into(text: str, folds: Sequence[Fold]) -> str:
    """`text` with more related items: appended to its block list, or a new `related:`.

    Only lines are inserted; every existing line, comment and blank stays as it was, but
    for a `related:` that holds no items (`related:`, `related: []`, `related: ~`), which
    becomes the head of the block list, its comment kept. Several items at once give the
    text that adding them one by one would, for one parse of the file (2,000 copies of one
    story made import parse a growing file 2,000 times).
    """
    front = parse_front_matter(text, "story")
    if isinstance(front, list) or front.problems:
        problem = front[0] if isinstance(front, list) else front.problems[0]
        raise FoldImpossible(f"its front matter does not parse: {problem}")
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    key, related = next(((k, v) for k, v in front.root.value if k.value == "related"),
                        (None, None))
    if related is None:
        at, indent, block = front.body_line - 2, "  ", ["related:"]  # before the closing ---
    elif _holds_nothing(related):
        assert key is not None
        at = front.first_line - 1 + key.start_mark.line  # the line of `related:`
        head = _EMPTY_RELATED.fullmatch(lines[at].rstrip("\r\n")) if at < len(lines) else None
        if head is None:
            raise FoldImpossible("its empty 'related:' is not on a line of its own")
        lines[at] = "related:" + (f"  {head['comment']}" if head["comment"] else "") + newline
        at, indent, block = at + 1, "  ", []
    else:
        indent, block = list_indent(related), []
        at = list_end(related, front.first_line, lines)
    for fold in folds:
        block += related_lines(fold, indent)
    before = "".join(lines[:at])
    if before and not before.endswith(("\n", "\r")):
        before += newline
    return before + newline.join(block) + newline + "".join(lines[at:])


# A `related:` line with no items: null, ~ or [] (and maybe a comment).
_EMPTY_RELATED = re.compile(
    r"related:[ \t]*(?:~|null|Null|NULL|\[[ \t]*\])?[ \t]*(?P<comment>#.*)?")


def _holds_nothing(related: yaml.Node) -> bool:
    if isinstance(related, yaml.ScalarNode):
        return related.tag.endswith(":null")
    return isinstance(related, yaml.SequenceNode) and not related.value and related.flow_style


def list_indent(related: yaml.Node) -> str:
    """The indentation of the `- ` of a block list's items (refusing any other form)."""
    if not isinstance(related, yaml.SequenceNode) or related.flow_style or not related.value:
        raise FoldImpossible("its 'related:' is not a block list")
    column: int = related.value[0].start_mark.column  # of the first item's first key
    return " " * max(column - 2, 0)


def list_end(related: yaml.Node, first_line: int, lines: list[str]) -> int:
    """The index of the line right after the list's last item (before trailing blanks)."""
    end = first_line - 1 + related.end_mark.line  # 0-based index after the list
    if related.end_mark.column != 0:
        end += 1
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    return end


def outlet_for(feed_title: str, feed_link: str, item_url: str) -> Outlet:
    """The outlet: the feed's title, and the domain of its site (or of the item)."""
    hosts = [(urlsplit(url).hostname or "").lower() for url in (feed_link, item_url)]
    domain = next(filter(None, map(valid_domain, hosts)), "")
    name = feed_title or domain or next(filter(None, hosts), "")
    return Outlet(name=fitted(name, MAX_PROVIDER_NAME), domain=domain)


def valid_domain(host: str) -> str:
    """`host` as the validator accepts it, or "". A feed's link can hold `*.x`, `&a`, `[::1]`
    or `ex%41mple.com`; non-ASCII (IDN) hosts are written in their ASCII (IDNA) form."""
    host = host.rstrip(".")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return ""
    host = host.removeprefix("www.")
    return host if HOSTNAME.fullmatch(host) else ""
