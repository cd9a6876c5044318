"""The dev server: build, serve, watch, rebuild, and tell open browsers to reload.

Every build goes into a fresh folder and the server switches to it only once it is complete,
so a page is never served from a half-written build. A failed build keeps the last good one
on screen with an overlay of the diagnostics. The reload script and the overlay are added to
pages as they are served; nothing of the dev server is ever written into a build.
"""

from __future__ import annotations

import contextlib
import gc
import html
import http.server
import ipaddress
import mimetypes
import posixpath
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

import watchfiles

from .config import CONFIG_FILE, load_config
from .diagnostics import BuildFailed, Diagnostic
from .pipeline import BuildOptions, build, build_cache, configure

PREFIX = "/__broadsheet/"
KEEPALIVE_SECONDS = 15.0
# watchfiles yields a burst of changes once the files have been quiet this long: an editor's
# save (a temporary file renamed over the story) takes a few milliseconds, and every
# millisecond waited here is one more between the save and the browser's reload.
WATCH_STEP_MS = 15
# A rebuild runs with the garbage collector paused and leaves its objects frozen (see
# pipeline.collector_paused). Collecting them walks the whole site model, 0.15 s at 1,000
# stories with the interpreter lock held: done right after a rebuild, it delayed the
# browser's reload and any save that came meanwhile. So it waits for this much quiet.
COLLECT_AFTER_SECONDS = 1.0
LIVE_SCRIPT = b"""\
(() => {
  // The generation the page was served at: a build that finished before this stream
  // connected is announced at once instead of being missed.
  const generation = document.currentScript.dataset.generation || "";
  const source = new EventSource("/__broadsheet/events?g=" + generation);
  source.addEventListener("reload", () => location.reload());
})();
"""
mimetypes.add_type("application/json", ".json")
mimetypes.add_type("application/xml", ".xml")
mimetypes.add_type("application/atom+xml", ".atom")
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("image/svg+xml", ".svg")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/x-opml", ".opml")


@dataclass
class BuildState:
    """What the server shows: the last good build and the problems of the latest attempt."""

    folder: Path | None = None
    problems: list[Diagnostic] = field(default_factory=list)
    generation: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def publish(self, folder: Path | None, problems: list[Diagnostic]) -> None:
        with self.changed:
            if folder is not None:
                self.folder = folder
            self.problems = problems
            self.generation += 1
            self.changed.notify_all()

    def wait_for_change(self, seen: int, timeout: float) -> int:
        with self.changed:
            self.changed.wait_for(lambda: self.generation != seen, timeout=timeout)
            return self.generation


class DevServer:
    """A preview of one site: `start()` builds and serves; `stop()` cleans up everything."""

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        drafts: bool = False,
        offline: bool = False,
        log: TextIO | None = None,
    ) -> None:
        self.root = root.resolve()
        self.host = host
        self.drafts = drafts
        self.offline = offline
        self.log = log or sys.stderr
        self.state = BuildState()
        self.builds = 0
        self.shown_warnings: set[str] = set()  # the last good build's, printed already
        self.stop_event = threading.Event()
        self.watching = threading.Event()
        self.base_path = urlsplit(load_config(self.root).base_url).path or "/"
        self.httpd = PreviewHTTPServer((host, port), PreviewHandler, self)
        # Made last, once nothing else here can fail: no empty folder is left behind.
        self.workspace = Path(tempfile.mkdtemp(prefix="broadsheet-serve-"))
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.base_path}"

    def start(self) -> None:
        self.rebuild()
        for target in (self.httpd.serve_forever, self.watch):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.watching.wait(timeout=10)  # edits made from now on are seen

    def stop(self) -> None:
        """Stop serving and watching, keep the cache, remove the preview's files.

        Safe on a server that was never started (`shutdown` would wait forever for a
        `serve_forever` that never ran)."""
        self.stop_event.set()
        if self._threads:
            self.httpd.shutdown()
        self.httpd.server_close()
        with self.state.changed:
            self.state.changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self.save_cache()
        shutil.rmtree(self.workspace, ignore_errors=True)

    def save_cache(self) -> None:
        """Keep the preview's build cache for the next session (never fatal)."""
        options = self.build_options(self.workspace / "site")
        with contextlib.suppress(BuildFailed):  # a broken site.yaml: start afresh next time
            build_cache(configure(load_config(self.root), options), options).flush()

    # -- building ---------------------------------------------------------------------

    def build_options(self, folder: Path) -> BuildOptions:
        """The preview's build: its own cache, kept in memory between rebuilds (written to
        .cache/serve/ when the server stops), in one process (forking while the server's
        threads hold locks is not safe)."""
        return BuildOptions(
            drafts=self.drafts, output_dir=folder, base_url=self.url, offline=self.offline,
            cache_name="serve", workers=1, persist_cache=False,
        )

    def rebuild(self) -> bool:
        """Rebuild the preview folder; its files change only once a build has succeeded."""
        self.builds += 1
        folder = self.workspace / "site"
        options = self.build_options(folder)
        try:
            report = build(self.root, options)
        except BuildFailed as failure:
            for diagnostic in failure.diagnostics:
                print(diagnostic, file=self.log)
            print(f"Build failed: still showing the last good build at {self.url}", file=self.log)
            self.state.publish(None, [d for d in failure.diagnostics if d.is_error])
            return False
        # Each warning once: the same ones after every save would bury what the save changed.
        warnings = [str(warning) for warning in report.warnings]
        for warning in warnings:
            if warning not in self.shown_warnings:
                print(warning, file=self.log)
        repeated = sum(1 for warning in warnings if warning in self.shown_warnings)
        self.shown_warnings = set(warnings)
        self.state.publish(folder, [])
        count = report.counts.stories
        noun = "story" if count == 1 else "stories"
        pages = len(report.rebuilt)
        again = f"; {repeated} {'warning' if repeated == 1 else 'warnings'} as before" \
            if repeated else ""
        print(f"Built {count} {noun} in {report.seconds:.2f} s "
              f"({pages} {'page' if pages == 1 else 'pages'} rendered{again})", file=self.log)
        return True

    def watched_paths(self) -> list[Path]:
        config = load_config(self.root)
        paths = [self.root]
        theme = config.theme_dir
        if not theme.is_relative_to(self.root):
            paths.append(theme)
        return paths

    def watch(self) -> None:
        """Rebuild after each burst of changes (watchfiles groups a burst into one set)."""
        watch_filter = SiteFilter(self.root)
        collect_at: float | None = None  # when to tidy up after the last rebuild
        for changes in watchfiles.watch(
            *self.watched_paths(),
            watch_filter=watch_filter,
            debounce=1600,
            step=WATCH_STEP_MS,
            stop_event=self.stop_event,
            raise_interrupt=False,
            rust_timeout=250,
            yield_on_timeout=True,
        ):
            self.watching.set()  # the first (empty) yield means the watcher is running
            if not changes:  # quiet for rust_timeout: tidy up if the last build is old enough
                if collect_at is not None and time.monotonic() >= collect_at:
                    collect_at = None
                    gc.unfreeze()
                    gc.collect()
                continue
            names = sorted({Path(p).name for _, p in changes})
            print(
                f"Changed: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}", file=self.log
            )
            self.rebuild()
            collect_at = time.monotonic() + COLLECT_AFTER_SECONDS


class SiteFilter(watchfiles.DefaultFilter):
    """Ignore build output, caches and editors' temporary files."""

    def __init__(self, root: Path) -> None:
        try:
            config = load_config(root)
            output = (root / config.output_dir).resolve()
            cache = (root / config.images.cache_dir).resolve()
        except BuildFailed:
            output, cache = root / "output", root / ".cache"
        super().__init__(ignore_paths=[output, root / ".cache", cache])

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        name = Path(path).name
        if name.startswith(".") and name != CONFIG_FILE:
            return False
        return bool(super().__call__(change, path))


class PreviewHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[PreviewHandler], dev: DevServer
    ) -> None:
        self.dev = dev
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that hangs up mid-response is normal; anything else is worth a line."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        print(f"broadsheet serve: error while answering {client_address[0]}: {error!r}",
              file=self.dev.log)


class PreviewHandler(http.server.BaseHTTPRequestHandler):
    """Serves the current build: clean URLs, 404 page, no caching, no path escapes."""

    server: PreviewHTTPServer
    protocol_version = "HTTP/1.1"
    generation = 0  # of the build the page being served belongs to

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal is for builds and diagnostics, not for every request

    def do_HEAD(self) -> None:
        self.respond(head=True)

    def do_GET(self) -> None:
        self.respond(head=False)

    def respond(self, head: bool) -> None:
        try:
            if not self.host_allowed():
                self.send_text(403, "Forbidden: unknown Host header", head)
                return
            path = urlsplit(self.path).path
            if path.startswith(PREFIX):
                self.serve_internal(path[len(PREFIX) :], head)
            else:
                self.serve_site(path, head)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the browser went away mid-response: nothing to do

    def host_allowed(self) -> bool:
        """Only our own names: a page on another domain cannot rebind DNS to this server."""
        host = (self.headers.get("Host") or "").strip().lower()
        dev = self.server.dev
        allowed = {
            f"localhost:{dev.port}",
            f"127.0.0.1:{dev.port}",
            f"[::1]:{dev.port}",
            f"{dev.host.lower()}:{dev.port}",
            f"[{dev.host.lower()}]:{dev.port}",
        }
        if dev.port == 80:
            allowed |= {"localhost", "127.0.0.1", "[::1]", dev.host.lower()}
        if host in allowed:
            return True
        return is_exposed(dev.host) and host.rsplit(":", 1)[0].strip("[]") == dev.host

    # -- the site -----------------------------------------------------------------------

    def serve_site(self, path: str, head: bool) -> None:
        dev = self.server.dev
        self.generation = dev.state.generation  # read first: a later build is then announced
        folder = dev.state.folder
        if folder is None:  # no good build yet: a page that shows why and reloads when fixed
            page = b"<!doctype html><title>Build failed</title><body></body>"
            page = inject(page, dev.state.problems, self.generation)
            self.send_bytes(503, "text/html; charset=utf-8", page, head)
            return
        if not path.startswith(dev.base_path):
            if path in ("/", dev.base_path.rstrip("/")):
                self.redirect(dev.base_path)
            else:
                self.send_not_found(folder, head)
            return
        target = resolve(folder, path[len(dev.base_path) :])
        if target is None:
            self.send_not_found(folder, head)
            return
        if target.is_dir():
            if not path.endswith("/"):
                query = urlsplit(self.path).query  # kept: /topics?x=1 goes to /topics/?x=1
                self.redirect(path + "/" + (f"?{query}" if query else ""))
                return
            target = target / "index.html"
            if not target.is_file():
                self.send_not_found(folder, head)
                return
        self.send_file(target, 200, head)

    def send_not_found(self, folder: Path, head: bool) -> None:
        page = folder / "404.html"
        if page.is_file():
            self.send_file(page, 404, head)
        else:
            self.send_text(404, "Not found", head)

    def send_file(self, path: Path, status: int, head: bool) -> None:
        data = path.read_bytes()
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind == "text/html":
            data = inject(data, self.server.dev.state.problems, self.generation)
        if kind.startswith("text/") or kind.endswith(("xml", "json", "javascript")):
            kind += "; charset=utf-8"
        self.send_bytes(status, kind, data, head)

    def redirect(self, location: str) -> None:
        self.send_response(301)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_text(self, status: int, text: str, head: bool) -> None:
        self.send_bytes(status, "text/plain; charset=utf-8", text.encode() + b"\n", head)

    def send_bytes(self, status: int, kind: str, data: bytes, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    # -- reload events ------------------------------------------------------------------

    def serve_internal(self, name: str, head: bool) -> None:
        if name == "live.js":
            self.send_bytes(200, "text/javascript; charset=utf-8", LIVE_SCRIPT, head)
        elif name == "events" and not head:
            self.stream_events()
        else:
            self.send_text(404, "Not found", head)

    def page_generation(self, current: int) -> int:
        """The generation the page was served at (`?g=`), so a build that finished between
        serving the page and this stream connecting is announced; `current` without one."""
        values = parse_qs(urlsplit(self.path).query).get("g", [])
        try:
            generation = int(values[0])
        except (IndexError, ValueError):
            return current
        return generation if 0 <= generation <= current else current

    def stream_events(self) -> None:
        """Server-Sent Events: one `reload` event after each finished build."""
        state = self.server.dev.state
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(b"retry: 500\n\n")
        self.wfile.flush()
        seen = self.page_generation(state.generation)
        while not self.server.dev.stop_event.is_set():
            now = state.wait_for_change(seen, KEEPALIVE_SECONDS)
            if self.server.dev.stop_event.is_set():
                return
            message = (
                b": keepalive\n\n" if now == seen else f"event: reload\ndata: {now}\n\n".encode()
            )
            seen = now
            self.wfile.write(message)
            self.wfile.flush()


def resolve(folder: Path, relative: str) -> Path | None:
    """The file for a URL path inside `folder`, or None for anything that could escape it."""
    decoded = unquote(relative)
    if "\\" in decoded or "\x00" in decoded or decoded.startswith("/"):
        return None
    parts = [p for p in decoded.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or posixpath.isabs(decoded):
        return None
    target = folder.joinpath(*parts)
    try:
        real = target.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real.is_relative_to(folder.resolve()) else None


def inject(page: bytes, problems: list[Diagnostic], generation: int = 0) -> bytes:
    """Add the reload script, and the diagnostics overlay when the latest build failed.

    The script carries the generation the page was served at (see `page_generation`)."""
    snippet = f'<script src="{PREFIX}live.js" data-generation="{generation}"></script>'
    if problems:
        snippet += overlay(problems)
    marker = page.rfind(b"</body>")
    if marker == -1:
        return page + snippet.encode()
    return page[:marker] + snippet.encode() + page[marker:]


def overlay(problems: list[Diagnostic]) -> str:
    items = "".join(f"<li>{html.escape(str(p))}</li>" for p in problems[:100])
    more = f"<p>… and {len(problems) - 100} more</p>" if len(problems) > 100 else ""
    return (
        '<div id="broadsheet-overlay" role="alert" style="position:fixed;inset:auto 0 0 0;'
        "max-height:60vh;overflow:auto;z-index:2147483647;background:#2b0b0b;color:#ffe9e9;"
        "font:14px/1.5 ui-monospace,Menlo,Consolas,monospace;padding:1rem 1.25rem;"
        'border-top:4px solid #ff6b6b"><strong style="font-size:15px">The last edit broke '
        'the build; this is the last good version.</strong><ul style="margin:.5rem 0 0;'
        f'padding-left:1.25rem">{items}</ul>{more}</div>'
    )


def is_exposed(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() != "localhost"


def _stop_on_terminate() -> None:
    """SIGTERM (`kill`, an editor's stop button, a container stopping) stops the server as
    Ctrl-C does: the preview's temporary folder removed, its build cache kept.

    Ctrl-C is taken even when the server was started with SIGINT ignored, which Python
    then keeps: a process that started it while ignoring SIGINT itself (a task runner, or
    a program inside C's system()) passes that on, and Ctrl-C did nothing at all."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # only the main thread may set it (not in tests)
        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def serve(args: Any) -> int:
    """The `serve` command: returns an exit code; Ctrl-C stops it cleanly with 0."""
    try:
        dev = DevServer(
            args.site, host=args.host, port=args.port, drafts=args.drafts, offline=args.offline
        )
    except OSError as exc:
        print(
            f"broadsheet serve: cannot listen on {args.host}:{args.port}: "
            f"{exc.strerror or exc}. Is another server running? Try --port 0 for a free "
            "port.",
            file=sys.stderr,
        )
        return 1
    print(dev.url, flush=True)
    if is_exposed(args.host):
        print(f"Warning: serving on {args.host}, reachable from other machines.", file=sys.stderr)
    _stop_on_terminate()
    try:
        dev.start()
        if args.open:
            webbrowser.open(dev.url)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nStopped.", file=sys.stderr)
    finally:
        dev.stop()
    return 0
