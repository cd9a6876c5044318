"""`broadsheet new DIR`: a minimal site that builds as it is, to start a digest from.

The new site uses the default theme installed with Broadsheet; it gets a site.yaml whose
issue epoch is this week's Monday, so its first issue is number 1.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path


class ScaffoldError(Exception):
    """The folder cannot be used for a new site."""


SITE_YAML = """\
# Broadsheet site settings; every field is described in Broadsheet's README.
title: My Tech Digest
description: The week's most important technology stories, picked and summarised.
base_url: https://example.org/
language: en
timezone: UTC

issues:
  period: weekly      # daily, weekly or monthly
  epoch: {epoch}   # the first day of issue 1; never change it once issues are out

topics:
  page_size: 20
"""

FIRST_STORY = """\
---
title: "Welcome to your digest"
excerpt: >-
  Each story is one Markdown file in content/ with YAML front matter: the headline,
  an excerpt, the outlet that published it and when, topics and related coverage.
publishedDateTime: {published}
webUrl: "https://example.org/welcome"
provider:
  name: Broadsheet
  domain: example.org
topics:
  - Getting started
editor_pick: true
---

This is the curator's note: write why the story matters in **Markdown**. Replace this
file with your first real story, then run `broadsheet serve` and open the URL it prints:
the page reloads whenever you save a story.
"""

GITIGNORE = "output/\n.cache/\n"


def create_site(directory: Path, today: date | None = None) -> Path:
    """Write a new site into `directory` (which must be missing or empty)."""
    try:
        a_file = directory.exists() and not directory.is_dir()
        taken = not a_file and directory.exists() and any(directory.iterdir())
    except OSError as exc:  # a name too long for the file system, a folder we may not list
        raise ScaffoldError(f"cannot use {directory}: {exc.strerror or exc}") from exc
    if a_file:
        raise ScaffoldError(f"{directory} is a file, not a folder; choose another name")
    if taken:
        raise ScaffoldError(f"{directory} already exists and is not empty")
    today = today or date.today()
    monday = today - timedelta(days=today.weekday())
    published = datetime(today.year, today.month, today.day, 9, 0, tzinfo=UTC)
    try:
        (directory / "content").mkdir(parents=True, exist_ok=True)
        (directory / "site.yaml").write_text(
            SITE_YAML.format(epoch=monday.isoformat()), encoding="utf-8"
        )
        (directory / "content" / "welcome.md").write_text(
            FIRST_STORY.format(published=published.strftime("%Y-%m-%dT%H:%M:%SZ")), encoding="utf-8"
        )
        (directory / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    except OSError as exc:
        raise ScaffoldError(f"cannot write to {directory}: {exc.strerror or exc}") from exc
    return directory
