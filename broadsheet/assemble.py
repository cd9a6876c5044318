"""Articles -> Site: drafts, folded coverage, topics, numbered issues, order. Pure, no IO.

Issue numbers come from the distance between a story's period and `issues.epoch`, never from
a running count, so adding an older or newer story can never renumber an existing issue.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace
from zoneinfo import ZoneInfo

from .config import Config, IssueSettings
from .coverage import prepare_coverage
from .model import Article, Issue, Section, Site, Topic, TopicRef
from .periods import issue_bounds, issue_number


def assemble_site(
    articles: Iterable[Article], config: Config, include_drafts: bool = False
) -> Site:
    """Build the site model from validated articles."""
    chosen = [a for a in articles if include_drafts or not a.is_draft]
    chosen = link_coverage(chosen)
    chosen = canonical_topics(chosen)
    chosen = assign_issues(chosen, config.issues, config.tz)
    chosen.sort(key=newest_first)
    site = Site(
        articles=tuple(chosen),
        topics=assemble_topics(chosen),
        issues=assemble_issues(chosen, config.issues),
        include_drafts=include_drafts,
    )
    return site


def newest_first(article: Article) -> tuple[float, str]:
    return (-article.published.timestamp(), article.slug)


def rank(article: Article) -> tuple[bool, int, int, float, str]:
    """Issue order: editor's picks, then quality, then heat, then newest."""
    return (
        not article.editor_pick,
        -article.quality,
        -article.heat,
        -article.published.timestamp(),
        article.slug,
    )


# -- related coverage ---------------------------------------------------------------------


def link_coverage(articles: list[Article]) -> list[Article]:
    """Fold duplicate coverage and point coverage that is also a story here at its page."""
    prepared = [a if a.coverage is not None else prepare_coverage(a) for a in articles]
    slug_by_url = {a.coverage.own: a.slug for a in prepared if a.coverage is not None}
    linked = []
    for article in prepared:
        assert article.coverage is not None
        slugs = [_first_match(keys, slug_by_url) for keys in article.coverage.related]
        if slugs != [item.story_slug for item in article.related]:
            related = tuple(
                item if item.story_slug == slug else replace(item, story_slug=slug)
                for slug, item in zip(slugs, article.related, strict=True)
            )
            article = replace(article, related=related)
        linked.append(article)
    return linked


def _first_match(keys: frozenset[str], slug_by_url: dict[str, str]) -> str | None:
    found = keys & slug_by_url.keys()  # a set operation: most items match no story here
    return min(slug_by_url[k] for k in found) if found else None


# -- topics -------------------------------------------------------------------------------


def canonical_topics(articles: list[Article]) -> list[Article]:
    """One display name per topic slug: the spelling most stories use (ties: alphabetical)."""
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    for article in articles:
        for topic in article.topics:
            spellings[topic.slug][topic.name] += 1
    names = {slug: min(counts, key=lambda n: (-counts[n], n)) for slug, counts in spellings.items()}
    return [
        article
        if all(names[t.slug] == t.name for t in article.topics)
        else replace(article, topics=tuple(TopicRef(names[t.slug], t.slug) for t in article.topics))
        for article in articles
    ]


def assemble_topics(articles: list[Article]) -> tuple[Topic, ...]:
    """Topics in alphabetical order, each with its stories newest first."""
    by_slug: dict[str, list[Article]] = defaultdict(list)
    names: dict[str, str] = {}
    for article in articles:
        for topic in article.topics:
            by_slug[topic.slug].append(article)
            names[topic.slug] = topic.name
    topics = [
        Topic(names[slug], slug, tuple(sorted(items, key=newest_first)))
        for slug, items in by_slug.items()
    ]
    return tuple(sorted(topics, key=lambda t: (t.name.casefold(), t.slug)))


# -- issues -------------------------------------------------------------------------------


def assign_issues(articles: list[Article], settings: IssueSettings, tz: ZoneInfo) -> list[Article]:
    """Give each story its issue: pinned with `issue:`, or the period of its local date.

    Stories before the epoch's period are in no issue (validation warned about them).
    """
    assigned = []
    for article in articles:
        number = issue_of(article, settings, tz)
        assigned.append(article if article.issue == number else replace(article, issue=number))
    return assigned


def issue_of(article: Article, settings: IssueSettings, tz: ZoneInfo) -> int | None:
    """The issue a story belongs in: it depends on the story and the config alone, so the
    build cache stores stories with it (assembly then copies none of them)."""
    number = article.pinned_issue or issue_number(article.published.astimezone(tz).date(), settings)
    return number if number >= 1 else None


def assemble_issues(articles: list[Article], settings: IssueSettings) -> tuple[Issue, ...]:
    """Issues newest first; a period with no stories has no issue."""
    by_number: dict[int, list[Article]] = defaultdict(list)
    for article in articles:
        if article.issue is not None:
            by_number[article.issue].append(article)
    issues = []
    for number in sorted(by_number, reverse=True):
        ranked = tuple(sorted(by_number[number], key=rank))
        start, end = issue_bounds(number, settings)
        issues.append(
            Issue(
                number=number,
                start=start,
                end=end,
                period=settings.period,
                articles=ranked,
                sections=assemble_sections(ranked[1:]),
            )
        )
    return tuple(issues)


def assemble_sections(ranked: tuple[Article, ...]) -> tuple[Section, ...]:
    """Stories after the lead, grouped by their first topic, sections in order of their best
    story; stories with no topic close the issue under "More stories"."""
    groups: dict[str | None, list[Article]] = {}
    refs: dict[str, TopicRef] = {}
    for article in ranked:
        topic = article.topics[0] if article.topics else None
        key = topic.slug if topic else None
        if topic:
            refs[topic.slug] = topic
        groups.setdefault(key, []).append(article)
    sections = [
        Section(refs[key].name, refs[key], tuple(items))
        for key, items in groups.items()
        if key is not None
    ]
    if None in groups:
        sections.append(Section("More stories", None, tuple(groups[None])))
    return tuple(sections)
