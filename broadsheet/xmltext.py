"""Escaping text for hand-written XML (feeds' HTML parts, OPML, the sitemap).

The same results as xml.sax.saxutils.escape and quoteattr, without importing that module:
it imports urllib.request and with it http.client, ssl and email, a tenth of the time a
one-story rebuild takes.
"""

from __future__ import annotations

_TEXT = (("&", "&amp;"), (">", "&gt;"), ("<", "&lt;"))
_ATTRIBUTE = (*_TEXT, ("\n", "&#10;"), ("\r", "&#13;"), ("\t", "&#9;"))


def escape(text: str) -> str:
    """`&`, `<` and `>` as entities: safe as element text."""
    for char, entity in _TEXT:
        text = text.replace(char, entity)
    return text


def quoteattr(text: str) -> str:
    """An attribute value with its quotes, escaped for either quoting."""
    for char, entity in _ATTRIBUTE:
        text = text.replace(char, entity)
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return '"{}"'.format(text.replace('"', "&quot;"))
