"""Content validation: every problem in every file, one pass, with file, line and field."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from broadsheet import sources, stories
from broadsheet.diagnostics import Diagnostic, Diagnostics, Severity

from .conftest import REPO, refuse_to_list, story

INVALID = Path(__file__).parent / "invalid"
CASES = sorted(INVALID.glob("*.md"))


def expected_lines(case: Path) -> list[str]:
    return case.with_suffix(".expected").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_invalid_story_gives_its_expected_diagnostics(make_site, case: Path) -> None:
    site = make_site()
    shutil.copy(case, site.root / "content" / case.name)
    errors = [str(d) for d in site.fail() if d.is_error]
    assert errors == expected_lines(case)


def test_the_error_count_follows_every_way_of_adding() -> None:
    """Validation asks the count after each image (counting the list each time made a file
    of 20,000 bad images take minutes), so it must match the list however it grew."""
    error, warning = Diagnostic("a.md", 1, "x", "bad"), Diagnostic("a.md", 2, "y", "odd",
                                                                    Severity.WARNING)
    diagnostics = Diagnostics([error, warning])
    assert diagnostics.error_count == 1
    diagnostics.error("a.md", 3, "z", "bad")
    diagnostics.warning("a.md", 4, "z", "odd")
    diagnostics.extend([error, warning])
    diagnostics.extend(Diagnostics([error, error, warning]))
    assert diagnostics.error_count == len(diagnostics.errors) == 5


# Documents the composer accepts, with and without what the node check refuses: a quick
# walk lets most documents skip the full check, so both ways must agree.
NODE_CHECK_CASES = [
    "title: R & D\nsource: U.S. News & World Report\n",
    "webUrl: https://example.com/?a=1&b=2\ntitle: Wow! Great\n",
    "title: &t Hello\nexcerpt: *t\n",
    "title: &t Hello\n",
    "a: [&x 1, *x]\n",
    "title: !!str yes\n",
    "title: ! plain\n",
    "title: !!python/name:os.system ''\n",
    "base: &b {x: 1}\nother:\n  <<: *b\n",
    "other:\n  <<: {x: 1}\n",
    "key: =\n",
    "title: a\ntitle: b\n",
    "related:\n  - title: a\n    provider: {name: x, name: y}\n",
    "related:\n  - {title: a}\n  - {title: b, title: c}\n",
    "? [a, b]\n: c\n",
    "? {a: 1}\n: c\n",
    "list:\n  - - a\n    - b: 1\n      b: 2\n",
    "~: x\nnull: y\n",
    "tabbed:\t&a x\n",
    "title: x\n\u2028&a: y\n",
    'x: {"a":&x [1], "b": *x}\n',  # a property right after a JSON-like key's colon
    'x: {"a":!!python/object:os.system 1}\n',
    "a: &a [1, 1]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c]\n",  # a small "billion laughs"
    "? &k a\n: 1\nb: *k\n",
    "!!python/name:os.system k: 1\n",
    "!!str k: 1\n",
    # With no tag or alias in the text (a `!` after a letter or digit is text), only the keys
    # are walked: what is left to find must still be found.
    "url: https://x.test/1580616519!/a.jpg\nk: 1\nk: 2\n",
    "title: Wow!\nlist: [a, b, {c: 1, c: 2}]\n",
    "title: Wow!\nlist:\n  - - x\n    - {a: 1, b: 2, a: 3}\n",
    "url: x!y\n? [a]\n: b\n",
    "url: x!y\n? {a: 1}\n: b\n",
    "url: photo!/x.jpg\nk: =\n",
    "url: photo!/x.jpg\nother:\n  <<: {x: 1}\n",
    "url: photo!/x.jpg\nbase: &b {x: 1}\nother:\n  <<: *b\n",
    "b:\n\ufeff!foo x\n",  # YAML skips a BOM that starts a line: then a tag
    "a: &a [1]\nb:\n\ufeff*a\n",  # or an alias
    "x: [1,*a]\n",
    "title: Wow!\nrelated:\n  - title: a\n    provider: {name: x, domain: y}\n",
]


@pytest.mark.parametrize("text", NODE_CHECK_CASES)
def test_the_quick_node_check_agrees_with_the_full_one(text: str) -> None:
    from broadsheet import frontmatter

    got = frontmatter.compose_mapping(text, "x.md", 2, what="front matter")
    try:
        loader = frontmatter._Loader(text)
        root = loader.get_single_node()
        loader.dispose()
    except Exception:  # the composer itself refuses it: both ways report the same error
        assert isinstance(got, list) and len(got) == 1
        return
    full = frontmatter._check_nodes(root, "x.md", 2, text)
    assert (got if isinstance(got, list) else []) == full


def test_every_error_in_every_file_is_reported_in_one_pass(make_site) -> None:
    site = make_site({"content/good.md": story()})
    for case in CASES:
        shutil.copy(case, site.root / "content" / case.name)
    errors = {str(d) for d in site.fail() if d.is_error}
    wanted = {line for case in CASES for line in expected_lines(case)}
    assert errors == wanted
    assert not site.output.exists()


def test_cli_shows_diagnostics_without_traceback(make_site) -> None:
    site = make_site()
    for case in CASES:
        shutil.copy(case, site.root / "content" / case.name)
    result = subprocess.run(
        [sys.executable, str(REPO / "build.py"), "--site", str(site.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        "content/bad_urls.md:14: related[3].webUrl: expected an http(s) URL, got "
        "' JaVaScRiPt:alert(1)'"
    ) in result.stderr
    assert "Build failed:" in result.stderr


def test_unreadable_file_is_a_diagnostic(make_site) -> None:
    site = make_site({"content/good.md": story()})
    (site.root / "content" / "gone.md").symlink_to(site.root / "nowhere.md")
    assert any(m.startswith("content/gone.md: cannot be read") for m in site.messages())


def test_story_files_that_are_not_regular_files_are_refused_unread(make_site) -> None:
    """A FIFO would block the build forever and a link to /dev/zero would fill the memory:
    they are refused by what stat() says, before they are opened."""
    site = make_site({"content/good.md": story()})
    os.mkfifo(site.root / "content" / "pipe.md")
    (site.root / "content" / "zero.md").symlink_to("/dev/zero")
    messages = site.messages()
    for name in ("pipe", "zero"):
        assert f"content/{name}.md: is not a regular file (a device, a pipe or a socket); a " \
            "story must be a Markdown file" in messages


def test_a_file_tells_its_first_hundred_problems_and_counts_the_rest(make_site) -> None:
    keys = "".join(f"k{i}: 1\nk{i}: 2\n" for i in range(150))  # 150 errors, 150 warnings
    site = make_site({"content/a.md": story(extra=keys)})
    messages = site.messages()
    assert len(messages) == 101
    assert messages[99] == "content/a.md:204: k99: duplicate key (first given on line 203)"
    assert messages[100] == "content/a.md:206: and 200 more problems in this file"


def test_story_files_linked_from_outside_the_site_are_not_read(make_site, tmp_path) -> None:
    site = make_site({"content/good.md": story(), "drafts/inside.md": story(
        title="Inside", url="https://x.example.com/i")})
    outside = tmp_path / "elsewhere.md"
    outside.write_text(story(title="Outside", url="https://x.example.com/o"))
    (site.root / "content" / "outside.md").symlink_to(outside)
    (site.root / "content" / "inside.md").symlink_to(site.root / "drafts" / "inside.md")
    assert site.messages() == ["content/outside.md: is a link to a file outside the site "
                               "folder; copy the story into the site instead"]
    (site.root / "content" / "outside.md").unlink()
    assert site.build().site.article("inside").title == "Inside"


def test_a_folder_linked_into_content_is_not_read_and_says_so(make_site, tmp_path) -> None:
    """A symlinked folder is not followed (it may lead to /etc, or loop), but its stories
    do not vanish without a word: the build warns, naming the link, and still succeeds."""
    site = make_site({"content/good.md": story()})
    shared = tmp_path / "shared-stories"
    shared.mkdir()
    (shared / "other.md").write_text(story(title="Other", url="https://x.example.com/o"))
    (site.root / "content" / "shared").symlink_to(shared)
    report = site.build()
    assert [a.slug for a in report.site.articles] == ["good"]
    assert [(w.path, w.message) for w in report.warnings] == [
        ("content/shared", "is a link to a folder, whose stories are not read (links to "
         "folders are not followed); move or copy the folder into content/ instead")]


def test_a_story_file_that_grows_past_the_limit_after_its_stat_is_refused(
        make_site, monkeypatch) -> None:
    """What is read is bounded too, not only what stat() said before the read."""
    site = make_site({"content/good.md": story(body="x" * 2000)})
    monkeypatch.setattr(stories, "MAX_STORY_BYTES", 1000)
    monkeypatch.setattr(sources, "MAX_STORY_BYTES", 1000)
    real_stat = os.stat

    def small(path, *args, **kwargs):  # the file as it was before it grew
        found = real_stat(path, *args, **kwargs)
        if str(path).endswith("good.md"):
            return os.stat_result((*found[:6], 100, *found[7:]))
        return found

    monkeypatch.setattr(stories.os, "stat", small)
    assert any(m.startswith("content/good.md: is 0 KiB; a story file may be at most")
               for m in site.messages())


def test_a_folder_that_cannot_be_listed_is_an_error_not_a_silent_gap(
        make_site, monkeypatch) -> None:
    site = make_site({"content/good.md": story(), "content/locked/inner.md": story()})
    refuse_to_list(monkeypatch, "locked")
    assert "content/locked: cannot be read: Permission denied" in site.messages()


def test_yaml_1_1_words_stay_strings_where_text_is_expected(make_site) -> None:
    site = make_site(
        {
            "content/no.md": story(
                extra="provider:\n  name: yes\n  domain: "
                "no.example.com\ntopics:\n  - on\n  - null\n"
                "category: off"
            )
        }
    )
    (site.root / "content" / "no.md").write_text(
        (site.root / "content" / "no.md").read_text().replace('title: "A story"', "title: no")
    )
    site.write(
        "content/n.md",
        story(title="x", url="https://news.example.com/n").replace('title: "x"', "title: 2020"),
    )
    errors = [d for d in site.fail() if d.is_error]
    # `- null` in topics is an empty topic: the only error; everything else is text.
    assert [str(e) for e in errors] == ["content/no.md:10: topics[1]: must not be empty"]
    site.write(
        "content/no.md", site.root.joinpath("content/no.md").read_text().replace("  - null\n", "")
    )
    report = site.build()
    article = report.site.article("no")
    assert article is not None
    assert article.title == "no"
    assert article.provider.name == "yes"
    assert [t.name for t in article.topics] == ["on"]
    assert article.category == "off"
    assert report.site.article("n").title == "2020"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2020-01-24T18:24:00Z", datetime(2020, 1, 24, 18, 24, tzinfo=UTC)),
        (
            "2020-01-24 18:24:00+01:00",
            datetime(2020, 1, 24, 18, 24, tzinfo=timezone(timedelta(hours=1))),
        ),
        ("Fri, 24 Jan 2020 18:24:00 +0000", datetime(2020, 1, 24, 18, 24, tzinfo=UTC)),
        (
            "2020-01-24T18:24:00.123456Z",
            datetime(2020, 1, 24, 18, 24, 0, 123456, tzinfo=UTC),
        ),
    ],
)
def test_date_formats_accepted(make_site, written: str, expected: datetime) -> None:
    site = make_site({"content/a.md": story(when=f'"{written}"')})
    article = site.build().site.article("a")
    assert article is not None and article.published == expected


def test_offsets_must_be_whole_minutes_and_real(make_site) -> None:
    """Feeds, sitemaps and HTML cannot write `+05:30:15`; no zone is ahead by 23:59."""
    site = make_site({
        "content/a.md": story(when='"2020-01-24T18:24:00+05:30:15"'),
        "content/b.md": story(when='"2020-01-24T18:24:00+23:59"', url="https://x.example.com/b"),
    })
    assert site.messages() == [
        "content/a.md:3: publishedDateTime: the offset +05:30:15 is not in whole minutes",
        "content/b.md:3: publishedDateTime: the offset +23:59 is not a real one (-12:00 to "
        "+14:00)",
    ]


def test_naive_times_are_instants_every_format_can_write(make_site) -> None:
    """A time skipped by the spring change is read as the instant it names; a time when the
    zone's offset was not whole minutes (Amsterdam's local mean time, +00:19:32 until 1937)
    is kept in UTC, so feeds, the sitemap and <time> stay valid."""
    site = make_site(
        {"content/gap.md": story(when="2020-03-29 02:30:00"),
         "content/lmt.md": story(when="1910-06-01 12:00:00", url="https://x.example.com/b")},
        site_yaml="title: T\nbase_url: https://example.org/\ntimezone: Europe/Amsterdam\n"
        "issues:\n  epoch: 1910-01-03\n",
    )
    report = site.build()
    assert report.site.article("gap").published.isoformat() == "2020-03-29T03:30:00+02:00"
    assert report.site.article("lmt").published.isoformat() == "1910-06-01T11:40:28+00:00"
    page = site.page("stories/lmt/")
    assert page.find(".//time").get("datetime") == "1910-06-01T11:40:28+00:00"
    assert "<published>1910-06-01T11:40:28+00:00</published>" in (
        site.output / "atom.xml").read_text()


def test_naive_dates_are_taken_in_the_site_timezone(make_site) -> None:
    site_yaml = (
        "title: T\nbase_url: https://example.org/\ntimezone: America/New_York\n"
        "issues:\n  epoch: 2020-01-06\n"
    )
    site = make_site(
        {
            "content/a.md": story(when="2020-01-24 18:24"),
            "content/b.md": story(when="2020-07-01", url="https://x.example.com/b"),
        },
        site_yaml=site_yaml,
    )
    report = site.build()
    a, b = report.site.article("a"), report.site.article("b")
    assert a.published.isoformat() == "2020-01-24T18:24:00-05:00"
    assert b.published.isoformat() == "2020-07-01T00:00:00-04:00"  # summer time


def test_unknown_fields_are_warnings_with_a_suggestion_and_secured_is_silent(make_site) -> None:
    site = make_site({"content/a.md": story(extra="topcs:\n  - AI\nsecured: 'c2VjcmV0'\n'': x")})
    report = site.build()
    warnings = [str(w) for w in report.warnings]
    assert warnings == [
        "content/a.md:8: warning: '': unknown field, ignored",  # an empty key has a name too
        "content/a.md:5: warning: topcs: unknown field, ignored; did you mean 'topics'?",
    ]
    assert all(w.severity is Severity.WARNING for w in report.warnings)


def test_a_slug_windows_reserves_is_refused(make_site) -> None:
    """An explicit slug is kept as written or refused, never changed behind the curator's
    back (a slug taken from a file name or topic gets an underscore instead)."""
    site = make_site({"content/a.md": story(extra="slug: aux")})
    assert site.messages() == [
        "content/a.md:5: slug: 'aux' is a name Windows keeps for a device: the site could "
        "not be checked out or copied there; choose another, like 'aux-story'"]


def test_slug_collisions_name_both_files(make_site) -> None:
    site = make_site(
        {
            "content/2020/launch.md": story(url="https://a.example.com/1"),
            "content/2021/launch.md": story(url="https://a.example.com/2"),
            "content/other.md": story(url="https://a.example.com/3", extra="slug: launch"),
        }
    )
    messages = site.messages()
    assert messages == [
        "content/2021/launch.md:1: slug: 'launch' is already the slug of content/2020/launch.md;"
        " rename one file or give one story a different 'slug:'",
        "content/other.md:1: slug: 'launch' is already the slug of content/2020/launch.md;"
        " rename one file or give one story a different 'slug:'",
    ]


def test_keep_going_skips_broken_stories_and_reports_them_as_warnings(make_site) -> None:
    site = make_site(
        {"content/good.md": story(), "content/broken.md": story(url="javascript:alert(1)")}
    )
    report = site.build(keep_going=True)
    assert [a.slug for a in report.site.articles] == ["good"]
    assert [str(w) for w in report.warnings] == [
        "content/broken.md:4: warning: webUrl: expected an http(s) URL, got "
        "'javascript:alert(1)' (only http and https links are allowed)"
    ]
    assert (site.output / "stories/good/index.html").is_file()
    assert not (site.output / "stories/broken").exists()


def test_control_characters_are_removed_from_text(make_site) -> None:
    site = make_site(
        {
            "content/a.md": story().replace(
                '"A story"', '"Bell\\x07 and\\x00 null\\u0085 next\\u2028"'
            )
        }
    )
    article = site.build().site.article("a")
    assert article.title == "Bell and null next"


def test_unicode_noncharacters_are_removed_from_text_and_bodies(make_site) -> None:
    """All 66 are forbidden in HTML and invalid in feeds, not only U+FFFE and U+FFFF."""
    site = make_site({"content/a.md": story(
        title="T", extra='excerpt: "x\\ufdef\\U0001fffe y"',
        body="Body \ufdd0text\U0002ffff end.").replace('"T"', '"Good \\ufdd0story\\U0010ffff"')})
    article = site.build().site.article("a")
    assert (article.title, article.excerpt) == ("Good story", "x y")
    assert article.body_html == "<p>Body text end.</p>\n"


def test_the_topic_limit_counts_topics_not_spellings(make_site) -> None:
    """Feeds' categories repeat names in other cases: 20 topics written 30 ways are 20."""
    names = [f"Topic {n}" for n in range(20)] + [f"TOPIC {n}" for n in range(10)]
    site = make_site({"content/a.md": story(extra="topics: " + json.dumps(names))})
    article = site.build().site.article("a")
    assert [t.name for t in article.topics] == names[:20]
    # A list far past the limit is refused by its length, before its items are read.
    site = make_site({"content/a.md": story(extra="topics: " + json.dumps(["AI"] * 201))})
    assert site.messages() == [
        "content/a.md:5: topics: at most 20 topics per story, got 201"]


def test_relative_image_paths_must_stay_inside_the_site(make_site) -> None:
    site = make_site(
        {
            "content/news/a.md": story(
                extra="images:\n  - url: ../img/a.jpg\n    width: 10\n"
                "    height: 10\n  - url: ../../../b.jpg"
            ),
        }
    )
    assert site.messages() == [
        "content/news/a.md:9: images[1].url: expected an http(s) URL or a path inside the site "
        "folder, got '../../../b.jpg'"
    ]


def test_config_errors_are_reported_with_lines(make_site) -> None:
    site = make_site(
        site_yaml="title: ''\nbase_url: ftp://example.org\ntimezone: Mars/Base\n"
        "issues:\n  period: fortnightly\n  epoch: someday\n"
        "output_dir: .\n"
    )
    assert site.messages() == [
        "site.yaml:1: title: must not be empty",
        "site.yaml:2: base_url: expected an http(s) URL like https://example.org/, got "
        "'ftp://example.org' (only http and https links are allowed)",
        "site.yaml:3: timezone: unknown timezone 'Mars/Base'; use an IANA name like UTC or "
        "Europe/London",
        "site.yaml:5: issues.period: expected one of daily, weekly, monthly, got 'fortnightly'",
        "site.yaml:6: issues.epoch: expected a date like 2020-01-20, got 'someday'",
    ]


@pytest.mark.parametrize("base_url", [
    "https://example.org//", "https://example.org//digest/", "https://example.org/a//b/",
    "https://example.org/a/../b/", "https://example.org/./", "https://example.org/%2E%2e/",
])
def test_a_base_url_whose_path_browsers_would_rewrite_is_refused(make_site, base_url) -> None:
    """Pages link to each other by path: with https://example.org// every link was
    //static/style.css, //feed.xml..., which browsers take for other hosts."""
    site = make_site({"content/a.md": story()},
                     site_yaml=f"title: T\nbase_url: {base_url}\n")
    assert site.messages() == [
        "site.yaml:2: base_url: expected a path without empty, '.' or '..' parts, like "
        f"https://example.org/digest/, got {base_url!r}"]


@pytest.mark.parametrize("base_url", ["https://example.org", "https://example.org/a/b",
                                      "https://example.org/a.b/..c/"])
def test_base_urls_with_plain_paths_are_taken(make_site, base_url) -> None:
    site = make_site({"content/a.md": story()}, site_yaml=f"title: T\nbase_url: {base_url}\n")
    assert site.build().config.base_url == base_url.rstrip("/") + "/"


def test_the_machines_own_timezone_is_not_a_timezone(make_site) -> None:
    """zoneinfo finds `localtime` on many systems: a link to the machine's /etc/localtime,
    so the same site grouped its issues differently on another machine."""
    site = make_site({"content/a.md": story()},
                     site_yaml="title: T\nbase_url: https://example.org/\ntimezone: localtime\n")
    assert site.messages() == ["site.yaml:3: timezone: unknown timezone 'localtime'; use an "
                               "IANA name like UTC or Europe/London"]


def test_output_dir_may_not_be_the_site_itself(make_site) -> None:
    site = make_site(
        {"content/a.md": story()},
        site_yaml="title: T\nbase_url: https://example.org/\noutput_dir: .\n",
    )
    assert site.messages() == [
        "site.yaml:3: output_dir: . would replace site on every build; choose a folder of its "
        "own, like 'output'"
    ]
    assert (site.root / "content" / "a.md").exists()


@pytest.mark.parametrize(("setting", "message"), [
    ("output_dir: site.yaml", "output_dir: site.yaml is a file, which the build would replace; "
     "choose a folder of its own, like 'output'"),
    ("output_dir: content/a.md", "output_dir: content/a.md is inside content/ and would be "
     "replaced on every build; choose a folder of its own, like 'output'"),
    ("output_dir: static/css", "output_dir: static/css is inside static/ and would be replaced "
     "on every build; choose a folder of its own, like 'output'"),
    ("output_dir: themes/mine/out", "output_dir: themes/mine/out is inside themes/ and would be "
     "replaced on every build; choose a folder of its own, like 'output'"),
    ("images: {cache_dir: /}", "images.cache_dir: must be a folder inside the site folder "
     "(Broadsheet writes and prunes files in it); the default is '.cache'"),
    ("images: {cache_dir: ..}", "images.cache_dir: must be a folder inside the site folder "
     "(Broadsheet writes and prunes files in it); the default is '.cache'"),
    ("images: {cache_dir: content/sub}", "images.cache_dir: must be a folder of its own, not in "
     "content/; the default is '.cache'"),
    ("content_dir: /", "content_dir: / is outside the site folder; stories must be in a folder "
     "inside it, like 'content'"),
    ("import: {inbox: a.md}", "import.inbox: content/a.md is a file, not a folder"),
    ("import: {inbox: .inbox}", "import.inbox: expected a folder inside content_dir whose name "
     "does not start with '.', got '.inbox'"),
    ("theme: nosuch", "theme: no theme 'nosuch': looked for themes/nosuch/templates/ in the site "
     "and among Broadsheet's themes (default)"),
    ("theme: ../../mine", "theme: expected the name of a folder in themes/, got '../../mine'"),
    ("language: '\"><script>'", "language: expected a language tag like en or en-GB, got "
     "'\"><script>'"),
    # A feed is written next to pages: a name the site uses itself was a traceback (a file
    # where the topics/ or page/ folder goes) or an error on no line of site.yaml.
    ("feeds: {rss: topics}", "feeds.rss: 'topics' is a name the site's own pages use; "
     "choose another, like 'feed.xml'"),
    ("feeds: {atom: page}", "feeds.atom: 'page' is a name the site's own pages use; "
     "choose another, like 'atom.xml'"),
    ("feeds: {json: Index.html}", "feeds.json: 'Index.html' is a name the site's own pages "
     "use; choose another, like 'feed.json'"),
    ("feeds: {rss: '7'}", "feeds.rss: '7' is a name the site's own pages use; "
     "choose another, like 'feed.xml'"),
    # Two formats in one file: Atom's default taken by RSS was "output: output_dir: two
    # pages would be written to atom.xml", on no line; names differing in case only are
    # one file on macOS and Windows.
    ("feeds: {rss: NUL.xml}", "feeds.rss: 'NUL.xml' is a name Windows keeps for a device: "
     "the site could not be copied there; choose another, like 'feed.xml'"),
    ("feeds: {rss: atom.xml}", "feeds.rss: 'atom.xml' is feeds.atom's file name too (in any "
     "letter case: some file systems ignore it); choose another, like 'feed.xml'"),
    ("feeds: {json: FEED.XML}", "feeds.json: 'FEED.XML' is feeds.rss's file name too (in any "
     "letter case: some file systems ignore it); choose another, like 'feed.json'"),
    ("feeds: {atom: x.xml, json: X.xml}", "feeds.json: 'X.xml' is feeds.atom's file name too "
     "(in any letter case: some file systems ignore it); choose another, like 'feed.json'"),
])
def test_settings_that_would_harm_the_site_or_its_output_are_refused(
        make_site, setting: str, message: str) -> None:
    """Nothing of the site is replaced, nothing is written outside it: a clear error with
    the line of the setting instead (a build with output_dir: site.yaml replaced the file)."""
    site = make_site(
        {"content/a.md": story(), "static/css/mine.css": "p {}\n",
         "themes/mine/templates/x.html": "x"},
        site_yaml=f"title: T\nbase_url: https://example.org/\n{setting}\n",
    )
    before = {p: p.read_bytes() for p in site.root.rglob("*") if p.is_file()}
    assert site.messages() == [f"site.yaml:3: {message}"]
    assert {p: p.read_bytes() for p in site.root.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(("folder", "what"), [
    (".", "would replace site"),
    ("content", "would replace content"),
    ("content/2020", "is inside content/ and would be replaced"),
    ("templates", "would replace templates"),
    (".cache/..", "would replace site"),
    ("site.yaml", None),
    ("cache-holder", "holds the cache (cache-holder/c), which would be replaced"),
])
def test_an_output_folder_given_on_the_command_line_is_held_to_the_same_rules(
        make_site, folder: str, what: str | None) -> None:
    """`build --output content` replaced the curator's stories with the built site: the
    option skipped the checks site.yaml's output_dir gets."""
    site = make_site(
        {"content/a.md": story(), "content/2020/b.md": story(title="B", url="https://x.org/b"),
         "templates/base.html": "{% block main %}{% endblock %}"},
        site_yaml="title: T\nbase_url: https://example.org/\nimages: {cache_dir: cache-holder/c}\n",
    )
    before = {p: p.read_bytes() for p in site.root.rglob("*") if p.is_file()}
    messages = site.messages(output_dir=site.root / folder)
    expected = (f"{site.root / folder} {what} on every build" if what else
                f"{site.root / folder} is a file, which the build would replace")
    assert len(messages) == 1 and messages[0].startswith(f"--output: {expected}"), messages
    assert {p: p.read_bytes() for p in site.root.rglob("*") if p.is_file()} == before


LONG_NAME = "x" * 300
TOO_DEEP = "ab/" * 400  # 1,200 bytes, of short names


@pytest.mark.parametrize(("setting", "message"), [
    (f"output_dir: {LONG_NAME}", "output_dir: 'xxx"),
    (f"content_dir: {LONG_NAME}", "content_dir: 'xxx"),
    (f"images: {{cache_dir: {LONG_NAME}}}", "images.cache_dir: 'xxx"),
    (f"import: {{inbox: {LONG_NAME}}}", "import.inbox: 'xxx"),
    (f"output_dir: {TOO_DEEP}", "output_dir: 'ab/ab/"),
    (f"content_dir: {TOO_DEEP}", "content_dir: 'ab/ab/"),
])
def test_folder_names_no_file_system_holds_are_errors_not_tracebacks(
        make_site, setting: str, message: str) -> None:
    """stat() fails on a name over 255 bytes or a path over the system's limit
    (ENAMETOOLONG) where it would find nothing: the build crashed with an OSError."""
    site = make_site({"content/a.md": story()},
                     site_yaml=f"title: T\nbase_url: https://example.org/\n{setting}\n")
    [error] = site.messages()
    assert error.startswith(f"site.yaml:3: {message}"), error
    assert error.endswith(("longer than a file system allows",
                           "a folder's path may be at most 1,024")), error


def test_theme_names_longer_than_a_folder_name_are_refused(make_site) -> None:
    site = make_site({"content/a.md": story()},
                     site_yaml=f"title: T\nbase_url: https://example.org/\ntheme: {LONG_NAME}\n")
    assert site.messages() == [f"site.yaml:3: theme: expected the name of a folder in themes/, "
                               f"got '{LONG_NAME[:79]}…'"]


def test_an_output_folder_too_long_to_exist_is_refused(make_site) -> None:
    site = make_site({"content/a.md": story()})
    [error] = site.messages(output_dir=site.root / LONG_NAME)
    assert error.startswith("--output: ") and error.endswith("longer than a file system allows")


def test_site_yaml_warnings_are_told_with_every_build(make_site) -> None:
    site = make_site(
        {"content/a.md": story()},
        site_yaml="title: T\nbase_url: https://example.org/\ntitel: x\nfeeds: {entriez: 5}\n",
    )
    for _ in range(2):  # the second build changes nothing: its warnings are replayed
        report = site.build()
        assert [str(d) for d in report.warnings if d.path == "site.yaml"] == [
            "site.yaml:3: warning: titel: unknown field, ignored; did you mean 'title'?",
            "site.yaml:4: warning: feeds.entriez: unknown field, ignored; did you mean "
            "'entries'?",
        ]


def test_a_draft_never_takes_the_slug_of_a_published_story(make_site) -> None:
    site = make_site({
        "content/good.md": story(title="Published"),
        "content/a-draft.md": story(title="Draft", url="https://x.example.com/d",
                                    extra="published: false\nslug: good"),
    })
    assert site.messages() == [
        "content/a-draft.md:1: slug: 'good' is already the slug of content/good.md; rename one "
        "file or give one story a different 'slug:'"]
    report = site.build(keep_going=True)
    assert report.site.article("good").title == "Published"


def test_urls_become_real_uris_and_may_not_carry_credentials(make_site) -> None:
    """Feeds need URIs: `|`, `[`, `^` and non-ASCII are percent-encoded as browsers do, an
    international host is written in ASCII. A user name in a URL is a phishing trick."""
    site = make_site(
        {"content/a.md": story(url="https://Bücher.Example/a|b[1]/été?q=ü#x^")},
        site_yaml="title: T\nbase_url: https://Example.org/digest/été\n",
    )
    report = site.build()
    assert report.config.base_url == "https://example.org/digest/%C3%A9t%C3%A9/"
    assert report.site.article("a").url == (
        "https://xn--bcher-kva.example/a%7Cb%5B1%5D/%C3%A9t%C3%A9?q=%C3%BC#x%5E")
    site.write("content/a.md", story(url="https://news.example.com@evil.example/"))
    site.write("site.yaml", "title: T\nbase_url: https://user:secret@example.org/\n")
    assert site.messages() == [
        "site.yaml:2: base_url: expected an http(s) URL like https://example.org/, got "
        "'https://user:secret@example.org/' (it has a user name or password)"]
    site.write("site.yaml", "title: T\nbase_url: https://example.org/\n")
    assert site.messages() == [
        "content/a.md:4: webUrl: expected an http(s) URL, got "
        "'https://news.example.com@evil.example/' (it has a user name or password)"]


def test_story_files_are_found_in_subfolders_but_not_hidden_ones(make_site) -> None:
    broken = "---\ntitle: [unclosed\n---\n"
    site = make_site({
        "content/2020/01/nested.md": story(title="Nested", url="https://news.example.com/n"),
        "content/.drafts/hidden-folder.md": broken,
        "content/.hidden-file.md": broken,
        "content/notes.txt": broken,
    })
    report = site.build()
    assert report.counts.stories == 1
    assert (site.output / "stories" / "nested" / "index.html").is_file()
    (site.root / "content/2020/01/nested.md").write_text(broken, encoding="utf-8")
    assert [d.path for d in site.fail() if d.is_error] == ["content/2020/01/nested.md"]


@pytest.mark.parametrize("title", ["\u200b\u200b", "\u00ad", "\ufeff \u200b", "\u034f",
                                   "\u3164", "\u0301\u0301"])
def test_a_title_that_shows_nothing_is_empty(make_site, title: str) -> None:
    """Zero-width spaces, soft hyphens, fillers: text that is there but draws nothing made
    a blank headline on the story's page, its cards and in every feed."""
    site = make_site({"content/blank.md": story(title=title)})
    assert site.messages() == ["content/blank.md:2: title: must not be empty"]


def test_a_title_of_other_scripts_and_symbols_is_not_empty(make_site) -> None:
    site = make_site({"content/a.md": story(title="\u6f22\u5b57"),
                      "content/b.md": story(title="\u2605", url="https://n.example/b"),
                      "content/c.md": story(title="e\u0301", url="https://n.example/c")})
    assert site.build().pages
