"""Site search with Pagefind: an index made from the finished pages, inside the staging folder.

Pagefind reads the built HTML (only the parts marked `data-pagefind-body`: stories, topics and
issues) and writes a static index under `pagefind/`, which the search page queries in the
browser. It runs before the output swap, so the index always matches the pages beside it.
The dev server runs it after the swap instead, in the background (`BackgroundIndex`).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TextIO

from .diagnostics import BuildFailed, Diagnostic

SEARCH_FOLDER = "pagefind"
TIMEOUT_SECONDS = 600
# Pagefind ended by SIGINT: Ctrl-C in the terminal, which reaches every process of the
# server's group. The server is stopping as well; the failed run is not worth a line
# (printed between ^C and "Stopped.", it read as an error of its own).
INTERRUPTED = "interrupted"


def pagefind_command(site: Path, *output: str) -> list[str]:
    """Pagefind (shipped as the `pagefind[bin]` package) over a built site folder; `output`
    says where the index goes."""
    return [sys.executable, "-m", "pagefind", "--site", str(site), *output, "--silent"]


def index_site(folder: Path) -> None:
    """Run Pagefind over a built site folder, writing the index inside it."""
    command = pagefind_command(folder, "--output-subdir", SEARCH_FOLDER)
    try:
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildFailed([Diagnostic("site.yaml", 0, "search", f"Pagefind could not run: {exc}")]
                          ) from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BuildFailed([Diagnostic("site.yaml", 0, "search", "Pagefind failed: "
                                      + (detail[-1] if detail else f"exit {result.returncode}"))])


class BackgroundIndex:
    """The dev server's search index, made by Pagefind after a build is announced.

    Pagefind reads every page again whatever the edit (4 to 6 s at 1,000 stories): run
    before the reload, it made each save wait that long. Run afterwards, the edited page
    shows at once and search catches up a few seconds later. Each index is made in a folder
    of its own beside the preview's build and served from there, never written into the
    build; the one before it stays too, since a search page loaded earlier asks for that
    index's files. A run that fails is reported only if no build came meanwhile (pages
    changing under Pagefind can fail it; the next run follows anyway)."""

    def __init__(self, site: Path, workspace: Path, log: TextIO) -> None:
        self.site = site
        self.workspace = workspace
        self.log = log
        self._folders: list[Path] = []  # newest first, at most two
        self._wanted = threading.Event()
        self._lock = threading.Lock()  # guards the folders, the process and stopping
        self._stopping = False
        self._process: subprocess.Popen[str] | None = None
        self._runs = 0
        self._cleared = 0  # times search was turned off: a run begun before makes no index
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        """Index the site again (after a build that changed pages); requests made while
        Pagefind runs are one more run once it has finished."""
        self._wanted.set()

    def folders(self) -> list[Path]:
        """Where the index files are, newest first."""
        with self._lock:
            return list(self._folders)

    def clear(self) -> None:
        """Search was turned off: no index is served, not even that of a run under way or
        asked for (such a run finished after this, and its index was served)."""
        with self._lock:  # as _run takes a request: it either skips it or discards it
            self._wanted.clear()
            self._cleared += 1
            old, self._folders = self._folders, []
        for folder in old:
            shutil.rmtree(folder, ignore_errors=True)

    def stop(self) -> None:
        """Stop Pagefind if it runs and wait for the thread: its folders can then go."""
        with self._lock:
            self._stopping = True
            if self._process is not None and self._process.poll() is None:
                self._process.kill()
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopping:
                return
            with self._lock:
                if not self._wanted.is_set():  # search was turned off since
                    continue
                self._wanted.clear()
                cleared = self._cleared
            self._refresh(cleared)

    def _refresh(self, cleared: int) -> None:
        """One Pagefind run; its index is served unless search was turned off since
        `clear` had been called `cleared` times."""
        self._runs += 1
        target = self.workspace / f"search-{self._runs}"
        problem = self._pagefind(target)
        if self._stopping:
            return
        if problem is not None:
            shutil.rmtree(target, ignore_errors=True)
            if problem != INTERRUPTED and not self._wanted.is_set():
                print(f"Search index not updated: {problem}", file=self.log)
            return
        with self._lock:
            if self._cleared != cleared:  # search was turned off meanwhile
                old = [target]
            else:
                self._folders, old = [target, *self._folders[:1]], self._folders[1:]
        for folder in old:
            shutil.rmtree(folder, ignore_errors=True)

    def _pagefind(self, target: Path) -> str | None:
        """Run Pagefind into `target`; what went wrong, or None."""
        command = pagefind_command(self.site, "--output-path", str(target))
        with self._lock:
            if self._stopping:
                return "stopped"
            try:
                self._process = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    errors="replace")
            except OSError as exc:
                return f"Pagefind could not run: {exc}"
        try:
            out, err = self._process.communicate(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            return f"Pagefind took more than {TIMEOUT_SECONDS} s"
        if self._process.returncode == 0:
            return None
        if self._process.returncode == -signal.SIGINT:
            return INTERRUPTED
        detail = (err or out).strip().splitlines()
        return "Pagefind failed: " + (detail[-1] if detail else f"exit {self._process.returncode}")
