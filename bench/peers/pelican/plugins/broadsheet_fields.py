"""Read Broadsheet's story files in Pelican and write one page per weekly issue.

pelican-yaml-metadata parses the YAML front matter. This subclass of its reader renames two
fields to the names Pelican acts on, so the same files work unchanged: `publishedDateTime`
becomes the article `date` and `topics` become its `tags`. With BENCH_YAML_C_LOADER (set in
pelicanconf.py) it also parses with PyYAML's C loader, as Broadsheet does: the plugin as it
ships calls the pure-Python `yaml.safe_load`, which takes ~40 ms per story of this corpus and
would make the comparison one of YAML parsers (same constructor, so the same values).
Pelican has no weekly archives, so the issues are written here, after the articles, from
the articles Pelican already holds (one grouping pass, one page per week).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import yaml
from pelican import signals
from pelican.plugins.yaml_metadata.yaml_metadata import YAMLMetadataReader

RENAMED = {"publisheddatetime": "date", "topics": "tags"}


class BroadsheetReader(YAMLMetadataReader):
    """pelican-yaml-metadata's reader with Broadsheet's field names mapped to Pelican's."""

    def _load_yaml_metadata(self, text: str, source_path: str) -> dict[str, Any]:
        if not self.settings.get("BENCH_YAML_C_LOADER"):
            return super()._load_yaml_metadata(text, source_path)
        metadata = yaml.load(text, Loader=yaml.CSafeLoader)
        if not isinstance(metadata, dict):
            return {}
        return self._parse_yaml_metadata(metadata, source_path)

    def _parse_yaml_metadata(self, meta: dict[str, Any], source_path: str) -> dict[str, Any]:
        renamed = {RENAMED.get(key.lower(), key): value for key, value in meta.items()}
        return super()._parse_yaml_metadata(renamed, source_path)


def add_reader(readers: Any) -> None:
    """Use the reader for every Markdown extension."""
    for extension in BroadsheetReader.file_extensions:
        readers.reader_classes[extension] = BroadsheetReader


def week_number(date: datetime, epoch: datetime) -> int:
    """Weeks since the epoch Monday, plus one: Broadsheet's weekly issue number."""
    return (date - epoch).days // 7 + 1


def group_weeks(generator: Any) -> None:
    """Group the articles by week once, ranked as an issue is, for the home and issue pages."""
    epoch = datetime.fromisoformat(generator.settings["BENCH_EPOCH"] + "T00:00:00+00:00")
    weeks: dict[int, list[Any]] = defaultdict(list)
    for article in generator.articles:
        article.bench_week = week_number(article.date, epoch)
        weeks[article.bench_week].append(article)
    for articles in weeks.values():
        articles.sort(key=lambda a: (-int(getattr(a, "quality", 0)), -a.date.timestamp()))
    generator.context["bench_weeks"] = sorted(weeks.items(), reverse=True)


def write_weeks(generator: Any, writer: Any) -> None:
    """One page per week with stories: issues/<n>/index.html."""
    template = generator.get_template("week")
    weeks = generator.context["bench_weeks"]
    for position, (number, articles) in enumerate(weeks):
        writer.write_file(
            f"issues/{number}/index.html", template, generator.context,
            relative_urls=generator.settings["RELATIVE_URLS"],
            week=number, week_articles=articles,
            newer=weeks[position - 1][0] if position else None,
            older=weeks[position + 1][0] if position + 1 < len(weeks) else None,
        )


def register() -> None:
    """Pelican's plugin entry point."""
    signals.readers_init.connect(add_reader)
    signals.article_generator_finalized.connect(group_weeks)
    signals.article_writer_finalized.connect(write_weeks)
