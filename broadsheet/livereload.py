"""How open preview pages learn that a newer build exists, and what they show meanwhile.

Each build the server publishes gets a token; every page is served with the token of the
build it came from, and its script asks the server to say at once when the current token is
another one. So a build that finished while the page was still loading is announced too,
not only builds that finish after the page is listening. The diagnostics overlay of a
failed build is added to pages here as well; nothing of this is ever written into a build.
"""

from __future__ import annotations

import html
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .diagnostics import Diagnostic

PREFIX = "/__broadsheet/"
# Browsers keep at most 6 connections per host, and an event stream holds one for as long
# as its page is open: one stream per tab let six tabs starve the seventh. So one tab (the
# holder of a Web Lock) keeps the stream and passes what it hears to the other tabs of the
# same browser (BroadcastChannel). Without those (an insecure origin: another machine
# reaching a --host 0.0.0.0 preview by name has no Web Locks), each tab has its own stream
# and closes it while hidden. A tab that starts listening asks for the current build once,
# since a build finished while it loaded may have been announced before it listened.
LIVE_SCRIPT = b"""\
(() => {
  const shown = document.currentScript.dataset.build;
  const base = "/__broadsheet/";
  const check = (build) => { if (build && build !== shown) location.reload(); };
  const listen = (heard) => {
    const source = new EventSource(base + "events?since=" + encodeURIComponent(shown));
    source.addEventListener("reload", (event) => heard(event.data));
    return source;
  };
  if (self.BroadcastChannel && navigator.locks) {
    const channel = new BroadcastChannel("broadsheet-live");
    channel.onmessage = (event) => check(event.data);
    fetch(base + "build", { cache: "no-store" })
      .then((response) => response.text()).then((build) => check(build.trim()), () => {});
    navigator.locks.request("broadsheet-live", () => new Promise(() => {
      listen((build) => { channel.postMessage(build); check(build); });
    }));
    return;
  }
  let source = null;
  const follow = () => {
    if (document.hidden) {
      if (source) source.close();
      source = null;
    } else if (!source) {
      source = listen(check);
    }
  };
  document.addEventListener("visibilitychange", follow);
  follow();
})();
"""


@dataclass(frozen=True)
class Shown:
    """What one response shows, read at one instant: never a token newer than its files."""

    folder: Path | None  # the last good build, None before the first one
    problems: list[Diagnostic]  # of the latest attempt, when it failed
    token: str  # names the build: this server session and its publication count


@dataclass
class BuildState:
    """What the server shows: the last good build and the problems of the latest attempt."""

    folder: Path | None = None
    problems: list[Diagnostic] = field(default_factory=list)
    generation: int = 0
    # A restarted server counts from 0 again; its tokens must still differ from the old
    # server's, so that a page the old one served reloads.
    session: str = field(default_factory=lambda: secrets.token_hex(4))
    changed: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False  # the server is stopping: no stream waits any more

    @property
    def token(self) -> str:
        return f"{self.session}-{self.generation}"

    def publish(self, folder: Path | None, problems: list[Diagnostic]) -> None:
        with self.changed:
            if folder is not None:
                self.folder = folder
            self.problems = problems
            self.generation += 1
            self.changed.notify_all()

    def shown(self) -> Shown:
        with self.changed:
            return Shown(self.folder, self.problems, self.token)

    def wait_for_change(self, seen: str, timeout: float) -> str | None:
        """The current token once it is not `seen`, `seen` after `timeout` seconds, or None
        at once when the server is stopping (see `close`)."""
        with self.changed:
            self.changed.wait_for(lambda: self.closed or self.token != seen, timeout=timeout)
            return None if self.closed else self.token

    def close(self) -> None:
        """The server is stopping: waiting streams end, and so does any that starts waiting
        later. A notification alone reached only the streams already waiting: one that had
        just checked whether the server was stopping waited out a whole keepalive period."""
        with self.changed:
            self.closed = True
            self.changed.notify_all()


class StreamCount:
    """How many event streams are open: what the browsers' reload scripts hold."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0  # a stream the browser closed counts until the next keepalive
        self.started = 0

    @contextmanager
    def opened(self) -> Iterator[None]:
        with self._lock:
            self.open += 1
            self.started += 1
        try:
            yield
        finally:
            with self._lock:
                self.open -= 1


def inject(page: bytes, shown: Shown) -> bytes:
    """Add the reload script, and the diagnostics overlay when the latest build failed."""
    snippet = f'<script src="{PREFIX}live.js" data-build="{html.escape(shown.token)}"></script>'
    if shown.problems:
        snippet += overlay(shown.problems, shown.folder is not None)
    marker = page.rfind(b"</body>")
    if marker == -1:
        return page + snippet.encode()
    return page[:marker] + snippet.encode() + page[marker:]


def overlay(problems: list[Diagnostic], kept: bool) -> str:
    """The diagnostics over the page; `kept`: the page is the last good build's."""
    items = "".join(f"<li>{html.escape(str(p))}</li>" for p in problems[:100])
    more = f"<p>… and {len(problems) - 100} more</p>" if len(problems) > 100 else ""
    title = ("The last edit broke the build; this is the last good version." if kept else
             "The site does not build yet; this page reloads once it does.")
    return (
        '<div id="broadsheet-overlay" role="alert" style="position:fixed;inset:auto 0 0 0;'
        "max-height:60vh;overflow:auto;z-index:2147483647;background:#2b0b0b;color:#ffe9e9;"
        "font:14px/1.5 ui-monospace,Menlo,Consolas,monospace;padding:1rem 1.25rem;"
        f'border-top:4px solid #ff6b6b"><strong style="font-size:15px">{title}</strong>'
        f'<ul style="margin:.5rem 0 0;padding-left:1.25rem">{items}</ul>{more}</div>'
    )
