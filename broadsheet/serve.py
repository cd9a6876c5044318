"""The dev server: build, serve, watch, rebuild, and tell open browsers to reload.

The first build goes into a fresh folder, served once it is complete; later builds render
their changed files into a pending folder and move them into place only once all of them
rendered (each file replaced at once by a rename), so a page is never served half-written
and a failed build changes nothing. A failed build keeps the last good one on screen with an
overlay of the diagnostics. The reload script and the overlay are added to
pages as they are served (livereload.py, previewhttp.py); nothing of the dev server is ever
written into a build. Stopping it, however often it is asked to, removes its files.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import webbrowser
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import watchfiles

from .config import CONFIG_FILE, load_config
from .diagnostics import BuildFailed
from .livereload import BuildState, StreamCount
from .pipeline import BuildOptions, BuildReport, CacheVanished, build, build_cache, configure
from .previewhttp import PreviewHandler, PreviewHTTPServer, is_exposed, is_wildcard
from .search import BackgroundIndex

# watchfiles yields a burst of changes once the files have been quiet this long: an editor's
# save (a temporary file renamed over the story) takes a few milliseconds, and every
# millisecond waited here is one more between the save and the browser's reload.
WATCH_STEP_MS = 15
# A rebuild runs with the garbage collector paused and leaves its objects frozen (see
# pipeline.collector_paused). Collecting them walks the whole site model, 0.15 s at 1,000
# stories with the interpreter lock held: done right after a rebuild, it delayed the
# browser's reload and any save that came meanwhile. So it waits for this much quiet.
COLLECT_AFTER_SECONDS = 1.0
# Stopping waits for a rebuild to end (it stops at its next page or story); after this
# long, the terminal says so, since only then is the wait noticeable.
SAY_WAITING_AFTER_SECONDS = 1.0


class Stopping(Exception):
    """Raised inside a rebuild when the server is stopping: the rebuild ends there, its
    pending files removed as for any failed build, and the preview folder is left whole."""


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
        self.wildcard = is_wildcard(host)
        # The full name is added by start(), without waiting for it (see add_full_name).
        self.own_names = machine_names(socket.gethostname()) if self.wildcard else frozenset()
        self.drafts = drafts
        self.offline = offline
        self.log = log or sys.stderr
        self.state = BuildState()
        self.streams = StreamCount()
        self.builds = 0
        self.shown_warnings: set[str] = set()  # the last good build's, printed already
        self.stop_event = threading.Event()
        self.watching = threading.Event()
        self.base_path = urlsplit(load_config(self.root).base_url).path or "/"
        # Named here, made by start(): serve() runs that where a Ctrl-C always reaches
        # stop(), which removes the folder by this name even if the Ctrl-C came before
        # its own code knew the folder was made. Made here, a Ctrl-C just after left it.
        self.workspace = Path(tempfile.gettempdir()) / f"broadsheet-serve-{secrets.token_hex(8)}"
        self.search = BackgroundIndex(self.workspace / "site", self.workspace, self.log)
        self._threads: list[threading.Thread] = []
        # Bound last, once nothing else here can fail: no listening socket is left open.
        self.httpd = PreviewHTTPServer((host, port), PreviewHandler, self)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """The URL to open on this machine (for a server on every interface, loopback's)."""
        return f"http://{url_host(local_address(self.host))}:{self.port}{self.base_path}"

    @property
    def network_url(self) -> str | None:
        """For a server on every interface, the URL other machines use: the host name."""
        if not self.wildcard:
            return None
        return f"http://{socket.gethostname().lower()}:{self.port}{self.base_path}"

    def start(self) -> None:
        self.workspace.mkdir(mode=0o700)  # as mkdtemp makes it: new, and the user's only
        if self.wildcard:  # not among the threads stop() waits for: it may never answer
            threading.Thread(target=self.add_full_name, daemon=True).start()
        self.search.start()
        self.rebuild()
        for target in (self.httpd.serve_forever, self.watch):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.watching.wait(timeout=10)  # edits made from now on are seen

    def add_full_name(self) -> None:
        """Answer to this machine's fully qualified name as well, once it is known. Looked
        up in the background: socket.getfqdn() asks DNS, which took many seconds on a slow
        network, all of them before the server printed its URL or answered anything."""
        self.own_names = self.own_names | machine_names(socket.getfqdn())

    def stop(self) -> None:
        """Stop serving and watching, remove the preview's files, keep the cache.

        A rebuild under way is told to stop and waited for: deleting its folder under it
        failed it with a traceback and could leave its pending files behind. The files go
        before the cache is saved (a second or more on a large site), so that a process
        killed meanwhile leaves nothing in the temporary folder. Safe on a server that was
        never started (`shutdown` would wait forever for a `serve_forever` that never ran)."""
        self.stop_event.set()
        if self._threads:
            self.httpd.shutdown()
        self.httpd.server_close()
        self.state.close()
        self.wait_for_threads()
        self.search.stop()
        shutil.rmtree(self.workspace, ignore_errors=True)
        self.save_cache()

    def wait_for_threads(self) -> None:
        deadline = time.monotonic() + SAY_WAITING_AFTER_SECONDS
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                print("Waiting for the rebuild to finish...", file=self.log, flush=True)
                thread.join()

    def save_cache(self) -> None:
        """Keep the preview's build cache for the next session (never fatal)."""
        options = self.build_options(self.workspace / "site")
        with contextlib.suppress(BuildFailed):  # a broken site.yaml: start afresh next time
            build_cache(configure(load_config(self.root), options), options).flush()

    # -- building ---------------------------------------------------------------------

    def build_options(self, folder: Path) -> BuildOptions:
        """The preview's build: its own cache, kept in memory between rebuilds (written to
        .cache/serve/ when the server stops), in one process (forking while the server's
        threads hold locks is not safe), and the search index made after the reload."""
        return BuildOptions(
            drafts=self.drafts, output_dir=folder, base_url=self.network_url or self.url,
            offline=self.offline, cache_name="serve", workers=1, persist_cache=False,
            search_index=False,
        )

    def rebuild(self) -> bool:
        """Rebuild the preview folder; its files change only once a build has succeeded."""
        self.builds += 1
        options = self.build_options(self.workspace / "site")
        try:
            report = self.build_site(options)
        except Stopping:
            return False
        except BuildFailed as failure:
            self.show_failure(failure)
            return False
        self.show_success(report, options.output_dir)
        return True

    def build_site(self, options: BuildOptions) -> BuildReport:
        """Build; when the saved cache it started from went away, again without it.

        The preview reads blobs of the cache saved by its last session lazily, long after
        starting: another preview of the same site stopping (which saves its own cache) or
        `rm -rf .cache` removes them. That is no error in the site: build from scratch."""
        try:
            return build(self.root, options, self.check_stop)
        except CacheVanished:
            pass  # retried below, outside the handler: a failed retry is not chained to it
        print("note: the saved build cache went away (another preview of this site, or a "
              "cleanup); building without it", file=self.log)
        return build(self.root, replace(options, use_cache=False), self.check_stop)

    def check_stop(self, stage: str, done: int, total: int) -> None:
        """The build's progress callback: a rebuild stops at its next step once asked to."""
        if self.stop_event.is_set():
            raise Stopping

    def show_failure(self, failure: BuildFailed) -> None:
        for diagnostic in failure.diagnostics:
            print(diagnostic, file=self.log)
        if self.state.folder is None:
            print(f"Build failed: no page to show yet; {self.url} lists the errors and "
                  "reloads once they are fixed", file=self.log)
        else:
            print(f"Build failed: still showing the last good build at {self.url}",
                  file=self.log)
        self.state.publish(None, [d for d in failure.diagnostics if d.is_error])

    def show_success(self, report: BuildReport, folder: Path | None) -> None:
        """Announce the build, then print it (each warning once: the same ones after every
        save would bury what the save changed), then have the search index follow."""
        self.state.publish(folder, [])
        warnings = [str(warning) for warning in report.warnings]
        for warning in warnings:
            if warning not in self.shown_warnings:
                print(warning, file=self.log)
        repeated = sum(1 for warning in warnings if warning in self.shown_warnings)
        self.shown_warnings = set(warnings)
        for note in report.notes:
            print(f"note: {note}", file=self.log)
        count = report.counts.stories
        noun = "story" if count == 1 else "stories"
        pages = len(report.rebuilt)
        again = f"; {repeated} {'warning' if repeated == 1 else 'warnings'} as before" \
            if repeated else ""
        print(f"Built {count} {noun} in {report.seconds:.2f} s "
              f"({pages} {'page' if pages == 1 else 'pages'} rendered{again})", file=self.log)
        self.follow_with_search(report)

    def follow_with_search(self, report: BuildReport) -> None:
        """Index again only when pages changed (or there is no index yet)."""
        if not report.config.search:
            self.search.clear()
        elif report.rebuilt or report.removed or not self.search.folders():
            self.search.request()

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
            if self.stop_event.is_set():
                return
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


def local_address(host: str) -> str:
    """The address to reach a server bound to `host` from this machine."""
    if is_wildcard(host):
        return "::1" if ":" in host else "127.0.0.1"
    return host


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def machine_names(*given: str) -> frozenset[str]:
    """This machine's names that requests from other machines are addressed to: `given`
    (its host name, its full name), the first label of each, and that under .local."""
    names = {"localhost"}
    for name in given:
        name = name.lower().rstrip(".")
        if name:
            short = name.split(".")[0]
            names |= {name, short, f"{short}.local"}
    return frozenset(names)


def _stop_on_signals() -> None:
    """SIGTERM (`kill`, an editor's stop button, a container stopping) stops the server as
    Ctrl-C does: the preview's temporary folder removed, its build cache kept.

    Only the first signal stops it; later ones are ignored while it cleans up. People press
    Ctrl-C again when stopping takes a moment, and `timeout` and supervisors that signal
    the whole process group send two SIGTERMs: the second one aborted the cleanup, leaving
    the whole preview in the temporary folder and exiting 130.

    Ctrl-C is taken even when the server was started with SIGINT ignored, which Python
    then keeps: a process that started it while ignoring SIGINT itself (a task runner, or
    a program inside C's system()) passes that on, and Ctrl-C did nothing at all."""

    def stop(signum: int, frame: object) -> None:
        _ignore_signals()
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # only the main thread may set it (not in tests)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def _ignore_signals() -> None:
    """From now on the server is stopping: SIGINT and SIGTERM do nothing. (A handler that
    does nothing rather than SIG_IGN, which programs started from here would inherit.)"""

    def already_stopping(signum: int, frame: object) -> None:
        pass

    with contextlib.suppress(ValueError):
        for each in (signal.SIGINT, signal.SIGTERM):
            signal.signal(each, already_stopping)


def cannot_listen(host: str, port: int, exc: OSError) -> str:
    """Why the server cannot start, with a hint only where one is known to apply."""
    hints = {
        errno.EADDRINUSE: " Is another server running? Try --port 0 for a free port.",
        errno.EADDRNOTAVAIL: f" {host} is not an address of this machine.",
        errno.EACCES: " Ports below 1024 need administrator rights: try another --port.",
    }
    hint = "" if isinstance(exc, socket.gaierror) else hints.get(exc.errno or 0, "")
    return f"broadsheet serve: cannot listen on {host}:{port}: {exc.strerror or exc}.{hint}"


def serve(args: Any) -> int:
    """The `serve` command: returns an exit code; Ctrl-C stops it cleanly with 0."""
    _stop_on_signals()
    try:
        dev = DevServer(
            args.site, host=args.host, port=args.port, drafts=args.drafts, offline=args.offline
        )
    except OSError as exc:
        print(cannot_listen(args.host, args.port, exc), file=sys.stderr)
        return 1
    try:
        print(dev.url, flush=True)
        if dev.network_url:
            print(f"Warning: serving on every interface ({args.host or 'all IPv4'}), reachable "
                  f"from other machines at {dev.network_url}", file=sys.stderr)
        elif is_exposed(args.host):
            print(f"Warning: serving on {args.host}, reachable from other machines.",
                  file=sys.stderr)
        dev.start()
        if args.open:
            webbrowser.open(dev.url)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nStopped.", file=sys.stderr)
    finally:
        _ignore_signals()
        dev.stop()
    return 0
