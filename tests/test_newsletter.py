"""The email edition of every issue: HTML that mail clients render, and a plain-text part."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from broadsheet.newsletter import CLIP_BYTES

from .conftest import MiniSite, parse_html, story


def test_every_issue_has_an_html_and_a_text_email(sample_site: MiniSite) -> None:
    for number in (1, 2, 3):
        assert (sample_site.output / f"issues/{number}/email.html").is_file()
        assert (sample_site.output / f"issues/{number}/email.txt").is_file()


def test_email_html_is_inlined_script_free_and_absolute(sample_site: MiniSite) -> None:
    data = (sample_site.output / "issues/3/email.html").read_bytes()
    tree = parse_html(data)
    assert not list(tree.iter("script"))
    assert not [link for link in tree.iter("link") if link.get("rel") == "stylesheet"]
    for style in tree.iter("style"):  # only the dark-mode media query may stay in <style>
        assert re.fullmatch(r"\s*(@media[^{]+\{.*\}\s*)+", style.text, re.DOTALL), style.text
    classed = [e for e in tree.iter() if isinstance(e.tag, str) and e.get("class")]
    assert classed and all(e.get("style") for e in classed)
    hrefs = [a.get("href") for a in tree.iter("a")]
    assert hrefs and all(urlsplit(h).scheme == "https" and urlsplit(h).netloc for h in hrefs)
    for image in tree.iter("img"):
        assert urlsplit(image.get("src")).scheme == "https" and image.get("width")
    text = " ".join(tree.getroot().itertext())
    for title in ("EU Ponders Temporary Facial Recognition Ban",
                  "DHS to be grilled on facial recognition"):
        assert title in text
    assert "https://example.org/issues/3/" in hrefs


def test_text_email_lists_every_story_with_numbered_links(sample_site: MiniSite) -> None:
    text = (sample_site.output / "issues/3/email.txt").read_text(encoding="utf-8")
    issue = sample_site.build().site.issues[0]
    flat = " ".join(text.split())
    for article in issue.articles:
        assert " ".join(article.title.split()) in flat
    references = dict(re.findall(r"^\[(\d+)\] (\S+)$", text, re.MULTILINE))
    used = set(re.findall(r"\[(\d+)\]", text.split("\nLinks\n")[0]))
    assert used == set(references)
    assert f"https://example.org/stories/{issue.lead.slug}/" in references.values()
    prose = [line for line in text.splitlines() if not re.match(r"^\[\d+\] ", line)]
    assert max(len(line) for line in prose) <= 72
    assert "<" not in text.replace("<-", "")  # plain text: no markup, no HTML escapes
    assert "&amp;" not in text


def test_a_thirty_story_issue_stays_under_the_clipping_size(make_site) -> None:
    excerpt = "An outlet's long excerpt about the week's news, " * 12
    files = {
        f"content/s{i}.md": story(
            title=f"Story number {i} with a headline of a realistic length for the news",
            when=f"2020-01-22T{i % 24:02d}:00:00Z", url=f"https://news{i}.example.com/a/{i}",
            extra=f"excerpt: \"{excerpt}\"\ntopics: [Topic {i % 6}]\nprovider:\n"
                  f"  name: Outlet {i}\n  domain: news{i}.example.com")
        for i in range(30)
    }
    site = make_site(files)
    site.build()
    html = site.output / "issues/3/email.html"
    assert len(parse_html(html.read_bytes()).findall(".//td[@class='title']")) == 29
    assert html.stat().st_size < CLIP_BYTES


def test_the_lead_picture_is_an_absolute_jpeg_with_a_width(make_site) -> None:
    from PIL import Image

    site = make_site({"content/a.md": story(extra="images:\n  - url: a.jpg\n    width: 1600\n"
                                                  "    height: 900\n    title: The picture")})
    Image.new("RGB", (1600, 900), (200, 40, 40)).save(site.root / "content" / "a.jpg")
    site.build()
    tree = parse_html((site.output / "issues/3/email.html").read_bytes())
    images = list(tree.iter("img"))
    assert len(images) == 1
    assert images[0].get("src").startswith("https://example.org/thumbs/")
    assert images[0].get("src").endswith(".jpg")
    assert (images[0].get("width"), images[0].get("height")) == ("544", "306")
    assert images[0].get("alt") == "The picture"
    name = images[0].get("src").rsplit("/", 1)[1]
    assert (site.output / "thumbs" / name).is_file()


def test_hostile_text_is_escaped_in_the_html_and_literal_in_the_text(make_site) -> None:
    site = make_site({"content/a.md": story(title="<script>alert(1)</script> & co")})
    site.build()
    tree = parse_html((site.output / "issues/3/email.html").read_bytes())
    assert not list(tree.iter("script"))
    assert "<script>alert(1)</script> & co" in " ".join(tree.getroot().itertext())
    text = (site.output / "issues/3/email.txt").read_text()
    assert "<script>alert(1)</script> & co" in text


def test_themes_can_override_the_email_templates(make_site) -> None:
    site = make_site({"content/a.md": story(),
                      "templates/email.txt": "Custom {{ issue.number }} {{ config.title }}\n"})
    site.build()
    assert (site.output / "issues/3/email.txt").read_text() == "Custom 3 Test Digest\n"
