"""Articles -> Site: drafts, folded coverage, topics, numbered issues, order. Pure, no IO.

Issue numbers come from the distance between a story's period and `issues.epoch`, never from
a running count, so adding an older or newer story can never renumber an existing issue.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from .config import Config, IssueSettings
from .coverage import prepare_coverage
from .model import (
    Article,
    Issue,
    Section,
    Site,
    Topic,
    TopicRef,
    forget,
    key_hash,
    own_key,
    related_key_hashes,
    related_slugs,
    relink,
    with_head,
)
from .periods import issue_bounds, issue_number


def assemble_site(
    articles: Iterable[Article],
    config: Config,
    include_drafts: bool = False,
    links: LinkMemo | None = None,
) -> Site:
    """Build the site model from validated articles; `links` (updated in place) lets a
    rebuild link coverage only where a change can have moved a link."""
    chosen = [a for a in articles if include_drafts or not a.is_draft]
    chosen = link_coverage(chosen, links)
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


@dataclass
class LinkMemo:
    """What the last linking found, so a rebuild redoes only what a change can move.

    A story's links are a function of its own coverage keys (fixed by its file: `found` is
    keyed by the digest its fingerprint builds on, see stories.Loaded.parsed) and of the
    site's map from story URL keys to slugs. When neither changed for the keys a story
    uses, its links are the same: only stories whose coverage meets a key that changed
    meaning (a story added, removed, re-slugged or given another URL) are looked up again."""

    parsed: Mapping[str, str] = field(default_factory=dict)  # this build's: source -> digest
    slug_by_url: dict[str, str] = field(default_factory=dict)
    found: dict[str, tuple[str, tuple[str | None, ...]]] = field(default_factory=dict)
    relinked: dict[str, Article] = field(default_factory=dict)  # by source: linked anew


def link_coverage(articles: list[Article], memo: LinkMemo | None = None) -> list[Article]:
    """Fold duplicate coverage and point coverage that is also a story here at its page.

    With a memo, the stories whose links changed are also put in `memo.relinked`: the
    build cache keeps them as linked, so the next build copies none of them again."""
    prepared = [a if own_key(a) is not None else prepare_coverage(a) for a in articles]
    slug_by_url = {own: a.slug for a in prepared if (own := own_key(a)) is not None}
    moved = _moved_keys(memo.slug_by_url, slug_by_url) if memo is not None else None
    hashes = tuple(key_hash(key) for key in moved or ())
    found: dict[str, tuple[str, tuple[str | None, ...]]] = {}
    relinked: dict[str, Article] = {}
    linked = []
    for article in prepared:
        slugs = _known_links(article, memo, moved, hashes) if memo is not None else None
        if slugs is None:
            assert article.coverage is not None
            slugs = tuple(_first_match(keys, slug_by_url) for keys in article.coverage.related)
        forget(article, "coverage")  # read by linking alone: kept, every story's stayed
        parsed = memo.parsed.get(article.source) if memo is not None else None
        if parsed is not None:
            found[article.source] = (parsed, slugs)
        if slugs != related_slugs(article):
            article = relinked[article.source] = relink(article, slugs)
        linked.append(article)
    if memo is not None:
        memo.slug_by_url, memo.found, memo.relinked = slug_by_url, found, relinked
    return linked


def _moved_keys(before: dict[str, str], after: dict[str, str]) -> frozenset[str]:
    """The URL keys that lead to another story (or none) than in the last build."""
    if before == after:
        return frozenset()
    return frozenset(
        key for key in before.keys() | after.keys() if before.get(key) != after.get(key)
    )


def _known_links(
    article: Article, memo: LinkMemo, moved: frozenset[str] | None, hashes: tuple[bytes, ...]
) -> tuple[str | None, ...] | None:
    """The story's links as the last build found them, when nothing can have moved them.

    Whether a story's coverage meets a moved key is first asked of the hashes of its keys
    (model.related_key_hashes), which a cached story holds without its tail; only a story
    that may meet one loads its keys to be sure."""
    known = memo.found.get(article.source)
    if known is None or moved is None or known[0] != memo.parsed.get(article.source):
        return None
    if moved:
        packed = related_key_hashes(article)
        if any(h in packed for h in hashes):
            assert article.coverage is not None
            if not all(keys.isdisjoint(moved) for keys in article.coverage.related):
                return None
    return known[1]


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
    odd = {(slug, name) for slug, counts in spellings.items() for name in counts
           if name != names[slug]}
    if not odd:  # every topic spelled one way: the usual case, no story to look at again
        return articles
    return [
        article
        if not any((t.slug, t.name) in odd for t in article.topics)
        else with_head(article,
                       topics=tuple(TopicRef(names[t.slug], t.slug) for t in article.topics))
        for article in articles
    ]


def assemble_topics(articles: list[Article]) -> tuple[Topic, ...]:
    """Topics in alphabetical order, each with its stories newest first: in the order of
    `articles`, which assemble_site sorted (sorting each topic again cost a sixth of
    assembly)."""
    by_slug: dict[str, list[Article]] = defaultdict(list)
    names: dict[str, str] = {}
    for article in articles:
        for topic in article.topics:
            by_slug[topic.slug].append(article)
            names[topic.slug] = topic.name
    topics = [
        Topic(names[slug], slug, tuple(items))
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
        assigned.append(article if article.issue == number else with_head(article, issue=number))
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
