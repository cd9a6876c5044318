"""The preview's HTTP side: the current build with clean URLs, the reload stream, no escapes.

Only requests addressed to the server's own names are answered: a page on another domain
cannot rebind DNS to a preview on 127.0.0.1 and read it. A preview bound to every
interface also answers its machine's host name and IP addresses, which is how other
machines reach it.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import mimetypes
import posixpath
import socket
import socketserver
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .livereload import LIVE_SCRIPT, PREFIX, Shown, inject
from .search import SEARCH_FOLDER

if TYPE_CHECKING:
    from .serve import DevServer

KEEPALIVE_SECONDS = 15.0
# A connection that sends nothing for this long is closed: a client that connected and sent
# nothing, or half a request, held its thread until the server stopped, and so does a
# browser's kept-alive connection (browsers open a new one when it is gone). The event
# stream only writes, so its silence between builds is not cut by this.
REQUEST_TIMEOUT_SECONDS = 30.0
mimetypes.add_type("application/json", ".json")
mimetypes.add_type("application/xml", ".xml")
mimetypes.add_type("application/atom+xml", ".atom")
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("image/svg+xml", ".svg")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/x-opml", ".opml")
mimetypes.add_type("application/wasm", ".wasm")


class PreviewHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[PreviewHandler], dev: DevServer
    ) -> None:
        self.dev = dev
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._closed = False
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """HTTPServer's, without its socket.getfqdn(): a DNS lookup of this machine's name
        for `server_name`, which nothing here uses; a slow one held up start-up."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            if self._closed:  # accepted just as the server closed: not answered
                request.close()
                return
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Also end the connections still open. HTTP/1.1 keeps one open after a response,
        and its thread waits for the next request: those threads outlived the server,
        answering browsers from a preview whose files were gone. Shutting the socket down
        wakes such a thread (it reads the end of the stream) and fails a response under
        way, which the handler takes as the browser going away."""
        super().server_close()
        with self._connections_lock:  # held: a socket in the set is not closed yet
            self._closed = True
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

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
    timeout = REQUEST_TIMEOUT_SECONDS  # socketserver sets it on each connection

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
            url = urlsplit(self.path)
            if url.path.startswith(PREFIX):
                self.serve_internal(url.path[len(PREFIX) :], url.query, head)
            else:
                self.serve_site(url.path, url.query, head)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the browser went away mid-response: nothing to do

    def host_allowed(self) -> bool:
        """Only our own names: a page on another domain cannot rebind DNS to this server."""
        name, port = host_and_port(self.headers.get("Host") or "")
        dev = self.server.dev
        if dev.wildcard:
            return self.addressed_to_this_machine(name)
        own = dev.host.lower().strip("[]").removesuffix(".")  # --host as typed: Box.Example.
        on_our_port = port == str(dev.port) or (port is None and dev.port == 80)
        if on_our_port and name in {"localhost", "127.0.0.1", "::1", own}:
            return True
        return is_exposed(dev.host) and name == own  # another machine's port may be mapped

    def addressed_to_this_machine(self, name: str) -> bool:
        """For a server bound to every interface: an IP address (DNS rebinding needs a
        name, and the port may be mapped, as by a container) or this machine's own name."""
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in self.server.dev.own_names

    # -- the site -----------------------------------------------------------------------

    def serve_site(self, path: str, query: str, head: bool) -> None:
        dev = self.server.dev
        shown = dev.state.shown()  # before any file is read: a page is never newer
        if shown.folder is None:  # no good build yet: a page that shows why and reloads
            page = b"<!doctype html><title>Build failed</title><body></body>"
            self.send_bytes(503, "text/html; charset=utf-8", inject(page, shown), head)
            return
        if not path.startswith(dev.base_path):
            if path in ("/", dev.base_path.rstrip("/")):
                self.redirect(dev.base_path, query)
            else:
                self.send_not_found(shown, head)
            return
        relative = path[len(dev.base_path) :]
        target = self.find(shown.folder, relative)
        if target is None:
            self.send_not_found(shown, head)
            return
        if target.is_dir():
            if not path.endswith("/"):
                self.redirect(path + "/", query)  # kept: /topics?x=1 goes to /topics/?x=1
                return
            # Through resolve() as well: an index.html linking out of the build was served.
            target = self.find(shown.folder, posixpath.join(relative, "index.html"))
            if target is None or not target.is_file():
                self.send_not_found(shown, head)
                return
        elif path.endswith("/"):  # a file as a folder (/stories/a/index.html/): a static host
            self.send_not_found(shown, head)  # answers 404, and its relative links would break
            return
        self.send_file(target, 200, shown, head)

    def find(self, folder: Path, relative: str) -> Path | None:
        """The file for a URL path: in the build, or for the search index in the preview's
        own index folders (made after the build, see search.BackgroundIndex)."""
        if relative.startswith(SEARCH_FOLDER + "/"):
            for index in self.server.dev.search.folders():
                found = resolve(index, relative[len(SEARCH_FOLDER) + 1 :])
                if found is not None:
                    return found
        return resolve(folder, relative)

    def send_not_found(self, shown: Shown, head: bool) -> None:
        assert shown.folder is not None
        page = resolve(shown.folder, "404.html")  # never a link out of the build
        if page is not None and page.is_file():
            self.send_file(page, 404, shown, head)
        else:
            self.send_text(404, "Not found", head)

    def send_file(self, path: Path, status: int, shown: Shown, head: bool) -> None:
        try:
            data = path.read_bytes()
        except OSError:  # removed since it was found (a rebuild, the search index moving)
            self.send_text(404, "Not found", head)
            return
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind == "text/html":
            data = inject(data, shown)
        if kind.startswith("text/") or kind.endswith(("xml", "json", "javascript")):
            kind += "; charset=utf-8"
        self.send_bytes(status, kind, data, head)

    def redirect(self, location: str, query: str = "") -> None:
        """A 301 no browser keeps: one kept without caching headers outlived the preview
        (another site previewed on the same port was still sent to this one's base path)."""
        self.send_response(301)
        self.send_header("Location", f"{location}?{query}" if query else location)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
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

    def serve_internal(self, name: str, query: str, head: bool) -> None:
        if name == "live.js":
            self.send_bytes(200, "text/javascript; charset=utf-8", LIVE_SCRIPT, head)
        elif name == "build":
            token = self.server.dev.state.shown().token.encode()
            self.send_bytes(200, "text/plain; charset=utf-8", token, head)
        elif name == "events" and not head:
            since = parse_qs(query).get("since", [""])[0]
            self.stream_events(since)
        else:
            self.send_text(404, "Not found", head)

    def stream_events(self, since: str) -> None:
        """Server-Sent Events: a `reload` event (its data the new build's token) whenever
        the build is not `since`, the one the page was served from: at once when a build
        finished while the page loaded. Without `since`, from the next build on."""
        dev = self.server.dev
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(b"retry: 500\n\n")
        self.wfile.flush()
        seen = since or dev.state.shown().token
        with dev.streams.opened():
            while True:
                now = dev.state.wait_for_change(seen, KEEPALIVE_SECONDS)
                if now is None:  # the server is stopping
                    return
                message = ": keepalive" if now == seen else f"event: reload\ndata: {now}"
                seen = now
                self.wfile.write(f"{message}\n\n".encode())
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


def host_and_port(header: str) -> tuple[str, str | None]:
    """The name and port of a Host header (or of --host), the name as it is compared: lower
    case (names are case-insensitive), an IPv6 address without its brackets, and without
    the dot that ends a fully-qualified name (`localhost.:8000` is `localhost`; without
    this only a server on every interface answered it)."""
    host = header.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        if rest and not rest.startswith(":"):
            return "", None  # not a host: matches none of ours
        port = rest[1:] if rest else None
    else:
        name, colon, port_text = host.rpartition(":")
        name, port = (name, port_text) if colon else (host, None)
    return name.removesuffix("."), port


def is_exposed(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() != "localhost"


def is_wildcard(host: str) -> bool:
    """Whether binding `host` listens on every interface ('', 0.0.0.0, ::)."""
    try:
        return host == "" or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
