"""Each digest issue as an email: HTML that mail clients render, and a plain-text part.

Mail clients ignore stylesheets and scripts and often strip `<style>`, so the HTML is laid
out with tables and its CSS is inlined into style attributes (css-inline); only the dark-mode
media query stays in a `<style>` block, for the clients that honour it. Every link and image
is absolute: an email is read far from the site.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import css_inline
import jinja2

from .config import Config
from .model import Issue, Site
from .urls import issue_route

EMAIL_HTML = "email.html"
EMAIL_TEXT = "email.txt"
CLIP_BYTES = 102 * 1024  # Gmail clips messages above this size
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False,
                                 minify_css=True)


@dataclass
class LinkReferences:
    """Numbered links for the text part: `links.ref(url)` gives "[3]"; `links.items` lists them."""

    items: list[tuple[int, str]] = field(default_factory=list)
    _numbers: dict[str, int] = field(default_factory=dict)

    def ref(self, url: str) -> str:
        if url not in self._numbers:
            self._numbers[url] = len(self._numbers) + 1
            self.items.append((self._numbers[url], url))
        return f"[{self._numbers[url]}]"


def email_routes(issue: Issue) -> tuple[str, str]:
    folder = issue_route(issue.number)
    return folder + EMAIL_HTML, folder + EMAIL_TEXT


def render_email_html(env: jinja2.Environment, site: Site, config: Config, issue: Issue) -> bytes:
    html = env.get_template(EMAIL_HTML).render(site=site, config=config, issue=issue)
    return _INLINER.inline(html).encode("utf-8")


def render_email_text(env: jinja2.Environment, site: Site, config: Config, issue: Issue) -> bytes:
    text = env.get_template(EMAIL_TEXT).render(site=site, config=config, issue=issue,
                                               links=LinkReferences())
    lines = [line.rstrip() for line in text.splitlines()]
    return ("\n".join(lines).strip() + "\n").encode("utf-8")
