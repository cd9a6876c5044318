"""Assembly: drafts, topics, numbered issues, ranking and folded related coverage."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadsheet.config import IssueSettings
from broadsheet.coverage import canonical_url, fold_coverage, related_keys
from broadsheet.model import Article, Coverage, Provider, Related
from broadsheet.periods import issue_bounds, issue_number
from broadsheet.urls import make_slug

from .conftest import story


def related_item(
    title: str, url: str, outlet: str, domain: str, quality: int = 10, extra: str = ""
) -> str:
    return (
        f'  - title: "{title}"\n    webUrl: "{url}"\n    provider:\n      name: {outlet}\n'
        f"      domain: {domain}\n    quality: {quality}\n{extra}"
    )


# -- topics -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Computer Vision", "computer-vision"),
        ("Küche", "kuche"),
        ("C++", "c-plus-plus"),
        ("C#", "c-sharp"),
        ("AT&T", "at-and-t"),
        ("Москва", "moskva"),
        ("  AI  ", "ai"),
    ],
)
def test_topic_slugs_handle_unicode_and_symbols(name: str, slug: str) -> None:
    assert make_slug(name, "topic") == slug


def test_a_slug_is_never_empty() -> None:
    slug = make_slug("🙂🙂", "topic")
    assert slug.startswith("topic-") and len(slug) == len("topic-") + 8
    assert make_slug("🙂🙂", "topic") == slug
    assert make_slug("🎉", "topic") != slug


@pytest.mark.parametrize(("text", "slug"), [
    ("con", "con_"), ("CON", "con_"), ("Aux", "aux_"), ("nul", "nul_"), ("PRN", "prn_"),
    ("com1", "com1_"), ("LPT9", "lpt9_"), ("com0", "com0_"), ("con_", "con_"),
    ("con.txt", "con-txt"), ("console", "console"), ("com10", "com10"), ("con 1", "con-1"),
])
def test_a_slug_is_never_a_name_windows_reserves(text: str, slug: str) -> None:
    """stories/con/ cannot be checked out on Windows: such a slug gets an underscore,
    which no other text's slug has."""
    assert make_slug(text, "story") == slug


def test_reserved_names_in_content_make_pages_windows_can_hold(make_site) -> None:
    site = make_site({
        "content/con.md": story(extra="topics: [CON, Nul]"),
        "content/Lpt1.md": story(url="https://news.example.com/b"),
        "content/con.txt.md": story(url="https://news.example.com/c"),
    })
    site.build()
    assert {p.name for p in (site.output / "stories").iterdir()} == {"con_", "lpt1_", "con-txt"}
    assert {"con_", "nul_"} <= {p.name for p in (site.output / "topics").iterdir()}
    reserved = {"con", "prn", "aux", "nul", *(f"{d}{n}" for d in ("com", "lpt") for n in range(10))}
    assert not [p for p in site.output.rglob("*") if p.name.split(".")[0].lower() in reserved]


def test_topics_differing_in_case_or_spacing_merge(make_site) -> None:
    site = make_site(
        {
            "content/a.md": story(
                url="https://x.example.com/a", extra="topics:\n  - Computer Vision\n  - AI"
            ),
            "content/b.md": story(
                url="https://x.example.com/b", extra="topics:\n  - computer  vision"
            ),
            "content/c.md": story(
                url="https://x.example.com/c", extra="topics:\n  - Computer Vision\n  - ai\n  - AI"
            ),
        }
    )
    site_model = site.build().site
    assert [(t.name, t.slug, len(t.articles)) for t in site_model.topics] == [
        ("AI", "ai", 2),
        ("Computer Vision", "computer-vision", 3),
    ]
    b = site_model.article("b")
    assert [t.name for t in b.topics] == ["Computer Vision"]  # the common spelling wins
    assert (site.output / "topics/computer-vision/index.html").is_file()


# -- issues -------------------------------------------------------------------------------


def test_weekly_issue_numbers_count_iso_weeks_from_the_epoch() -> None:
    settings = IssueSettings(period="weekly", epoch=date(2020, 1, 20))
    assert issue_number(date(2020, 1, 20), settings) == 1
    assert issue_number(date(2020, 1, 26), settings) == 1  # Sunday ends the week
    assert issue_number(date(2020, 1, 27), settings) == 2
    assert issue_number(date(2020, 1, 19), settings) == 0  # before the epoch
    assert issue_bounds(2, settings) == (date(2020, 1, 27), date(2020, 2, 2))


def test_an_epoch_midweek_counts_from_its_monday() -> None:
    settings = IssueSettings(period="weekly", epoch=date(2020, 1, 22))
    assert issue_number(date(2020, 1, 20), settings) == 1
    assert issue_bounds(1, settings) == (date(2020, 1, 20), date(2020, 1, 26))


def test_daily_and_monthly_periods() -> None:
    daily = IssueSettings(period="daily", epoch=date(2020, 1, 20))
    assert issue_number(date(2020, 2, 1), daily) == 13
    assert issue_bounds(13, daily) == (date(2020, 2, 1), date(2020, 2, 1))
    monthly = IssueSettings(period="monthly", epoch=date(2019, 11, 15))
    assert issue_number(date(2020, 2, 29), monthly) == 4
    assert issue_bounds(4, monthly) == (date(2020, 2, 1), date(2020, 2, 29))
    assert issue_bounds(2, monthly) == (date(2019, 12, 1), date(2019, 12, 31))


def test_issue_numbers_are_stable_when_newer_and_older_stories_are_added(make_site) -> None:
    site = make_site(
        {"content/mid.md": story(when="2020-01-29T10:00:00Z", url="https://x.example.com/mid")}
    )
    first = site.build().site
    assert [i.number for i in first.issues] == [4]
    page_before = (site.output / "issues/4/index.html").read_bytes()
    site.write(
        "content/new.md", story(when="2020-03-02T10:00:00Z", url="https://x.example.com/new")
    )
    site.write(
        "content/old.md", story(when="2020-01-07T10:00:00Z", url="https://x.example.com/old")
    )
    second = site.build().site
    assert [i.number for i in second.issues] == [9, 4, 1]
    assert second.article("mid").issue == 4
    assert (site.output / "issues/4/index.html").is_file()
    assert b"/stories/mid/" in page_before
    assert b"/stories/mid/" in (site.output / "issues/4/index.html").read_bytes()
    assert not (site.output / "issues/2").exists()  # empty periods make no issue


def test_issue_days_are_taken_in_the_site_timezone(make_site) -> None:
    # Sunday 23:30 in New York is already Monday in UTC: the story stays in Sunday's week.
    site_yaml = (
        "title: T\nbase_url: https://example.org/\ntimezone: America/New_York\n"
        "issues:\n  epoch: 2020-01-06\n"
    )
    site = make_site({"content/a.md": story(when="2020-01-27T04:30:00Z")}, site_yaml=site_yaml)
    assert site.build().site.article("a").issue == 3


def test_a_story_can_be_pinned_to_an_issue(make_site) -> None:
    site = make_site({"content/a.md": story(when="2020-01-29T10:00:00Z", extra="issue: 2")})
    assert site.build().site.article("a").issue == 2


def test_stories_before_the_epoch_are_in_no_issue_with_a_warning(make_site) -> None:
    site = make_site({"content/a.md": story(when="2019-12-01T10:00:00Z")})
    report = site.build()
    assert report.site.issues == ()
    assert report.site.article("a").issue is None
    assert [str(w) for w in report.warnings] == [
        "content/a.md:3: warning: publishedDateTime: is before issues.epoch (2020-01-06), so "
        "the story is in no issue; set an earlier epoch or pin it with 'issue:'"
    ]


def test_issue_order_is_picks_then_quality_then_heat_then_time(make_site) -> None:
    def s(slug: str, extra: str, when: str = "2020-01-22T10:00:00Z") -> str:
        return story(title=slug, when=when, url=f"https://x.example.com/{slug}", extra=extra)

    site = make_site(
        {
            "content/low.md": s("low", "quality: 1"),
            "content/pick.md": s("pick", "quality: 0\neditor_pick: true"),
            "content/hot.md": s("hot", "quality: 50\nheat: 9"),
            "content/cold.md": s("cold", "quality: 50\nheat: 1"),
            "content/cold-newer.md": s(
                "cold-newer", "quality: 50\nheat: 1", "2020-01-23T10:00:00Z"
            ),
        }
    )
    issue = site.build().site.issues[0]
    assert [a.slug for a in issue.articles] == ["pick", "hot", "cold-newer", "cold", "low"]
    assert issue.lead.slug == "pick"


def test_issue_sections_group_by_first_topic_in_rank_order(make_site) -> None:
    def s(slug: str, quality: int, topics: str) -> str:
        return story(
            title=slug,
            when="2020-01-22T10:00:00Z",
            url=f"https://x.example.com/{slug}",
            extra=f"quality: {quality}\n{topics}",
        )

    site = make_site(
        {
            "content/lead.md": s("lead", 100, "topics: [Privacy]"),
            "content/p1.md": s("p1", 50, "topics: [Policing, Privacy]"),
            "content/v1.md": s("v1", 40, "topics: [Privacy]"),
            "content/p2.md": s("p2", 30, "topics: [Policing]"),
            "content/none.md": s("none", 20, ""),
        }
    )
    issue = site.build().site.issues[0]
    assert [(sec.title, [a.slug for a in sec.articles]) for sec in issue.sections] == [
        ("Policing", ["p1", "p2"]),
        ("Privacy", ["v1"]),
        ("More stories", ["none"]),
    ]


# -- drafts -------------------------------------------------------------------------------


def test_drafts_are_left_out_unless_asked_for(make_site) -> None:
    site = make_site(
        {
            "content/live.md": story(
                url="https://x.example.com/live", extra="topics: [Secret]\npublished: true"
            ),
            "content/draft.md": story(
                title="Draft story",
                url="https://x.example.com/draft",
                extra="topics: [Secret, Clandestine]\npublished: false",
            ),
        }
    )
    report = site.build()
    assert [a.slug for a in report.site.articles] == ["live"]
    assert [t.slug for t in report.site.topics] == ["secret"]
    every_byte = b"".join(site.files().values())
    assert b"Draft story" not in every_byte and b"/stories/draft/" not in every_byte
    assert b"clandestine" not in every_byte.lower()
    with_drafts = site.build(drafts=True)
    assert {a.slug for a in with_drafts.site.articles} == {"live", "draft"}
    assert (site.output / "stories/draft/index.html").is_file()


# -- related coverage ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "canonical"),
    [
        (
            "https://www.theverge.com/platform/amp/2020/1/30/moscow",
            "https://www.theverge.com/2020/1/30/moscow",
        ),
        (
            "https://www-theverge-com.cdn.ampproject.org/c/s/www.theverge.com/platform/amp/2020/"
            "1/30/moscow",
            "https://www.theverge.com/2020/1/30/moscow",
        ),
        (
            "https://www.nytimes.com/2020/01/24/technology/clearview.amp.html",
            "https://www.nytimes.com/2020/01/24/technology/clearview.html",
        ),
        (
            "https://www.forbes.com/sites/x/findface/amp/",
            "https://www.forbes.com/sites/x/findface/",
        ),
        (
            "https://uk.reuters.com/article/x-id1?feedType=RSS&feedName=tech&utm_source=rss",
            "https://uk.reuters.com/article/x-id1",
        ),
        ("http://example.com/a/?b=2&a=1#top", "https://www.example.com/a?a=1&b=2"),
    ],
)
def test_url_variants_of_one_page_compare_equal(variant: str, canonical: str) -> None:
    assert canonical_url(variant) == canonical_url(canonical)


def test_different_pages_stay_different() -> None:
    assert canonical_url("https://www.campusreform.org/?ID=14269") != canonical_url(
        "https://www.campusreform.org/?ID=14270"
    )
    assert canonical_url("https://example.com/amplifier") != canonical_url("https://example.com/")


def test_duplicate_coverage_is_folded_keeping_the_best_copy(make_site) -> None:
    related = "related:\n" + "".join(
        [
            related_item(
                "British watchdog urges caution",
                "https://uk.reuters.com/article/x-idUK1",
                "Reuters",
                "reuters.com",
                80,
            ),
            related_item(
                "Moscow rolls out cameras",
                "https://www.theverge.com/2020/moscow",
                "The Verge",
                "theverge.com",
                187,
            ),
            related_item(
                "British watchdog urges caution",
                "https://www.reuters.com/article/x-idUS2",
                "Reuters",
                "reuters.com",
                89,
            ),
            related_item(
                "Moscow rolls out cameras (AMP)",
                "https://www.theverge.com/platform/amp/2020/moscow",
                "The Verge",
                "theverge.com",
                5,
            ),
            related_item(
                "Our own story syndicated",
                "https://x.example.com/a?utm_source=feed",
                "Elsewhere",
                "elsewhere.example",
                99,
            ),
        ]
    )
    site = make_site({"content/a.md": story(url="https://x.example.com/a", extra=related)})
    article = site.build().site.article("a")
    assert [(r.title, r.quality, r.url) for r in article.related] == [
        ("British watchdog urges caution", 89, "https://www.reuters.com/article/x-idUS2"),
        ("Moscow rolls out cameras", 187, "https://www.theverge.com/2020/moscow"),
    ]
    assert [(c.outlet, c.url) for c in article.related[0].also] == [
        ("Reuters", "https://uk.reuters.com/article/x-idUK1")
    ]
    assert article.related[1].also == ()  # the AMP copy of the same page adds nothing


def test_sample_story_reuters_pair_becomes_one_entry(sample_site, tmp_path) -> None:
    report = sample_site.build(drafts=True, output_dir=tmp_path / "drafts")
    draft = report.site.article("met-police-live-facial-recognition")
    reuters = [r for r in draft.related if r.provider.name == "Reuters"]
    assert len(reuters) == 1
    assert len(reuters[0].also) == 1
    assert len(draft.related) == 34  # 35 listed, one duplicate


def reference_fold(items: list[Related], own_urls: set[str]) -> tuple[Related, ...]:
    """Folding as first written: plain, with every merge rewriting its keys one by one."""
    groups: list[list[Related]] = []
    group_of: dict[str, int] = {}
    for item in items:
        keys = frozenset(related_keys(item))
        if keys & own_urls:
            continue
        found = sorted({group_of[k] for k in keys if k in group_of})
        if not found:
            groups.append([item])
            index = len(groups) - 1
        else:
            index = found[0]
            groups[index].append(item)
            for other in found[1:]:
                groups[index].extend(groups[other])
                groups[other] = []
                group_of.update({k: index for k, v in group_of.items() if v == other})
        group_of.update({k: index for k in keys})
    kept = []
    for group in groups:
        if group:
            best = max(group, key=lambda item: (item.quality, -group.index(item)))
            seen, also = {canonical_url(best.url)}, []
            for item in group:
                if canonical_url(item.url) not in seen:
                    seen.add(canonical_url(item.url))
                    also.append(Coverage(item.provider.name, item.url))
            kept.append(replace(best, also=tuple(also)) if also else best)
    return tuple(kept)


URLS = ["https://a.example/1", "https://www.a.example/1/", "https://a.example/2",
        "https://b.example/3?utm_source=x", "https://b.example/3", "https://c.example/4"]
RELATED = st.builds(
    lambda url, amp, title, domain, quality: Related(
        title, "", None, url, amp, None, "news", Provider(domain, domain), quality, ()),
    st.sampled_from(URLS), st.none() | st.sampled_from(URLS), st.sampled_from("XYZ"),
    st.sampled_from(["a.example", "b.example"]), st.integers(0, 3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(RELATED, max_size=14), st.booleans())
def test_folding_keeps_what_plain_folding_keeps(items: list[Related], own: bool) -> None:
    """Groups, their order, the copy kept and its `also` links: as the plain way gives."""
    own_urls = {canonical_url(URLS[0])} if own else set()
    folded = fold_coverage(items, own_urls)
    assert tuple(item for item, _ in folded) == reference_fold(items, own_urls)


def test_coverage_that_is_also_a_story_here_links_to_it(make_site) -> None:
    site = make_site(
        {
            "content/a.md": story(
                url="https://x.example.com/a",
                extra="related:\n"
                + related_item("B", "https://www.other.example/b/amp/", "Other", "other.example"),
            ),
            "content/b.md": story(title="B", url="https://other.example/b"),
        }
    )
    article = site.build().site.article("a")
    assert article.related[0].story_slug == "b"


def story_with_related(count: int, **fields: object) -> Article:
    """An Article made by hand with `count` related items (the model tests' story)."""
    from dataclasses import replace

    when = datetime(2024, 5, 1, tzinfo=UTC)
    outlet = Provider("Outlet", "")
    related = tuple(Related(f"T{n}", "", when, f"https://o.example/{n}", None, None, "news",
                            outlet, 1, ()) for n in range(count))
    article = Article("content/a.md", "a", "A", "", when, "https://o.example/a", "", "news",
                      1, 1, False, outlet, (), (), related, False, None, "")
    return replace(article, **fields)


def test_related_slugs_and_key_hashes_follow_each_story_object() -> None:
    """related_slugs and related_key_hashes keep what they worked out in the story's state:
    a story made anew (as assembly does when it links coverage) gets its own, never a stale
    copy."""
    from dataclasses import replace

    from broadsheet.model import CoverageKeys, key_hash, related_key_hashes, related_slugs

    article = story_with_related(2)
    assert related_slugs(article) == (None, None)
    linked = replace(article, related=tuple(replace(item, story_slug=f"s{n}")
                                            for n, item in enumerate(article.related)))
    assert related_slugs(linked) == ("s0", "s1")
    assert related_slugs(article) == (None, None)
    keyed = replace(article, coverage=CoverageKeys("a", (frozenset({"x"}), frozenset())))
    assert related_key_hashes(keyed) == key_hash("x") != related_key_hashes(
        replace(keyed, coverage=CoverageKeys("a", (frozenset({"y"}), frozenset()))))
    assert related_key_hashes(keyed) == key_hash("x")  # kept, and still its own


def test_linking_and_head_changes_leave_a_cached_story_unloaded() -> None:
    """A story from the build cache (model.lazy_article) linked to other stories' pages or
    given its canonical topics and issue by assembly is copied with its blobs unread; its
    fields, when read, are those dataclasses.replace would have given."""
    from dataclasses import replace

    from broadsheet.model import (
        CoverageKeys,
        TopicRef,
        lazy_article,
        related_slugs,
        relink,
        split_article,
        with_head,
    )

    article = story_with_related(3, topics=(TopicRef("ai", "ai"),), body_html="<p>Body</p>",
                                 issue=4, coverage=CoverageKeys("a", (frozenset({"x"}),) * 3))
    related = article.related

    def cached() -> Article:
        return lazy_article(*split_article(article))

    linked = relink(with_head(cached(), topics=(TopicRef("AI", "ai"),), issue=5),
                    ("b", None, "c"))
    assert not {"related", "body_html", "coverage"} & vars(linked).keys()
    assert related_slugs(linked) == ("b", None, "c")
    expected = replace(article, topics=(TopicRef("AI", "ai"),), issue=5, related=tuple(
        replace(item, story_slug=slug) for item, slug in zip(related, ("b", None, "c"),
                                                              strict=True)))
    assert linked == expected  # reading the fields loads them, links applied
    assert linked.coverage == article.coverage
    assert with_head(linked, issue=6).issue == 6 and linked.issue == 5  # loaded: replaced
