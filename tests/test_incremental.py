"""The build cache: a rebuild renders only what changed, and is always byte-identical to a
clean build of the same input (a property test over random edit sequences)."""

from __future__ import annotations

import io
import os
import pickle
import re
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from broadsheet import images, stories, tracking, units
from broadsheet.buildcache import CACHE_FILE
from broadsheet.cli import main
from broadsheet.diagnostics import BuildFailed
from broadsheet.packs import PackDamaged
from broadsheet.pipeline import BuildOptions, BuildReport, CacheVanished, build

from .conftest import REPO, MiniSite, story

SITE_YAML = """\
title: Incremental Digest
base_url: https://example.org/digest/
timezone: UTC
images:
  fetch: false
issues:
  period: weekly
  epoch: 2020-01-06
topics:
  page_size: {page_size}
home:
  stories: {home}
"""
TOPICS = ["AI", "Privacy", "Policy", "Open Source"]
DATES = [f"2020-01-{day:02d}T{hour:02d}:00:00Z"
         for day in (7, 9, 14, 16, 22, 27) for hour in (8, 17)]
TEMPLATES = ["base.html", "story.html", "topic.html", "home.html", "_macros.html",
             "feed-issue.html", "email.txt"]
EXAMPLES = int(os.environ.get("BROADSHEET_HYPOTHESIS_EXAMPLES", "12"))
# Shrinking a failing sequence of builds takes minutes: on request only (=1), not in CI.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + (
    [Phase.shrink] if os.environ.get("BROADSHEET_HYPOTHESIS_SHRINK") else [])


def site_yaml(variant: int = 0) -> str:
    text = SITE_YAML.format(page_size=2 + variant % 2, home=3 + variant % 3)
    return text.replace("Incremental Digest", f"Incremental Digest {variant}") if variant else text


def story_text(number: int, variant: int) -> str:
    """Story `number` in one of many shapes: the variant picks title, date, topics, body."""
    topics = [TOPICS[(number + variant + k) % len(TOPICS)] for k in range(1 + variant % 3)]
    extra = "topics:\n" + "".join(f"  - {t}\n" for t in topics)
    extra += f"quality: {variant % 5}\n"
    if variant % 4 == 0:
        extra += "editor_pick: true\n"
    if variant % 7 == 3:
        extra += "published: false\n"
    if number % 3 == 0:
        extra += "images:\n  - url: images/pic.jpg\n    width: 64\n    height: 40\n"
        extra += f"    title: Picture of story {number}\n"
    # Related coverage that may be another story of the site (linked to its page), by its
    # URL or an AMP copy of it; a variant also moves the story's own URL, so an edit, an
    # addition or a deletion can move the links of stories that were not touched.
    targets = [(number + variant) % 6 + 1, f"{(number + 2 * variant) % 9 + 1}/amp/"]
    extra += "related:\n" + "".join(
        f'  - title: "Coverage {k} of story {number}"\n'
        f'    webUrl: "https://news.example.com/{target}"\n'
        "    provider:\n      name: Other\n      domain: other.example\n"
        for k, target in enumerate(targets[: 1 + variant % 2])
    )
    moved = "-moved" if variant % 5 == 4 else ""
    body = f"Paragraph {variant} of story {number}, with a [link](https://example.com/{variant}).\n"
    return story(
        title=f"Story {number} take {variant}",
        when=DATES[(number * 5 + variant) % len(DATES)],
        url=f"https://news.example.com/{number}{moved}",
        extra=extra,
        body=body,
    )


def picture(variant: int) -> bytes:
    image = Image.new("RGB", (64 + 8 * (variant % 2), 40), ((variant * 70) % 256, 90, 160))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Curator:
    """Applies edits to a site folder the way a curator would, and builds it both ways."""

    def __init__(self, root: Path, clean: Path) -> None:
        self.site = MiniSite(root)
        self.clean = clean
        self.names: dict[int, str] = {}  # story number -> its file name
        self.counter = 0
        self.site.write("site.yaml", site_yaml())
        self.site.write("content/images/pic.jpg", picture(0))
        for number in range(4):
            self.add(number)

    def add(self, variant: int) -> None:
        self.counter += 1
        number = self.counter
        self.names[number] = f"content/s{number}.md"
        self.site.write(self.names[number], story_text(number, variant))

    def pick(self, index: int) -> int | None:
        return sorted(self.names)[index % len(self.names)] if self.names else None

    def apply(self, op: tuple[str, int, int]) -> None:
        kind, index, variant = op
        number = self.pick(index)
        if kind == "add" or number is None:
            self.add(variant)
        elif kind == "edit":
            self.site.write(self.names[number], story_text(number, variant))
        elif kind == "rename":
            self.counter += 1
            new = f"content/renamed-{self.counter}.md"
            os.replace(self.site.root / self.names[number], self.site.root / new)
            self.names[number] = new
        elif kind == "delete":
            self.site.remove(self.names.pop(number))
        elif kind == "template":
            name = TEMPLATES[index % len(TEMPLATES)]
            source = (REPO / "themes/default/templates" / name).read_text(encoding="utf-8")
            marker = f"{{# edit {variant} #}}" if variant % 2 else f"<!-- edit {variant} -->"
            self.site.write(f"templates/{name}", source + marker + "\n")
        elif kind == "untemplate":
            for path in (self.site.root / "templates").glob("*"):
                path.unlink()
        elif kind == "config":
            self.site.write("site.yaml", site_yaml(variant))
        elif kind == "image":
            self.site.write("content/images/pic.jpg", picture(variant))
        elif kind == "age":  # as if time passed: mtimes old enough to be trusted
            past = time.time() - 60
            for path in self.site.root.rglob("*"):
                if path.is_file() and ".cache" not in path.parts:
                    os.utime(path, (past, past))

    def check(self) -> BuildReport:
        """Build incrementally, build from scratch elsewhere: the outputs must be identical."""
        report = self.site.build()
        # The clean build runs on a copy, so that its image cache is its own: sharing it
        # would disturb what the incremental build remembers of its image stage.
        copy = self.clean.parent / "clean-site"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.site.root, copy, ignore=shutil.ignore_patterns(".cache", "output"))
        build(copy, BuildOptions(offline=True, use_cache=False, output_dir=self.clean))
        incremental, clean = tree(self.site.output), tree(self.clean)
        assert sorted(incremental) == sorted(clean)
        different = [name for name in clean if incremental[name] != clean[name]]
        assert not different, f"incremental output differs from a clean build: {different}"
        return report


OPS = st.tuples(
    st.sampled_from(["add", "edit", "edit", "edit", "rename", "delete", "template",
                     "untemplate", "config", "image", "age", "age"]),
    st.integers(0, 20),
    st.integers(0, 20),
)


@settings(max_examples=EXAMPLES, deadline=None, phases=PHASES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=7))
def test_incremental_builds_equal_clean_builds(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    base = tmp_path_factory.mktemp("incremental")
    curator = Curator(base / "site", base / "clean")
    curator.check()
    for op in ops:
        curator.apply(op)
        curator.check()


# -- what a rebuild does ------------------------------------------------------------------


@pytest.fixture
def curator(tmp_path: Path) -> Curator:
    curated = Curator(tmp_path / "site", tmp_path / "clean")
    curated.check()
    curated.apply(("age", 0, 0))
    return curated


def rebuilt(report: BuildReport) -> set[str]:
    return {unit for unit, _ in report.rebuilt}


def test_nothing_changed_renders_nothing(curator: Curator) -> None:
    curator.site.build()  # records the now-trusted mtimes
    report = curator.site.build()
    assert report.nothing_changed and report.site is None
    assert report.reparsed == 0 and not report.rebuilt


def test_one_edit_renders_what_shows_that_story(curator: Curator) -> None:
    curator.site.build()
    number = curator.pick(1)
    assert number is not None
    curator.apply(("edit", 1, 13))  # same date and topics: a new title and quality
    report = curator.check()
    assert report.reparsed == 1
    slug = Path(curator.names[number]).stem
    units_rendered = rebuilt(report)
    assert f"page:stories/{slug}/" in units_rendered
    assert "page:" in units_rendered and "feed:" in units_rendered  # home, site feed
    others = [n for n in curator.names if n != number]
    assert not any(f"page:stories/{Path(curator.names[n]).stem}/" in units_rendered
                   for n in others), "other stories' pages were rendered again"
    reasons = dict(report.rebuilt)
    assert any(curator.names[number] in why for why in reasons.values())


def test_template_edit_renders_only_pages_that_use_it(curator: Curator) -> None:
    curator.apply(("template", TEMPLATES.index("topic.html"), 1))
    report = curator.check()
    assert rebuilt(report) and all(u.startswith("page:topics/") for u in rebuilt(report))
    assert all("topic.html" in why for _, why in report.rebuilt)


def test_config_edit_renders_everything(curator: Curator) -> None:
    curator.apply(("config", 0, 1))
    report = curator.check()
    assert len(report.rebuilt) == report.pages + len([u for u in rebuilt(report)
                                                      if not u.startswith("page:")])
    assert all("site.yaml changed" in why for _, why in report.rebuilt)


def test_deleted_output_file_is_restored(curator: Curator) -> None:
    victim = curator.site.output / "topics" / "ai" / "index.html"
    victim.unlink()
    report = curator.check()
    assert victim.is_file()
    assert "page:topics/ai/" in rebuilt(report)


def test_removed_story_leaves_no_files_behind(curator: Curator) -> None:
    number = curator.pick(0)
    assert number is not None
    slug = Path(curator.names[number]).stem
    curator.apply(("delete", 0, 0))
    report = curator.check()
    assert f"stories/{slug}/index.html" in report.removed
    assert not (curator.site.output / "stories" / slug).exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"\x00garbage" * 10,  # corrupt
        lambda data: pickle.dumps({"not": "a cache"}),  # another shape
        lambda data: b"",  # empty
    ],
)
def test_a_damaged_cache_is_ignored_with_a_note(curator: Curator, damage: object) -> None:
    cache = curator.site.root / ".cache" / "build" / CACHE_FILE
    cache.write_bytes(damage(cache.read_bytes()))  # type: ignore[operator]
    report = curator.check()
    assert report.notes and "cache" in report.notes[0]
    assert report.reparsed == len(curator.names) + 0  # every story read again
    assert curator.site.build().notes == []  # the cache was rewritten


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_damaged_pack_makes_the_cache_untrusted(curator: Curator, damage: str) -> None:
    """Stories' tails and units' facts live in pack files beside the cache file: one that
    is missing or short is damage like any other (and a build never reads half a blob)."""
    folder = curator.site.root / ".cache" / "build"
    packs = sorted(folder.glob("pack-*.bin"))
    assert packs, "the cache keeps its bulky parts in packs"
    for pack in packs:
        if damage == "delete":
            pack.unlink()
        else:
            pack.write_bytes(pack.read_bytes()[:-1])
    report = curator.check()
    assert report.notes and "cache" in report.notes[0]
    assert report.reparsed == len(curator.names)
    assert curator.site.build().notes == []
    assert sorted(folder.glob("pack-*.bin")), "a new pack was written"


def test_a_cache_changed_during_a_build_fails_it_as_its_own_kind(
    make_site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process removing or rewriting the cache mid-build fails `build` like any
    error (nothing written: run it again). Its own type lets the dev server build again
    without the cache, instead of recognising it by the exception it replaced."""
    from broadsheet import stages

    def cache_gone(*args: object, **kwargs: object) -> BuildReport:
        raise PackDamaged("pack-1.bin is missing")

    site = make_site({"content/a.md": story()})
    monkeypatch.setattr(stages, "run", cache_gone)
    with pytest.raises(CacheVanished) as failure:
        site.build()
    assert isinstance(failure.value, BuildFailed)
    assert main(["build", "--site", str(site.root), "--offline"]) == 1
    err = capsys.readouterr().err
    assert ".cache/build: the build cache changed during the build (pack-1.bin is missing)" in err
    assert "Build failed: 1 error; nothing was written" in err  # a folder, not a file


def test_packs_hold_only_what_the_cache_refers_to(curator: Curator) -> None:
    """Each save writes only new blobs; packs no reference needs are deleted, and dead
    bytes are compacted away, so the folder does not grow with every edit."""
    folder = curator.site.root / ".cache" / "build"
    for variant in range(12):
        curator.apply(("edit", variant, variant))
        curator.check()
    assert 1 <= len(list(folder.glob("pack-*.bin"))) <= 9  # packs.MAX_PACKS, plus the last
    assert not list(folder.glob(".pack-*"))


def test_the_cache_holds_facts_shared_by_many_pages_once(curator: Curator) -> None:
    """Pages of one template read the same facts of `site` and the theme: each part of the
    cache pickles them once, after a clean build and after a rebuild of a few pages."""
    from broadsheet.buildcache import BuildCache, _part_of

    def distinct_shared() -> tuple[int, int, int]:
        state = BuildCache(curator.site.root / ".cache" / "build").load()
        records = [(_part_of(name), r) for name, r in state.units.items() if r.shared_key]
        return (len(records), len({(part, id(r.shared)) for part, r in records}),
                len({(part, r.shared_key) for part, r in records}))

    curator.check()
    records, tuples, keys = distinct_shared()
    assert tuples == keys < records
    curator.apply(("edit", 0, 3))
    assert curator.check().rebuilt
    records, tuples, keys = distinct_shared()
    assert tuples == keys < records


def test_a_rebuild_pickles_again_only_the_cache_parts_that_changed(
    curator: Curator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stories and unit records are saved in parts; a part where no story or page
    changed keeps the bytes it had, and what the cache holds is still what was built."""
    from broadsheet import buildcache

    pickled: list[list[tuple[str, object]]] = []
    real = buildcache._pickle_part
    monkeypatch.setattr(buildcache, "_pickle_part", lambda items: pickled.append(items)
                        or real(items))
    for number in range(5, 30):
        curator.add(number)
    curator.apply(("age", 0, 0))  # else every story is read again, as just written
    curator.check()
    folder = curator.site.root / ".cache" / "build"
    pickled.clear()
    curator.apply(("edit", 2, 7))
    report = curator.site.build()
    edited = curator.names[curator.pick(2)]
    assert 0 < len(pickled) <= 1 + len(report.rebuilt)  # the story's part, the pages' parts
    assert any(name == edited for items in pickled for name, _ in items)
    state = buildcache.BuildCache(folder).load()
    article = state.stories[edited].article
    assert article is not None and "take 7" in article.title
    assert len(state.stories) == len(curator.names)
    curator.site.build(use_cache=False)  # the same cache, pickled whole
    whole = buildcache.BuildCache(folder).load()
    assert sorted(state.units) == sorted(whole.units)
    assert sorted(state.stories) == sorted(whole.stories)
    assert [state.units[u].files for u in sorted(state.units)] == [
        whole.units[u].files for u in sorted(whole.units)]
    curator.check()  # and the output is still that of a clean build
    assert curator.site.build().rebuilt == []


def test_a_rebuild_pickles_again_only_the_cache_extras_that_changed(
    curator: Curator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output manifest, pictures, image memo and coverage links are saved apart: an
    edit that changes none of them keeps their bytes, a new story pickles the manifest and
    the links' URL map again, and what loads is always what the last build found."""
    from broadsheet import buildcache

    pickled: list[str] = []
    real = buildcache._pickle_extra
    monkeypatch.setattr(buildcache, "_pickle_extra",
                        lambda name, value: pickled.append(name) or real(name, value))
    folder = curator.site.root / ".cache" / "build"
    curator.site.build()
    pickled.clear()
    name = curator.names[curator.pick(1)]
    text = (curator.site.root / name).read_text(encoding="utf-8")
    retitled = re.sub(r"^title: .*$", "title: Quite another headline", text, count=1,
                      flags=re.M)
    assert retitled != text
    curator.site.write(name, retitled)  # the same files, links and pictures
    assert curator.site.build().reparsed == 1
    assert pickled == ["found"]  # what linking found for the edited story's new bytes
    curator.check()
    pickled.clear()
    before = set(curator.names.values())
    curator.add(40)
    (added,) = set(curator.names.values()) - before
    curator.site.build()
    assert {"slug_by_url", "found", "manifest"} <= set(pickled)
    curator.check()
    state = buildcache.BuildCache(folder).load()
    assert state.manifest == {str(p.relative_to(curator.site.output)).replace(os.sep, "/")
                              for p in curator.site.output.rglob("*") if p.is_file()}
    assert added in state.links[1]  # the new story, linked
    assert set(state.links[1]) <= set(state.stories)
    assert curator.site.build().rebuilt == []


def test_a_cache_from_another_version_is_not_trusted(
    curator: Curator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broadsheet import buildcache

    monkeypatch.setattr(buildcache, "engine_key", lambda: "another-version")
    report = curator.check()
    assert any("another Broadsheet version" in note for note in report.notes)
    assert report.reparsed == len(curator.names)


def test_no_cache_renders_everything(curator: Curator) -> None:
    report = curator.site.build(use_cache=False)
    assert report.reparsed == len(curator.names)
    assert len(report.rebuilt) >= report.pages


def test_failed_build_keeps_output_and_cache_consistent(curator: Curator) -> None:
    before = tree(curator.site.output)
    curator.site.write("content/broken.md", "---\ntitle: [unclosed\n---\n")
    curator.site.fail()
    assert tree(curator.site.output) == before
    curator.site.remove("content/broken.md")
    curator.apply(("edit", 2, 5))
    curator.check()


def test_parallel_rendering_matches_serial(curator: Curator, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setattr(units, "PARALLEL_MIN", 1)
    monkeypatch.setattr(stories, "PARALLEL_MIN", 1)
    parallel = tmp_path / "parallel"
    build(curator.site.root, BuildOptions(offline=True, use_cache=False, output_dir=parallel,
                                          cache_name="parallel", workers=2))
    serial = tmp_path / "serial"
    build(curator.site.root, BuildOptions(offline=True, use_cache=False, output_dir=serial,
                                          cache_name="serial", workers=1))
    assert tree(parallel) == tree(serial)


class _FileSink:
    """Writes each file into a folder (workers' files too: they share the disk)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, name: str, data: bytes) -> bool:
        (self.folder / name).write_bytes(data)
        return False

    def keep(self, name: str) -> None:
        raise AssertionError("nothing is kept here")

    def adopt(self, name: str, same: bool) -> None:
        pass


def test_a_worker_that_is_held_up_leaves_the_other_slices_to_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slices are claimed when a process starts on them, never handed out in advance: a
    worker busy with a slow first slice does not sit on a second one while the parent is
    idle (a pool queues a task ahead for each worker: at 10,000 stories the parent waited
    ten seconds for the worker to render its last two large slices)."""
    monkeypatch.setattr(units, "PARALLEL_MIN", 1)
    monkeypatch.setattr(units, "SLICE_UNITS", 1)
    parent = os.getpid()

    def renderer(index: int) -> units.Renderer:
        def render(recorder: object) -> list[tuple[str, bytes]]:
            if index == 0 and os.getpid() != parent:
                time.sleep(1.5)  # the worker's first slice holds it up
            return [(f"{index}.txt", str(os.getpid()).encode())]

        return render

    work = [units.Unit(f"unit:{i}", (f"{i}.txt",), {}, {}, renderer(i), f"{i}.txt")
            for i in range(40)]
    fp = tracking.Fingerprints({})
    rendered = units.render_units(work, _FileSink(tmp_path), fp, None, workers=2)  # type: ignore[arg-type]
    assert sorted(rendered.records) == sorted(unit.id for unit in work)
    by_worker = [i for i in range(40) if (tmp_path / f"{i}.txt").read_text() != str(parent)]
    # 40 slices of one unit: the worker rendered at most the one it started with.
    assert len(by_worker) <= 1, by_worker


class _LoggingSink(_FileSink):
    """Also logs, in the parent, the files it wrote and the workers' files it adopted."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.log: list[tuple[str, str]] = []

    def write(self, name: str, data: bytes) -> bool:
        self.log.append(("write", name))
        return super().write(name, data)

    def adopt(self, name: str, same: bool) -> None:
        self.log.append(("adopt", name))


def test_the_parent_takes_the_workers_slices_as_they_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent takes a worker's finished slices between its own, not all at the end: the
    pool unpickles each answer when it arrives, and at 10,000 stories the facts of the
    worker's half of the pages waited in the parent (peak RSS 419 -> 383 MB)."""
    monkeypatch.setattr(units, "PARALLEL_MIN", 1)
    monkeypatch.setattr(units, "SLICE_UNITS", 1)
    parent = os.getpid()

    def renderer(index: int) -> units.Renderer:
        def render(recorder: object) -> list[tuple[str, bytes]]:
            if os.getpid() == parent and not any(tmp_path.iterdir()):
                deadline = time.monotonic() + 30  # the worker's first files, then go on
                while len(list(tmp_path.iterdir())) < 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
            time.sleep(0.05)
            return [(f"{index}.txt", str(os.getpid()).encode())]

        return render

    work = [units.Unit(f"unit:{i}", (f"{i}.txt",), {}, {}, renderer(i), f"{i}.txt")
            for i in range(40)]
    sink = _LoggingSink(tmp_path)
    rendered = units.render_units(work, sink, tracking.Fingerprints({}), None, workers=2)  # type: ignore[arg-type]
    assert sorted(rendered.records) == sorted(unit.id for unit in work)
    kinds = [kind for kind, _ in sink.log]
    assert "adopt" in kinds and kinds.count("write") > 1, kinds
    last_write = len(kinds) - 1 - kinds[::-1].index("write")
    assert kinds.index("adopt") < last_write, kinds


def test_explain_says_why(curator: Curator, capsys: pytest.CaptureFixture[str]) -> None:
    curator.site.build()
    assert main(["build", "--site", str(curator.site.root), "--offline", "--explain"]) == 0
    assert "Nothing changed" in capsys.readouterr().out
    curator.apply(("edit", 0, 12))
    assert main(["build", "--site", str(curator.site.root), "--offline", "--explain"]) == 0
    out = capsys.readouterr().out
    number = curator.pick(0)
    assert number is not None
    assert f"stories/{Path(curator.names[number]).stem}/" in out
    assert curator.names[number] in out


def test_dev_server_rebuilds_incrementally_from_memory(curator: Curator, tmp_path: Path) -> None:
    from broadsheet.serve import DevServer

    server = DevServer(curator.site.root, port=0, offline=True, log=io.StringIO())
    try:
        assert server.rebuild()
        curator.apply(("edit", 1, 13))
        assert server.rebuild()
        log = server.log.getvalue()  # type: ignore[attr-defined]
        first, second = (int(line.split("(")[1].split()[0])
                         for line in log.splitlines() if line.startswith("Built"))
        assert 0 < second < first, log  # what shows the edited story, not the whole site
        clean = tmp_path / "clean-preview"
        build(curator.site.root, BuildOptions(offline=True, use_cache=False, output_dir=clean,
                                              base_url=server.url, cache_name="clean-preview"))
        assert tree(server.workspace / "site") == tree(clean)
    finally:
        server.stop()
    assert not server.workspace.exists()
    assert (curator.site.root / ".cache" / "serve" / CACHE_FILE).is_file()


def test_new_story_renders_only_what_lists_it(curator: Curator) -> None:
    curator.site.build()
    before = set(curator.names)
    curator.apply(("add", 0, 1))
    report = curator.check()
    units_rendered = rebuilt(report)
    new = next(n for n in curator.names if n not in before)
    slug = Path(curator.names[new]).stem
    assert f"page:stories/{slug}/" in units_rendered
    assert "page:404.html" not in units_rendered  # it shows no story
    assert report.site is not None
    linking = {a.slug for a in report.site.articles
               if any(item.story_slug == slug for item in a.related)}
    others = {Path(curator.names[n]).stem for n in before} - linking
    assert others, "the test needs stories that do not cover the new one"
    assert not any(f"page:stories/{stem}/" in units_rendered for stem in others), (
        "a new story re-rendered pages of stories that do not link to it")
    assert all(f"page:stories/{stem}/" in units_rendered for stem in linking)


# -- the image stage ----------------------------------------------------------------------


def no_image_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a build looks at any image source."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image stage ran again")

    monkeypatch.setattr(images, "locate_sources", refuse)


def test_edit_that_keeps_images_replays_the_image_stage(
    curator: Curator, monkeypatch: pytest.MonkeyPatch
) -> None:
    curator.site.build()
    number = curator.pick(0)
    assert number is not None
    path = curator.site.root / curator.names[number]
    path.write_text(path.read_text(encoding="utf-8") + "\nOne more paragraph.\n",
                    encoding="utf-8")
    no_image_stage(monkeypatch)
    report = curator.site.build()
    assert report.reparsed == 1 and report.rebuilt
    monkeypatch.undo()
    curator.check()


def test_an_image_that_appears_is_picked_up(curator: Curator) -> None:
    extra = "images:\n  - url: images/later.jpg\n    width: 64\n    height: 40\n    title: Later\n"
    curator.site.write("content/later.md", story(
        title="A story whose picture comes later", when=DATES[0],
        url="https://news.example.com/later", extra=extra))
    curator.site.build()
    curator.apply(("age", 0, 0))
    curator.site.build()  # the image stage is remembered with the file missing...
    curator.apply(("age", 0, 0))
    curator.site.build()  # ...and replayed
    curator.site.write("content/images/later.jpg", picture(1))
    report = curator.check()
    assert report.images is not None and report.images.decoded == 1
    page = curator.site.page("stories/later/")
    assert page.xpath("//img[contains(@src, '/thumbs/') and not(contains(@src, '.svg'))]")


def test_a_story_image_edit_reaches_its_pictures(curator: Curator) -> None:
    curator.site.build()
    number = next(n for n in curator.names if n % 3 == 0)
    path = curator.site.root / curator.names[number]
    path.write_text(path.read_text(encoding="utf-8").replace("height: 40", "height: 32"),
                    encoding="utf-8")
    curator.check()
    page = curator.site.page(f"stories/{Path(curator.names[number]).stem}/")
    assert page.xpath("//img[@height='32']"), "the story page kept the old image size"


def test_parallel_rebuild_updates_the_output_in_place(
    curator: Curator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild that renders many units spreads them over worker processes; the files the
    workers write reach the previous output like the parent's own."""
    monkeypatch.setattr(units, "PARALLEL_MIN", 1)
    monkeypatch.setattr(stories, "PARALLEL_MIN", 1)
    curator.site.build(workers=2)
    curator.apply(("template", TEMPLATES.index("base.html"), 3))
    report = curator.site.build(workers=2)
    assert len(report.rebuilt) > 2
    copy = curator.clean.parent / "clean-site"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(curator.site.root, copy, ignore=shutil.ignore_patterns(".cache", "output"))
    build(copy, BuildOptions(offline=True, use_cache=False, output_dir=curator.clean))
    assert tree(curator.site.output) == tree(curator.clean)


# -- what a rebuild reads -----------------------------------------------------------------


def test_a_rebuild_reads_related_coverage_only_of_stories_it_shows(tmp_path: Path) -> None:
    """A story from the cache is its head (dates, topics, slug); its related coverage and
    body are read only for pages that render. The rebuild is still exact (compared with a
    clean build), and stories it did not show keep their tails unread."""
    curator = Curator(tmp_path / "site", tmp_path / "clean")
    curator.site.write("site.yaml", site_yaml() + "feeds:\n  entries: 2\n")
    for variant in range(24):
        curator.add(variant)
    curator.check()
    curator.apply(("age", 0, 0))
    curator.site.build()
    curator.apply(("edit", 0, 5))
    report = curator.check()
    assert report.site is not None
    unread = [a.source for a in report.site.articles if "body_html" not in vars(a)]
    assert len(unread) >= len(report.site.articles) // 2, unread


def test_linking_a_cold_build_loads_no_story_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stories read by parsing workers arrive pickled; linking their coverage to each
    other's pages reads only their coverage keys, not their related items and bodies, and
    a story it links stays unloaded (its copy holds the new links, which loading applies),
    and no story keeps its coverage keys once linked. Rendering lets each story's related
    items and body go once its page or feed is done. The output is still that of a clean
    build."""
    from broadsheet import assemble
    from broadsheet.model import related_slugs

    monkeypatch.setattr(stories, "PARALLEL_MIN", 1)
    linked: list[tuple[list[object], dict[str, object]]] = []
    kept_keys: list[bool] = []
    real = assemble.link_coverage

    def spy(articles: list[object], memo: assemble.LinkMemo | None = None) -> list[object]:
        found = real(articles, memo)  # type: ignore[arg-type]
        relinked = memo.relinked if memo else {}
        linked.append((["body_html" not in vars(a) for a in found], dict(relinked)))
        kept_keys.extend("coverage" in vars(a) for a in [*articles, *found])
        return found  # type: ignore[return-value]

    monkeypatch.setattr(assemble, "link_coverage", spy)
    curator = Curator(tmp_path / "site", tmp_path / "clean")
    for variant in range(12):
        curator.add(variant)
    report = curator.check()
    unloaded, relinked = linked[0]
    assert report.site is not None and len(unloaded) == len(report.site.articles) > 8
    assert all(unloaded)
    assert kept_keys and not any(kept_keys)
    assert any(slug for a in relinked.values() for slug in related_slugs(a))  # type: ignore
    # Each story page and feed loaded its stories' tails, and let them go afterwards.
    assert all("body_html" not in vars(a) and "related" not in vars(a)
               for a in report.site.articles)
    shown = {a.source: a for a in report.site.articles}
    for source in relinked:  # loading the tail applies the links
        assert tuple(item.story_slug for item in shown[source].related) == related_slugs(
            shown[source])


def test_stories_parsed_in_workers_keep_their_blobs_in_a_pack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build that parses many stories in worker processes writes their tails, related
    items' images and coverage keys to a pack as they arrive instead of holding them (their
    heads become the stories), and the facts of the pages it renders as they come; the
    cache it saves refers to that pack (and holds the heads itself, an outlet shared by
    several stories of a part unpickled once), the output is that of a clean build, and a
    build that fails leaves no pack behind."""
    from broadsheet import buildcache, stages
    from broadsheet.buildcache import BuildCache
    from broadsheet.packs import BlobRef

    monkeypatch.setattr(stories, "PARALLEL_MIN", 1)
    monkeypatch.setattr(buildcache, "INLINE_MAX", 100)  # this site's are a few hundred bytes
    tails: list[object] = []
    heads: list[object] = []
    others: list[object] = []  # images and coverage blobs: small ones stay inline
    real = stages.load_stories

    def spy(*args: object, **kwargs: object) -> stories.Loaded:
        loaded = real(*args, **kwargs)  # type: ignore[arg-type]
        tails.extend(entry._tail for entry in loaded.entries.values())
        heads.extend(entry._head for entry in loaded.entries.values())
        others.extend(blob for entry in loaded.entries.values()
                      for blob in (entry._images, entry._coverage))
        return loaded

    monkeypatch.setattr(stages, "load_stories", spy)
    curator = Curator(tmp_path / "site", tmp_path / "clean")
    for variant in range(12):
        curator.add(variant)
    curator.check()
    assert len(tails) >= 2 * len(curator.names)  # this build's and the clean build's
    assert all(type(tail) is BlobRef for tail in tails)
    assert any(type(blob) is BlobRef for blob in others)
    assert all(type(blob) is BlobRef or len(blob) <= 100 for blob in others)  # type: ignore
    folder = curator.site.root / ".cache" / "build"
    packs = sorted(folder.glob("pack-*.bin"))
    spilled = {Path(tail.path) for tail in tails[: len(curator.names)]}  # type: ignore
    assert len(spilled) == 1 and spilled <= set(packs)
    assert heads and all(head is None for head in heads)  # made into stories
    saved = BuildCache(folder).load()
    loaded_heads = [entry._head for entry in saved.stories.values()]
    assert all(type(head) is tuple and type(head[0]) is dict for head in loaded_heads)
    assert all(entry.article for entry in saved.stories.values())  # as a build reads them
    together = pickle.loads(pickle.dumps(list(saved.stories.values())))  # as in one part
    outlets = {id(entry._head[0]["provider"]) for entry in together}
    assert len(outlets) == 1 < len(together)  # one outlet here, unpickled once
    facts = [record._facts_blob for record in saved.units.values()]
    assert len([f for f in facts if type(f) is BlobRef]) >= len(curator.names)
    assert {Path(f.path) for f in facts if type(f) is BlobRef} == spilled  # type: ignore
    assert curator.site.build().rebuilt == []  # the cache, packs and all, is good

    from broadsheet.packs import PackWriter

    written: list[Path] = []
    add = PackWriter.add
    monkeypatch.setattr(PackWriter, "add", lambda self, blob: written.append(self.path)
                        or add(self, blob))
    curator.site.write("content/zz-broken.md", "---\ntitle: [unclosed\n---\nBody\n")
    curator.site.fail(use_cache=False)  # every story read again, then the build fails
    assert written and not written[0].exists()
    assert sorted(folder.glob("pack-*.bin")) == packs
    curator.site.remove("content/zz-broken.md")
    curator.apply(("edit", 0, 7))  # deciding reads the spilled facts of the pages it shows
    curator.check()


def test_a_pack_removed_during_a_build_fails_it_cleanly(
    curator: Curator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process deleting the cache while a build reads it: the build stops with a
    clear error and writes nothing; the next build refuses the damaged cache and works."""
    from broadsheet import stages
    from broadsheet.diagnostics import BuildFailed

    curator.site.build()
    before = tree(curator.site.output)
    curator.apply(("edit", 0, 7))
    planned = stages.plan_pages

    def plan_then_delete_packs(*args: object, **kwargs: object) -> object:
        for pack in (curator.site.root / ".cache" / "build").glob("pack-*.bin"):
            pack.unlink()
        return planned(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stages, "plan_pages", plan_then_delete_packs)
    with pytest.raises(BuildFailed, match="build cache was changed"):
        curator.site.build()
    assert tree(curator.site.output) == before
    monkeypatch.setattr(stages, "plan_pages", planned)
    report = curator.check()
    assert report.reparsed == len(curator.names)


def test_fingerprints_depend_on_values_not_on_which_objects_are_shared() -> None:
    """Aggregates are fingerprinted by pickling their parts without a memo: equal parts give
    equal digests whether or not they are one shared object (a memo would write a shared
    one as a back-reference, and the next build, sharing differently, would re-render)."""
    from broadsheet.tracking import Fingerprints, parts_digest

    word = "".join(["sec", "tion"])  # equal to "section", another object
    pair = ("x", "section")
    assert word is not "section"  # noqa: F632
    assert parts_digest([pair, pair, ("section", 1)]) == parts_digest(
        [("x", word), ("x", "".join(["sec", "tion"])), (word, 1)])
    assert parts_digest(["a", ("b",)]) != parts_digest(["a", ("c",)])
    assert parts_digest([lambda: 0]) is None  # not picklable: no digest, never a wrong one
    fp = Fingerprints({})
    same = [("x", word)] * 2
    assert fp.of(same) == Fingerprints({}).of([("x", "section"), ("x", "".join(["sec", "tion"]))])


def test_a_story_fingerprint_is_remembered_only_for_the_same_derived_fields(
    curator: Curator,
) -> None:
    """A rebuild takes each story's fingerprint from its cache entry when assembly gave it
    the same issue, topics and links as the last build did (not hashed again), and hashes
    it anew when any of them differ: a stale one would skip pages that show the change."""
    from broadsheet.buildcache import BuildCache
    from broadsheet.model import with_head
    from broadsheet.tracking import Fingerprints

    state = BuildCache(curator.site.root / ".cache" / "build").load()
    shown = {name: e for name, e in state.stories.items()
             if e.article is not None and not e.article.is_draft}
    assert shown and all(e.fingerprint for e in shown.values())
    source, entry = sorted(shown.items())[0]
    article = entry.article
    assert article is not None and entry.fingerprint is not None
    derived, value = entry.fingerprint
    assert derived[0] is not None  # the issue assembly gave it
    parsed = {name: e.parsed(name) for name, e in state.stories.items()}
    entry.fingerprint = (derived, ("A", b"remembered"))
    fp = Fingerprints(parsed, state.stories)
    assert fp.article(with_head(article, issue=derived[0])) == ("A", b"remembered")
    assert fp.found == {}
    moved = fp.article(with_head(article, issue=derived[0] + 1))
    assert moved[0] == "A" and moved != ("A", b"remembered") and moved != value
    assert fp.found[source][1] == moved
    fresh = Fingerprints(parsed).article(with_head(article, issue=derived[0]))
    assert fresh == value  # what was remembered is what hashing gives


def test_symlinked_folders_are_walked_once_and_only_inside_the_site(
        make_site, tmp_path: Path) -> None:
    """The nothing-changed check walks the site: two `ln -s .` links made that walk endless,
    and a link to a big folder elsewhere made every build read all of it."""
    site = make_site({"content/a.md": story(), "notes/x.txt": "x"})
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "big.txt").write_text("x")
    for name in ("loop-a", "loop-b"):
        (site.root / "content" / name).symlink_to(".")
    (site.root / "content" / "elsewhere").symlink_to(outside)
    (site.root / "content" / "notes").symlink_to(site.root / "notes")
    past = time.time() - 60  # mtimes old enough to be trusted
    for path in site.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, (past, past))
    site.build()
    assert site.build().nothing_changed
    (outside / "big.txt").write_text("changed, but not an input: no story or image is read there")
    assert site.build().nothing_changed
    time.sleep(0.01)
    (site.root / "notes" / "x.txt").write_text("changed, and inside the site")
    assert not site.build().nothing_changed


def test_site_yaml_output_is_no_input_of_a_build_elsewhere(make_site, tmp_path: Path) -> None:
    """With --output elsewhere, output/ (site.yaml's) is another build's result, not an
    input: its 13,000 files were walked by every nothing-changed check."""
    site = make_site({"content/a.md": story()})
    site.build()  # into output/
    elsewhere = tmp_path / "elsewhere"
    past = time.time() - 60  # mtimes old enough to be trusted
    for path in site.root.rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))
    site.build(output_dir=elsewhere)
    assert site.build(output_dir=elsewhere).nothing_changed
    (site.output / "stray.html").write_text("written by someone else")
    assert site.build(output_dir=elsewhere).nothing_changed
