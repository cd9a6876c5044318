#!/usr/bin/env python3
"""The fixed stack's floor: what the core libraries alone cost per story, with no engine.

For every story of a corpus (made by bench/corpus.py): read the file, split off the front
matter, load it with PyYAML's C loader (`yaml.CSafeLoader`, plain `yaml.load`), render the
body with markdown-it-py, and render a story page with Jinja2 from a template as small as the
peers' (headline, outlet, date, topics, picture, excerpt, body, related coverage), all in one
process. Nothing is validated, sanitised, linked, written or cached, and no topic page, issue
page, feed or thumbnail is made: a real build can only cost more.

Issue 7 asks for a cold build 1.5x faster than Hugo at 10,000 stories. This prints the floor's
CPU seconds, per story and in all, and the wall time it would take if spread perfectly over
the machine's cores, to set against that budget (Hugo's cold time / 1.5, from bench/run.py).

Usage: python bench/floor.py CORPUS_FOLDER   (e.g. /tmp/broadsheet-bench/corpus-10000-seed1)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import jinja2
import yaml
from markdown_it import MarkdownIt

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ a.title }} · Site</title></head><body><article>
<h1>{{ a.title }}</h1>
<p><a href="{{ a.webUrl }}">{{ a.provider.name }}</a>,
<time datetime="{{ a.publishedDateTime }}">{{ a.publishedDateTime }}</time></p>
<ul class="topics">{% for t in a.topics %}<li><a href="/topics/{{ t|lower }}/">{{ t }}</a></li>
{% endfor %}</ul>
{% if a.images %}{% set image = a.images[0] %}<img src="{{ image.url }}" width="{{ image.width }}"
 height="{{ image.height }}" alt="{{ image.title or a.title }}">{% endif %}
<blockquote>{{ a.excerpt }}</blockquote>
{{ body|safe }}
<h2>Related coverage</h2><ul class="related">
{% for item in a.related %}<li>{% if item.images %}<img src="{{ item.images[0].url }}"
 width="{{ item.images[0].width }}" height="{{ item.images[0].height }}" alt="" loading="lazy">
{% endif %}<a href="{{ item.webUrl }}">{{ item.title }}</a> <small>{{ item.provider.name }}
{% if item.publishedDateTime %}, {{ item.publishedDateTime }}{% endif %}</small>
<p>{{ item.excerpt }}</p></li>
{% endfor %}</ul></article></body></html>"""

STEPS = ("read the file", "YAML (C loader)", "Markdown", "Jinja story page")


def measure(files: list[Path]) -> list[float]:
    """CPU seconds of each step over all the files, in this one process."""
    markdown = MarkdownIt("commonmark")
    page = jinja2.Environment(autoescape=True).from_string(PAGE)
    spent = [0.0] * len(STEPS)
    clock = time.process_time
    for path in files:
        t0 = clock()
        _, front, body = path.read_text(encoding="utf-8").split("---\n", 2)
        t1 = clock()
        data = yaml.load(front, Loader=yaml.CSafeLoader)
        t2 = clock()
        html = markdown.render(body)
        t3 = clock()
        page.render(a=data, body=html)
        t4 = clock()
        for index, (start, end) in enumerate(((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
            spent[index] += end - start
    return spent


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.rsplit("Usage: ", 1)[1].strip(), file=sys.stderr)
        return 2
    files = sorted(Path(argv[0], "content").rglob("*.md"))
    if not files:
        print(f"no stories under {argv[0]}/content", file=sys.stderr)
        return 1
    if not getattr(yaml, "__with_libyaml__", False):
        print("PyYAML has no C loader here: the floor would be much higher", file=sys.stderr)
        return 1
    spent = measure(files)
    cores = os.cpu_count() or 1
    for step, seconds in zip(STEPS, spent, strict=True):
        print(f"{step:18s} {seconds:7.2f} CPU-s  {seconds / len(files) * 1e3:6.3f} ms per story")
    total = sum(spent)
    print(f"{'total':18s} {total:7.2f} CPU-s  {total / len(files) * 1e3:6.3f} ms per story, "
          f"{len(files)} stories")
    print(f"spread perfectly over {cores} cores: {total / cores:.2f} s of wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
