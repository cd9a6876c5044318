"""The fast paths for plain URLs (readers, coverage keys) give exactly what the full ways give."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from broadsheet.coverage import _canonical, canonical_url
from broadsheet.readers import is_plain_url, normalise_url, url_problem

URLISH = st.builds(
    lambda scheme, host, rest: f"{scheme}://{host}{rest}",
    st.sampled_from(["http", "https", "HTTP", "ftp", "javascript"]),
    st.from_regex(r"[A-Za-z0-9.\-@:\[\]]{0,20}", fullmatch=True),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=30)
    | st.text(max_size=10),
)


@settings(max_examples=3000, deadline=None)
@given(URLISH)
def test_plain_urls_are_valid_and_already_normal(value: str) -> None:
    if is_plain_url(value):
        assert url_problem(value) == ""
        assert normalise_url(value) == value


def test_examples() -> None:
    assert is_plain_url("https://news.example.com/a/b?x=1#top")
    for odd in ("https://Example.com/", "https://a.com:8080/", "https://u@a.com/",
                "https://a.com/?", "https://a.com/x?#f", "javascript://a.com/", "https://a.com/ x",
                "https://a.com/é", "https://a.com?x"):
        assert not is_plain_url(odd), odd


COVERAGE_URLISH = st.builds(
    lambda scheme, prefix, host, rest: f"{scheme}://{prefix}{host}{rest}",
    st.sampled_from(["http", "https", "HTTPS"]),
    st.sampled_from(["", "www.", "m.", "amp.", "WWW."]),
    st.sampled_from(["example.com", "news.example.co.uk", "a.b", "x", "example.com.",
                     "www-x-com.cdn.ampproject.org"])
    | st.from_regex(r"[a-zA-Z0-9.\-@:]{0,16}(\.cdn\.ampproject\.org)?", fullmatch=True),
    st.lists(st.sampled_from(["/", "//", "amp", "AMP", ".amp.html", "?", "#", "&", "=", "a",
                              "utm_source=x", "%2F", ":", ";", " ", "é", "c/s/"]),
             max_size=8).map("".join),
)


@settings(max_examples=3000, deadline=None)
@given(COVERAGE_URLISH)
@example("https://www-x-com.cdn.ampproject.org/c/s/x.org/a")
@example("https://x.org/news/AMP/")
@example("https://x.org/a//b")
def test_coverage_keys_of_plain_urls_are_what_the_general_way_gives(value: str) -> None:
    assert canonical_url(value) == _canonical(value)
