"""build(): load -> validate -> assemble -> render -> write, read top to bottom.

Every story is read and checked before anything renders, and every page renders into a
staging folder before `output/` is replaced, so any error leaves the previous site intact.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import jinja2

from . import urls
from .assemble import assemble_site
from .config import Config, load_config
from .diagnostics import BuildFailed, Diagnostic, Diagnostics
from .feeds import OPML, Feed, plan_feeds, render_feeds, render_opml
from .frontmatter import parse_front_matter
from .images import render_images
from .model import Article, Issue, Site
from .newsletter import email_routes, render_email_html, render_email_text
from .output import OutputError, OutputWriter
from .pictures import ImageStats, PictureBook
from .routes import Page, plan_pages
from .search import index_site
from .sitemap import render_robots, render_sitemap
from .sources import Source, find_story_files, read_sources
from .templates import StaticFiles, make_environment, template_diagnostic
from .urls import ROBOTS, SITEMAP, UrlBuilder, make_slug, output_file, static_route
from .validate import check_unique_slugs, validate_story

Progress = Callable[[str, int, int], None]
FEED_ISSUE_TEMPLATE = "feed-issue.html"


@dataclass(frozen=True)
class BuildOptions:
    drafts: bool = False
    keep_going: bool = False
    output_dir: Path | None = None  # overrides site.yaml's output_dir
    base_url: str | None = None  # overrides site.yaml's base_url (the dev server's own URL)
    offline: bool = False  # use only cached images (images.fetch: false)
    refetch: bool = False  # download again the images that failed before


@dataclass(frozen=True)
class BuildReport:
    config: Config
    site: Site
    pages: int
    files: int
    unchanged: int
    seconds: float
    warnings: list[Diagnostic] = field(default_factory=list)
    images: ImageStats = field(default_factory=ImageStats)


class Sink(Protocol):
    def write(self, name: str, data: bytes) -> None: ...

    def write_file(self, name: str, source: Path) -> None: ...


class DiscardingSink:
    """For `check`: render everything, keep nothing."""

    def __init__(self) -> None:
        self.written: set[str] = set()
        self.unchanged = 0

    def write(self, name: str, data: bytes) -> None:
        self.written.add(name)

    def write_file(self, name: str, source: Path) -> None:
        self.written.add(name)


def build(
    root: Path,
    options: BuildOptions = BuildOptions(),
    progress: Progress | None = None,
    *,
    write: bool = True,
) -> BuildReport:
    """Build the site in `root`; raise BuildFailed (nothing written) on any error."""
    started = time.perf_counter()
    config = configure(load_config(root), options)
    diagnostics = Diagnostics()
    articles = load_articles(config, diagnostics, progress)
    warnings = diagnostics.warnings
    if diagnostics.errors:
        if not options.keep_going:
            raise BuildFailed(diagnostics.items)
        warnings = [d.as_warning() for d in diagnostics.items]
    site = assemble_site(articles, config, include_drafts=options.drafts)
    url_builder = UrlBuilder(config.base_url)
    feeds = plan_feeds(site, config)
    pages = plan_pages(site, config, url_builder, feeds)
    sink = OutputWriter(config.root / config.output_dir) if write else DiscardingSink()
    try:
        if isinstance(sink, OutputWriter):
            with sink:
                pictures = render_site(site, pages, feeds, config, url_builder, sink, progress)
                if config.search:
                    index_site(sink.staging)
        else:
            pictures = render_site(site, pages, feeds, config, url_builder, sink, progress)
    except OutputError as exc:
        raise BuildFailed(
            [Diagnostic(str(config.output_dir), 0, "output_dir", str(exc))],
            "the output folder could not be written",
        ) from None
    return BuildReport(
        config,
        site,
        len(pages),
        len(sink.written),
        sink.unchanged,
        time.perf_counter() - started,
        warnings + pictures.warnings,
        pictures.stats,
    )


def configure(config: Config, options: BuildOptions) -> Config:
    """Apply command-line overrides to the site's config."""
    if options.output_dir is not None:
        config = replace(config, output_dir=options.output_dir)
    if options.base_url is not None:
        config = replace(config, base_url=options.base_url.rstrip("/") + "/")
    if options.offline or options.refetch:
        fetch = config.images.fetch and not options.offline
        images = replace(config.images, fetch=fetch, refetch=options.refetch)
        config = replace(config, images=images)
    return config


# -- load and validate --------------------------------------------------------------------


def load_articles(
    config: Config, diagnostics: Diagnostics, progress: Progress | None = None
) -> list[Article]:
    """Read and validate every story; problems go to `diagnostics`, good stories come back."""
    paths = find_story_files(config.root / config.content_dir)
    articles = []
    for done, item in enumerate(read_sources(paths, config.root), start=1):
        if progress:
            progress("Reading stories", done, len(paths))
        if isinstance(item, Diagnostic):
            diagnostics.extend([item])
            continue
        article = load_article(item, config, diagnostics)
        if article is not None:
            articles.append(article)
    collisions = check_unique_slugs(articles)
    diagnostics.extend(collisions)
    clashing = {(d.path, d.field) for d in collisions}
    return [a for a in articles if (a.source, "slug") not in clashing]


def load_article(source: Source, config: Config, diagnostics: Diagnostics) -> Article | None:
    front = parse_front_matter(source.text, source.shown)
    if isinstance(front, list):
        diagnostics.extend(front)
        return None
    default_slug = make_slug(source.path.stem, "story")
    return validate_story(front, source.shown, default_slug, config, diagnostics)


# -- render and write ---------------------------------------------------------------------


def render_site(
    site: Site,
    pages: list[Page],
    feeds: list[Feed],
    config: Config,
    url_builder: UrlBuilder,
    sink: Sink,
    progress: Progress | None = None,
) -> PictureBook:
    """Render the thumbnails, every page, the feeds, the sitemap, robots.txt and static files
    into `sink`; the pictures tell what the image stage did."""
    static = StaticFiles(config.static_dirs)
    pictures = render_images(site, config, url_builder, sink, progress)
    env = make_environment(config, url_builder, static, pictures)
    problems: list[Diagnostic] = []
    for done, page in enumerate(pages, start=1):
        if progress:
            progress("Rendering pages", done, len(pages))
        try:
            html = render_page(env, page, site, config)
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
            problems.append(template_diagnostic(exc, config, page.route))
            continue
        sink.write(output_file(page.route), html)
    if problems:
        raise BuildFailed(summarise_template_errors(problems))
    write_feeds(feeds, env, site, config, url_builder, sink, pictures)
    write_emails(env, site, config, sink)
    sink.write(SITEMAP, render_sitemap(pages, url_builder))
    sink.write(ROBOTS, render_robots(url_builder))
    for name, path in static.files.items():
        sink.write(static_route(name), path.read_bytes())
    return pictures


def write_feeds(
    feeds: list[Feed],
    env: jinja2.Environment,
    site: Site,
    config: Config,
    url_builder: UrlBuilder,
    sink: Sink,
    pictures: PictureBook,
) -> None:
    """Every feed in every format, and the OPML list of them."""
    if not feeds:
        return
    template = env.get_template(FEED_ISSUE_TEMPLATE)

    def issue_html(issue: Issue) -> str:
        return template.render(site=site, config=config, issue=issue).strip()

    try:
        for route, data in render_feeds(
            feeds, config, url_builder, issue_html, pictures.enclosure_for
        ):
            sink.write(route, data)
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
        raise BuildFailed([template_diagnostic(exc, config, urls.ISSUE_ARCHIVE)]) from None
    sink.write(OPML, render_opml(feeds, config, url_builder))


def write_emails(env: jinja2.Environment, site: Site, config: Config, sink: Sink) -> None:
    """The email edition of every issue: an HTML part and a plain-text part."""
    for issue in site.issues:
        html_route, text_route = email_routes(issue)
        try:
            html = render_email_html(env, site, config, issue)
            text = render_email_text(env, site, config, issue)
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
            raise BuildFailed([template_diagnostic(exc, config, html_route)]) from None
        sink.write(html_route, html)
        sink.write(text_route, text)


def render_page(env: jinja2.Environment, page: Page, site: Site, config: Config) -> bytes:
    template = env.get_template(page.template)
    html = template.render(site=site, config=config, page=page.info, **page.context)
    return html.encode("utf-8")


def summarise_template_errors(problems: list[Diagnostic]) -> list[Diagnostic]:
    """One diagnostic per template bug, not one per page it broke."""

    def key(d: Diagnostic) -> tuple[str, int, str]:
        return (d.path, d.line, d.message.split(": ", 1)[-1])

    counts = Counter(key(d) for d in problems)
    first: dict[tuple[str, int, str], Diagnostic] = {}
    for d in problems:
        first.setdefault(key(d), d)
    return [
        replace(
            d, message=d.message + (f" (and {counts[k] - 1} more pages)" if counts[k] > 1 else "")
        )
        for k, d in first.items()
    ]
