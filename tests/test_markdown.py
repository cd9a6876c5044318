"""Story bodies: Markdown to safe HTML, checked against fixture cases (input . expected)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broadsheet.markdown import is_safe_link, render_markdown, sanitise_html

FIXTURES = Path(__file__).parent / "fixtures" / "markdown.txt"


def read_cases(path: Path) -> list[tuple[str, str, str]]:
    """markdown-it-py's fixture layout: a title line, then input and output fenced by '.'."""
    lines = path.read_text(encoding="utf-8").split("\n")
    cases = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        title = lines[i]
        assert lines[i + 1] == ".", f"line {i + 2}: expected '.'"
        j = lines.index(".", i + 2)
        k = lines.index(".", j + 1)
        cases.append((title, "\n".join(lines[i + 2 : j]) + "\n", "\n".join(lines[j + 1 : k])))
        i = k + 1
    return cases


CASES = read_cases(FIXTURES)


@pytest.mark.parametrize(("title", "source", "expected"), CASES, ids=[c[0] for c in CASES])
def test_markdown_fixture(title: str, source: str, expected: str) -> None:
    assert render_markdown(source).strip() == expected.strip()


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://a.example", True),
        ("/relative", True),
        ("#frag", True),
        ("mailto:x@y.z", True),
        ("javascript:x", False),
        (" \tjavascript:x", False),
        ("java\nscript:x", False),
        ("JAVASCRIPT:x", False),
        ("\x01javascript:x", False),
        ("data:x", False),
        ("vbscript:x", False),
        ("java\u200bscript:x", False),
    ],
)
def test_link_schemes(url: str, safe: bool) -> None:
    assert is_safe_link(url) is safe


def test_sanitiser_is_a_second_layer_on_its_own() -> None:
    html = (
        '<p onclick="x()">a<script>b</script><a href="javascript:c">d</a>'
        '<img src="x" onerror="y"><iframe></iframe></p>'
    )
    assert sanitise_html(html) == '<p>a<a>d</a><img src="x"></p>'
