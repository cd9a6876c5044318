"""Hostile third-party text in every field comes out inert and literal, on every page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from lxml import etree

from .conftest import parse_html

SCRIPT = "<script>alert('x')</script>"
ATTRIBUTE = '"\' onmouseover="alert(1)" x=\''
CLOSE_SCRIPT = "</script><script>alert(2)</script>"
TEMPLATE = "{{ 7*7 }}{% if true %}jinja{% endif %}"
PAYLOADS = [
    SCRIPT,
    ATTRIBUTE,
    CLOSE_SCRIPT,
    TEMPLATE,
    "javascript:alert(3)",
    "]]><x>",
    "\u2028\u2029 &amp; &lt;b&gt;",
]
HOSTILE = " ".join(PAYLOADS)
UNSAFE_SCHEMES = re.compile(r"^(javascript|vbscript|data|file):", re.IGNORECASE)
URL_ATTRIBUTES = ("href", "src", "action", "formaction", "srcset", "poster", "cite", "content")


def yaml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


HOSTILE_STORY = f"""\
---
title: {yaml_string(HOSTILE)}
excerpt: {yaml_string(HOSTILE + " excerpt")}
publishedDateTime: 2020-01-24T18:24:00Z
webUrl: "https://news.example.com/a?q='x'&r=1&lt;"
category: {yaml_string(ATTRIBUTE)}
type: {yaml_string(SCRIPT)}
provider:
  name: {yaml_string(HOSTILE + " outlet")}
  domain: news.example.com
topics:
  - {yaml_string(SCRIPT)}
  - {yaml_string(ATTRIBUTE)}
  - {yaml_string(TEMPLATE)}
images:
  - url: "https://img.example.com/a.jpg?x='onerror=alert(1)"
    width: 1200
    height: 800
    title: {yaml_string(HOSTILE + " image")}
related:
  - title: {yaml_string(HOSTILE + " related")}
    excerpt: {yaml_string(HOSTILE)}
    webUrl: "https://other.example.com/r?x='%3Cscript%3E&y=1"
    provider:
      name: {yaml_string(HOSTILE)}
      domain: other.example.com
    images:
      - url: "https://img.example.com/b.jpg"
        width: 10
        height: 10
        title: {yaml_string(HOSTILE)}
secured: "SECRET-VALUE-THAT-MUST-NOT-LEAK"
---
# Heading {SCRIPT}

Raw <b onclick="alert(4)">html</b> and {SCRIPT} and <iframe src="https://evil.example"></iframe>

[a link](javascript:alert(5)) [b](JAVASCRIPT:alert(6)) [c](  javascript:alert(7))
<javascript:alert(8)> [d](data:text/html;base64,PHNjcmlwdD5hbGVydCg5KTwvc2NyaXB0Pg==)
[e](vbscript:msgbox)

[f]: javascript:alert(10)

[ref][f] ![img](javascript:alert(11)) ![ok](https://img.example.com/c.png "t\\" onerror=\\"x")
[g](https://ok.example.com/"onmouseover="alert(12)) <a href="javascript:alert(13)">x</a>
<style>body{{display:none}}</style> <form action="https://evil.example"><input></form>

{TEMPLATE}
"""


@pytest.fixture(scope="module")
def hostile_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from broadsheet.pipeline import build

    root = tmp_path_factory.mktemp("hostile")
    (root / "content").mkdir()
    (root / "site.yaml").write_text(
        "title: Hostile test\nbase_url: https://example.org/digest/\nissues:\n"
        "  epoch: 2020-01-06\n",
        encoding="utf-8",
    )
    (root / "content" / "a.md").write_text(HOSTILE_STORY, encoding="utf-8")
    build(root)
    return root / "output"


def html_pages(output: Path) -> list[Path]:
    return sorted(output.rglob("*.html"))


def test_hostile_story_builds(hostile_output: Path) -> None:
    assert (hostile_output / "stories/a/index.html").is_file()
    assert len(html_pages(hostile_output)) >= 7


def test_no_script_runs_from_content(hostile_output: Path) -> None:
    for path in html_pages(hostile_output):
        tree = parse_html(path.read_bytes())
        for script in tree.iter("script"):
            assert script.get("type") == "application/ld+json", path
            json.loads(script.text)  # a data block that parses: nothing escaped out of it
        for element in tree.iter():
            if not isinstance(element.tag, str):
                continue
            forbidden = {"iframe", "object", "embed", "form", "input", "base", "frame"}
            if path.name != "email.html":  # the email keeps its theme's dark-mode <style>
                forbidden.add("style")
            assert element.tag not in forbidden, (path, element.tag)
            for name, value in element.attrib.items():
                assert not name.lower().startswith("on"), (path, element.tag, name)
                if name in URL_ATTRIBUTES:
                    assert not UNSAFE_SCHEMES.match(re.sub(r"[\s\x00-\x1f]", "", value)), (
                        path,
                        element.tag,
                        name,
                        value,
                    )


def test_hostile_text_is_shown_literally(hostile_output: Path) -> None:
    tree = parse_html((hostile_output / "stories/a/index.html").read_bytes())
    h1 = tree.find(".//h1")
    assert "".join(h1.itertext()).split() == HOSTILE.split()
    text = " ".join(" ".join(tree.find(".//body").itertext()).split())
    assert "onmouseover=" in text and "<script>alert('x')</script>" in text
    assert "{{ 7*7 }}" in text and "49" not in text
    ld = json.loads(next(s for s in tree.iter("script")).text)
    headline = ld["headline"]
    assert headline.endswith("…") and len(headline) <= 110
    assert " ".join(HOSTILE.split()).startswith(headline.removesuffix("…"))
    title = tree.find(".//title").text
    assert title == " ".join(HOSTILE.split()) + " · Hostile test"


def test_markdown_body_is_sanitised(hostile_output: Path) -> None:
    tree = parse_html((hostile_output / "stories/a/index.html").read_bytes())
    links = [a.get("href") for a in tree.iter("a")]
    assert "https://ok.example.com/%22onmouseover=%22alert(12)" in links
    body_text = " ".join(tree.find(".//body").itertext())
    assert '<b onclick="alert(4)">html</b>' in body_text  # raw HTML shown as text


def test_secured_never_reaches_any_file(hostile_output: Path) -> None:
    for path in hostile_output.rglob("*"):
        if path.is_file():
            assert b"SECRET-VALUE" not in path.read_bytes(), path


def test_sitemap_is_well_formed_xml(hostile_output: Path) -> None:
    tree = etree.parse(str(hostile_output / "sitemap.xml"))
    locs = [e.text for e in tree.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")]
    assert "https://example.org/digest/stories/a/" in locs
    assert all(loc.startswith("https://example.org/digest/") for loc in locs)


def test_sample_secured_value_is_in_no_output_file(sample_site, tmp_path: Path) -> None:
    sample = Path(__file__).parent.parent / "content" / "met-police-live-facial-recognition.md"
    secured = re.search(r'^secured: "(.+)"$', sample.read_text(), re.MULTILINE).group(1)
    assert len(secured) > 100
    output = tmp_path / "drafts"
    sample_site.build(drafts=True, output_dir=output)
    needles = [secured.encode(), secured[:40].encode(), secured[-40:].encode()]
    assert (output / "stories/met-police-live-facial-recognition/index.html").is_file()
    for path in output.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), path


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_bidirectional_overrides_reach_no_output_file(make_site) -> None:
    """An override left open in a title or a name reverses the text after it wherever it is
    shown ("Trojan Source"): every field, the body and the topics lose them."""
    from .conftest import story

    spoof = "\u202eevil\u2066 txt.exe"
    site = make_site({"content/a.md": story(
        title=f"Invoice {spoof}",
        extra=f"topics: [{yaml_string('AI ' + spoof)}]\n"
              f"provider: {{name: {yaml_string(spoof)}, domain: news.example.com}}",
        body=f"Body {spoof} and [link {spoof}](https://example.com/)\n",
    )})
    site.build()
    seen = 0
    for path in site.output.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".xml", ".json", ".txt"):
            text = path.read_text(encoding="utf-8")
            seen += "evil" in text
            assert not set(BIDI) & set(text), path
            lowered = text.lower()
            assert not any(f"\\u{ord(c):04x}" in lowered or f"&#x{ord(c):x};" in lowered
                           or f"&#{ord(c)};" in lowered for c in BIDI), path
    assert seen >= 3  # the text itself is kept: only the invisible controls go
