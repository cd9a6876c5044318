"""The readers' fast path for plain URLs gives exactly what the full checks give."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

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
