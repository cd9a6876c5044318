"""Shared helpers: write a mini site from a dict of files, build it, parse what it wrote."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import html5lib
import pytest
from lxml import etree

from broadsheet.diagnostics import BuildFailed, Diagnostic
from broadsheet.pipeline import BuildOptions, BuildReport, build

REPO = Path(__file__).resolve().parent.parent

SITE_YAML = """\
title: Test Digest
base_url: https://example.org/
timezone: UTC
issues:
  period: weekly
  epoch: 2020-01-06
"""


def story(
    title: str = "A story",
    when: str = "2020-01-24T18:24:00Z",
    url: str = "https://news.example.com/a",
    extra: str = "",
    body: str = "",
) -> str:
    """A minimal valid story file; `extra` is more YAML lines, `body` the Markdown."""
    lines = [
        "---",
        f"title: {json.dumps(title)}",
        f"publishedDateTime: {when}",
        f'webUrl: "{url}"',
    ]
    if extra:
        lines.append(textwrap.dedent(extra).strip("\n"))
    lines.append("---")
    return "\n".join(lines) + "\n" + body



def refuse_to_list(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make every folder called `name` unlistable. Root (the tests' user here) reads every
    folder, so the refusal is simulated where os.walk lists them."""
    real_scandir = os.scandir

    def refuse(path: Any = ".") -> Any:
        if os.fspath(path).endswith(name):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether `condition` came true within `timeout` seconds (polled): for what other
    threads and processes do, never to judge how fast anything is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False

@dataclass
class MiniSite:
    root: Path

    @property
    def output(self) -> Path:
        return self.root / "output"

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def remove(self, name: str) -> None:
        (self.root / name).unlink()

    def build(self, **options: object) -> BuildReport:
        """Build offline unless `offline=False`: tests reach no network but 127.0.0.1."""
        options.setdefault("offline", True)
        return build(self.root, BuildOptions(**options))  # type: ignore[arg-type]

    def fail(self, **options: object) -> list[Diagnostic]:
        """Build, expecting failure; the diagnostics as a list."""
        with pytest.raises(BuildFailed) as failure:
            self.build(**options)
        return failure.value.diagnostics

    def messages(self, **options: object) -> list[str]:
        return [str(d) for d in self.fail(**options)]

    def page(self, route: str) -> etree._Element:
        """The built page at `route` ('' for home, 'stories/x/'), parsed like a browser would."""
        path = self.output / (route + "index.html" if route == "" or route.endswith("/") else route)
        return parse_html(path.read_bytes())

    def files(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.output).as_posix(): p.read_bytes()
            for p in sorted(self.output.rglob("*"))
            if p.is_file()
        }


def parse_html(data: bytes) -> etree._Element:
    return html5lib.parse(data, treebuilder="lxml", namespaceHTMLElements=False)


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., MiniSite]:
    """make_site({"content/a.md": story()}) -> a MiniSite in tmp_path with a site.yaml."""

    def make(
        files: dict[str, str | bytes] | None = None, site_yaml: str = SITE_YAML, name: str = "site"
    ) -> MiniSite:
        site = MiniSite(tmp_path / name)
        site.write("site.yaml", site_yaml)
        (site.root / "content").mkdir(parents=True, exist_ok=True)
        for file_name, text in (files or {}).items():
            site.write(file_name, text)
        return site

    return make


@pytest.fixture(scope="session")
def sample_site(tmp_path_factory: pytest.TempPathFactory) -> MiniSite:
    """The repository's own sample site, copied and built once for the whole session."""
    root = tmp_path_factory.mktemp("sample") / "site"
    root.mkdir()
    shutil.copy(REPO / "site.yaml", root / "site.yaml")
    shutil.copytree(REPO / "content", root / "content")
    site = MiniSite(root)
    site.build()
    return site


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright) for the tests that look at pages in a real browser:
    skipped where there is none, required in CI."""
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (.ci/run installs it)")
        pytest.skip("Chromium is not installed here; .ci/run installs it")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()
