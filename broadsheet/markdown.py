"""Story bodies: Markdown in, safe HTML out.

Bodies are third-party text, so raw HTML is shown as text, only http(s), mailto and relative
links survive, and the result goes through nh3 (the ammonia sanitiser) with a tag allow-list
as a second, independent layer. Body headings are placed under the page's own `<h1>` (the
story title), starting at `<h2>` and never skipping a level.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import nh3

from .readers import remove_unwanted, url_problem

if TYPE_CHECKING:  # markdown-it is imported when the first body is rendered: a rebuild
    # that reads no story (or only stories without a body) starts 45 ms sooner.
    from markdown_it import MarkdownIt
    from markdown_it.renderer import RendererHTML
    from markdown_it.rules_core import StateCore
    from markdown_it.token import Token
    from markdown_it.utils import EnvType, OptionsDict

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")

_TAGS = {
    "p",
    "br",
    "hr",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "em",
    "strong",
    "del",
    "s",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "img",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
_ATTRIBUTES = {
    "a": {"href", "title", "rel"},
    "img": {"src", "alt", "title", "loading", "decoding", "referrerpolicy"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "code": {"class"},
}


def is_safe_link(url: str) -> bool:
    """True for relative links, mailto and http(s) URLs a browser can follow (browsers ignore
    the whitespace we strip). A malformed http(s) URL (`https://x..example/`, `http:/a`, a
    port past 65535) is refused too: the sanitiser would drop it and leave an `<a>` without
    `href`, which is invalid HTML; refused, the link is shown as the text it was written as."""
    match = _SCHEME.match(_INVISIBLE.sub("", url))
    if match is None:
        return not url.startswith("//") or not url_problem("https:" + url)
    scheme = match.group(1).lower()
    if scheme in ("http", "https"):
        return not url_problem(url)
    return scheme in SAFE_SCHEMES


def _shift_headings(state: StateCore) -> None:
    """Body headings go under the page's `<h1>` (the story title) without skipping a level:
    the body's highest heading becomes `<h2>`, the others keep their distance from it, and
    none is more than one level below the heading before it (`## Why it matters` right after
    the title is `<h2>`; `#` then `####` are `<h2>` then `<h3>`). A skipped level is an error
    for the HTML checker and a gap in the outline that screen readers navigate by."""
    headings = [token for token in state.tokens if token.type == "heading_open"]
    if not headings:
        return
    top = min(int(token.tag[1]) for token in headings)
    previous, level = 1, 1
    for token in state.tokens:
        if token.type == "heading_open":
            level = min(int(token.tag[1]) - top + 2, previous + 1, 6)
            previous = level
            token.tag = f"h{level}"
        elif token.type == "heading_close":
            token.tag = f"h{level}"


def _render_link_open(
    renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    href = str(token.attrGet("href") or "")
    if _SCHEME.match(href) or href.startswith("//"):  # `//host/` is another site too
        token.attrSet("rel", "noopener")
    return renderer.renderToken(tokens, idx, options, env)


def _render_image(
    renderer: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    token.attrSet("loading", "lazy")
    token.attrSet("decoding", "async")
    token.attrSet("referrerpolicy", "no-referrer")
    return renderer.image(tokens, idx, options, env)


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = is_safe_link  # type: ignore[method-assign]
    md.core.ruler.push("shift_headings", _shift_headings)
    md.add_render_rule("link_open", _render_link_open)
    md.add_render_rule("image", _render_image)
    return md


def sanitise_html(html: str, base_url: str | None = None) -> str:
    """The allow-list sanitiser every rendered body passes through.

    With `base_url`, relative links and images are made absolute against it: feeds are read
    away from the page, where a relative link would lead nowhere.
    """

    def absolute(tag: str, attribute: str, value: str) -> str:
        return urljoin(base_url or "", value) if attribute in ("href", "src") else value

    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=set(SAFE_SCHEMES),
        link_rel=None,
        strip_comments=True,
        filter_style_properties={"text-align"},
        attribute_filter=absolute if base_url else None,
    )


def render_markdown(text: str) -> str:
    """Markdown body -> sanitised HTML fragment ('' for an empty body).

    The text was cleaned before it was parsed, but a character reference (`&#x202e;`) decodes
    to any character at all: what it made is cleaned again, the same way.
    """
    if not text.strip():
        return ""
    return sanitise_html(remove_unwanted(_parser().render(text)))
