"""sitemap.xml and robots.txt: how search engines find every page, with dates from content."""

from __future__ import annotations

from .routes import Page
from .urls import SITEMAP, UrlBuilder
from .xmltext import escape


def render_sitemap(pages: list[Page], urls: UrlBuilder) -> bytes:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">',
    ]
    for page in pages:
        if not page.info.in_sitemap:
            continue
        lines.append(f"  <url><loc>{escape(urls.absolute(page.route))}</loc>")
        lastmod = page.info.updated
        if lastmod is not None:
            lines.append(f"    <lastmod>{lastmod.isoformat(timespec='seconds')}</lastmod>")
        lines.append("  </url>")
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def render_robots(urls: UrlBuilder) -> bytes:
    return f"User-agent: *\nAllow: /\n\nSitemap: {urls.absolute(SITEMAP)}\n".encode()
