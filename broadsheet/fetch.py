"""Download a remote image or feed safely: its URL comes from untrusted content.

Only http and https. Every address the host name resolves to must be public (not loopback,
private, link-local, multicast or reserved) unless the site allows private hosts, and the
connection goes to the address that was checked, so a second DNS answer cannot point it
elsewhere (SSRF, DNS rebinding). At most `max_redirects` redirects, each checked the same
way; connect and read timeouts and an overall deadline; a size cap; only the expected content
types (images, or feeds for `broadsheet import`), never compressed bodies.
The standard library's http.client is used directly so that every one of these rules is
visible here. Name lookups wait no longer than connecting may: a resolver that never
answers cannot hold a build.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import quote, urljoin, urlsplit

from . import __version__

MAX_REDIRECTS = 3
DEADLINE_FACTOR = 3  # the whole download may take this many read timeouts
CHUNK = 64 * 1024
REDIRECTS = {301, 302, 303, 307, 308}
USER_AGENT = f"Broadsheet/{__version__} (static site generator for news digests)"
# Connection errors that say the host cannot be reached at all (not this URL's fault).
UNREACHABLE = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH,
                         errno.ENETDOWN, errno.EHOSTDOWN})
ACCEPT = "image/webp,image/jpeg,image/png,image/gif,image/*;q=0.8"


T = TypeVar("T")


class FetchFailed(Exception):
    """Why an image could not be downloaded, in words for the warning."""


class Unanswered(FetchFailed):
    """The host took the connection or the request but did not answer in time."""


class HostUnreachable(FetchFailed):
    """No URL of `host` can be had now: its name does not resolve, nothing at its address
    takes a connection, or it resolves to an address the rules refuse (as behind a captive
    portal, which answers every name with its own private address). Offline, every host of
    a site fails this way: the image stage then stops asking the host and remembers it for
    the day, not URL by URL."""

    def __init__(self, message: str, host: str) -> None:
        super().__init__(message)
        self.host = host


class Watchdog:
    """Ends a download at its deadline by shutting its socket down.

    Socket timeouts bound each read, not the whole: a server that trickles a byte a second
    (status line, headers or body) never trips them, and a buffered read waits for a full
    chunk. A timer that shuts the socket down makes every blocked read return at once,
    wherever the download is; `expired` then tells the callers why their read ended."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Joined, not only cancelled: a timer thread still alive would make the image
        # stage start its workers from a fork server (images.worker_context).
        self._timer.cancel()
        self._timer.join()

    def left(self) -> float:
        """Seconds before the deadline (a tiny positive number once it has passed, so that
        a socket timeout set from it stays valid and the next read fails at once)."""
        return max(self.deadline - time.monotonic(), 0.001)

    def attach(self, sock: socket.socket) -> None:
        """Watch `sock` (the connection's current socket); shut it now if time is up."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def release(self) -> None:
        """Stop watching the socket, before it is closed: once closed, its descriptor may
        be another download's, which a late shutdown would cut."""
        with self._lock:
            self._sock = None

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)

    def check(self) -> None:
        """Raise the truthful reason if the deadline cut the download."""
        if self.expired or time.monotonic() > self.deadline:
            raise Unanswered(f"too slow (not finished within {self.seconds:g} s)")


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for an SSLSocket: the TLS layer is not thread-safe,
    # the file descriptor is.
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Query:
    """One host's DNS lookup, in a thread of its own.

    getaddrinfo has no timeout and cannot be interrupted: a resolver that never answers
    would hold the download, and with it the build, past every deadline. Each download
    waits for the answer only as long as it may; the lookup goes on in its daemon thread
    (one per host, however many images wait), and a later download takes its answer."""

    def __init__(self, host: str, port: int) -> None:
        self.answer: list[str] | str = f"cannot resolve {host}"  # if the lookup itself broke
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if is_ip_literal(host):  # nothing to ask a name server: no thread
            self._finish(host, port)
        else:
            self._thread = threading.Thread(target=self._finish, args=(host, port),
                                            name=f"DNS lookup of {host}", daemon=True)
            self._thread.start()

    def _finish(self, host: str, port: int) -> None:
        try:
            self.answer = _look_up(host, port)
        finally:  # whatever happens, nobody waits for an answer that cannot come
            self._done.set()

    def wait(self, seconds: float) -> list[str] | str | None:
        """The answer, or None if it did not come within `seconds`."""
        if not self._done.wait(seconds):
            return None
        if self._thread is not None:
            # About to end: joined so that no thread is left running when the image stage
            # chooses how to start its workers (images.worker_context).
            self._thread.join()
        return self.answer


NO_NETWORK_AFTER = 8  # names that failed to resolve, and none that did: the network is down
NO_NETWORK = (f"no host name could be resolved (the first {NO_NETWORK_AFTER} tried all "
              "failed: the network seems to be down)")


class Lookups:
    """The DNS queries of one FetchRules, by host and port, shared by its downloads; and
    whether any name resolved at all (network_down)."""

    def __init__(self) -> None:
        self._queries: dict[tuple[str, int], Query] = {}
        self._lock = threading.Lock()  # parallel downloads of one host start one query
        self._failed: set[str] = set()  # names whose lookup failed or was not answered
        self._resolved = False

    def outcome(self, host: str, resolved: bool) -> None:
        with self._lock:
            if resolved:
                self._resolved = True
            else:
                self._failed.add(host)

    def network_down(self) -> bool:
        """Whether NO_NETWORK_AFTER names failed to resolve and none resolved: offline (or
        behind a resolver that answers nothing), where asking for each of a site's hosts in
        turn only waits for the resolver to give up on each of them."""
        with self._lock:
            return not self._resolved and len(self._failed) >= NO_NETWORK_AFTER

    def query(self, host: str, port: int) -> Query:
        with self._lock:
            found = self._queries.get((host, port))
            if found is None:
                found = self._queries[(host, port)] = Query(host, port)
            return found


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class FetchRules:
    timeout: float = 10.0  # seconds, for connecting and for each read
    max_bytes: int = 20_000_000
    allow_private_hosts: bool = False
    max_redirects: int = MAX_REDIRECTS
    private_setting: str = "images.allow_private_hosts"  # named in the refusal message
    # Each host's DNS answer (or why there is none), looked up once for all the downloads
    # made with these rules (one build's, one import's): a site shows hundreds of images
    # from one CDN, and resolvers that answer parallel queries slowly (a 5 s stall now and
    # then was seen) or not at all made every image pay the lookup again.
    lookups: Lookups = field(default_factory=Lookups, compare=False, repr=False)


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str
    url: str  # after redirects
    # A host on the way (the URL's or a redirect's) had a private, loopback or link-local
    # address: rules without allow_private_hosts would have refused the download, and a
    # cached copy must not outlive that setting.
    private: bool = False


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks, with the address to connect to."""

    scheme: str
    host: str  # IDNA-encoded
    port: int
    address: str
    path: str  # path and query, percent-encoded
    private: bool = False  # one of the host's addresses is not public (allowed by the rules)


@dataclass(frozen=True)
class Visit:
    """Where a final response came from: its URL, after redirects, and whether any host on
    the way was private (Fetched.private)."""

    url: str
    private: bool = False


def fetch_image(url: str, rules: FetchRules) -> Fetched:
    """The image at `url`, or FetchFailed with the reason."""

    def take(response: http.client.HTTPResponse, visit: Visit, watchdog: Watchdog) -> Fetched:
        if response.status != 200:
            raise FetchFailed(f"HTTP {response.status} {response.reason}".strip())
        content_type = image_content_type(response)
        return Fetched(read_body(response, rules, watchdog), content_type, visit.url,
                       visit.private)

    return _fetch(url, rules, {"Accept": ACCEPT}, take)


@dataclass(frozen=True)
class Document:
    """A fetched feed or page; `not_modified` when the server answered 304 to our validators."""

    data: bytes
    content_type: str
    url: str
    not_modified: bool = False
    validators: dict[str, str] = field(default_factory=dict)  # etag, last_modified


def fetch_document(url: str, rules: FetchRules, *, accept: str, content_types: tuple[str, ...],
                   validators: dict[str, str] | None = None) -> Document:
    """A document of one of `content_types`, with a conditional GET when `validators` (the
    ETag and Last-Modified of the last download) are given."""
    headers = {"Accept": accept}
    if validators and validators.get("etag"):
        headers["If-None-Match"] = validators["etag"]
    if validators and validators.get("last_modified"):
        headers["If-Modified-Since"] = validators["last_modified"]

    def take(response: http.client.HTTPResponse, visit: Visit, watchdog: Watchdog) -> Document:
        if response.status == 304 and validators:
            return Document(b"", "", visit.url, not_modified=True, validators=dict(validators))
        if response.status != 200:
            raise FetchFailed(f"HTTP {response.status} {response.reason}".strip())
        media = identity_content_type(response)
        if media not in content_types:
            raise FetchFailed(f"not a feed (Content-Type {media or 'missing'})")
        found = {"etag": response.getheader("ETag") or "",
                 "last_modified": response.getheader("Last-Modified") or ""}
        return Document(read_body(response, rules, watchdog), media, visit.url,
                        validators={k: v for k, v in found.items() if v})

    return _fetch(url, rules, headers, take)


def _fetch(url: str, rules: FetchRules, headers: dict[str, str],
           take: Callable[[http.client.HTTPResponse, Visit, Watchdog], T]) -> T:
    """GET `url` following checked redirects; `take` turns the final response into a value.
    The whole of it, redirects, status lines and headers included, ends by the deadline."""
    with Watchdog(rules.timeout * DEADLINE_FACTOR) as watchdog:
        try:
            return _follow(url, rules, headers, take, watchdog)
        except Unanswered:
            raise
        except FetchFailed:
            watchdog.check()  # a read the deadline cut short is "too slow", not "cut short"
            raise


def _follow(url: str, rules: FetchRules, headers: dict[str, str],
            take: Callable[[http.client.HTTPResponse, Visit, Watchdog], T], watchdog: Watchdog
            ) -> T:
    current, private = url, False
    for _ in range(rules.max_redirects + 1):
        target = check_target(current, rules, watchdog)
        private = private or target.private
        connection = connect(target, rules, watchdog)
        try:
            response = send(connection, target, headers)
            if response.status in REDIRECTS:
                current = redirect_location(current, response)
                continue
            return take(response, Visit(current, private), watchdog)
        except TimeoutError:
            watchdog.check()
            raise Unanswered(f"timed out (no answer within {rules.timeout:g} s)") from None
        except ssl.SSLError as exc:
            watchdog.check()
            raise FetchFailed(f"TLS error ({exc.reason or exc})") from None
        except http.client.HTTPException as exc:
            watchdog.check()
            raise FetchFailed(f"bad HTTP response ({type(exc).__name__})") from None
        except OSError as exc:
            watchdog.check()
            raise FetchFailed(f"network error ({exc.strerror or exc})") from None
        finally:
            watchdog.release()
            connection.close()
    raise FetchFailed(f"more than {rules.max_redirects} redirects")


def check_target(url: str, rules: FetchRules, watchdog: Watchdog | None = None) -> Target:
    """Refuse anything but http(s) to a public address; resolve the host once (waiting for
    the name server no longer than a connection and the download's deadline allow)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchFailed("malformed URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchFailed(f"{scheme or 'a relative'} URL refused (only http and https)")
    if parts.username is not None or parts.password is not None:
        raise FetchFailed("URLs with a user name or password are not fetched")
    if not parts.hostname:
        raise FetchFailed("the URL has no host")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchFailed(f"invalid host name {parts.hostname!r}") from None
    port = port or (443 if scheme == "https" else 80)
    addresses = resolve(host, port, rules, watchdog)
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    private = not all(map(is_public, addresses))  # only if the rules allow private hosts
    return Target(scheme, host, port, addresses[0], path, private)


def resolve(host: str, port: int, rules: FetchRules, watchdog: Watchdog | None = None
            ) -> list[str]:
    """The host's addresses (the first is the one to connect to), once every one of them
    passed the checks."""
    limit = min(rules.timeout, watchdog.left()) if watchdog else rules.timeout
    found = rules.lookups.query(host, port).wait(limit)
    if not is_ip_literal(host):
        rules.lookups.outcome(host, isinstance(found, list))
    if found is None:
        if watchdog:
            watchdog.check()  # the download's deadline, not the lookup's, ran out
        raise Unanswered(f"cannot resolve {host} (the name server did not answer within "
                         f"{rules.timeout:g} s)")
    if isinstance(found, str):
        raise HostUnreachable(found, host)
    addresses = found
    if not rules.allow_private_hosts:
        for address in addresses:
            if not is_public(address):
                raise HostUnreachable(
                    f"{host} is a private, loopback or link-local address ({address}); "
                    f"refused ({rules.private_setting}: true allows it)", host
                )
    return addresses


def _look_up(host: str, port: int) -> list[str] | str:
    """The host's addresses, or why it has none (a message)."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        return f"cannot resolve {host} ({getattr(exc, 'strerror', None) or exc})"
    addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
    return addresses or f"cannot resolve {host}"


def is_public(address: str) -> bool:
    """Whether an address is on the public internet (also for IPv6 forms of IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public(str(embedded)):
            return False
    return ip.is_global and not ip.is_multicast


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address, whatever the host name resolves to now; the socket
    is watched by the download's watchdog."""

    def __init__(self, target: Target, timeout: float, watchdog: Watchdog) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = target.address
        self.watchdog = watchdog

    def connect(self) -> None:
        self.sock = _open_socket(self.host, self.address, self.port, self.timeout, self.watchdog)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Like PinnedHTTPConnection, with the certificate checked against the host name."""

    def __init__(self, target: Target, timeout: float, watchdog: Watchdog) -> None:
        super().__init__(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
        self.address = target.address
        self.watchdog = watchdog

    def connect(self) -> None:
        sock = _open_socket(self.host, self.address, self.port, self.timeout, self.watchdog)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
        self.watchdog.attach(self.sock)


def _open_socket(host: str, address: str, port: int, timeout: float | None,
                 watchdog: Watchdog) -> socket.socket:
    """A connected socket; connecting too ends by the deadline."""
    limit = min(timeout or watchdog.left(), watchdog.left())
    try:
        sock = socket.create_connection((address, port), limit)
    except OSError as exc:
        if exc.errno in UNREACHABLE:
            raise HostUnreachable(f"cannot connect to {host} ({exc.strerror or exc})",
                                  host) from None
        raise
    sock.settimeout(timeout)
    watchdog.attach(sock)
    return sock


def connect(target: Target, rules: FetchRules, watchdog: Watchdog) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return PinnedHTTPSConnection(target, rules.timeout, watchdog)
    return PinnedHTTPConnection(target, rules.timeout, watchdog)


def send(connection: http.client.HTTPConnection, target: Target, headers: dict[str, str]
         ) -> http.client.HTTPResponse:
    connection.request("GET", target.path,
                       headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                                **headers})
    return connection.getresponse()


def redirect_location(current: str, response: http.client.HTTPResponse) -> str:
    location = response.getheader("Location")
    if not location:
        raise FetchFailed(f"HTTP {response.status} redirect without a Location")
    try:
        return urljoin(current, location.strip())
    except ValueError:  # "http://[::1": urljoin splits it, and refuses an unclosed bracket
        raise FetchFailed(f"HTTP {response.status} redirect to a malformed URL") from None


def image_content_type(response: http.client.HTTPResponse) -> str:
    media = identity_content_type(response)
    if media == "image/svg+xml":
        raise FetchFailed("SVG images are not supported (Content-Type image/svg+xml)")
    if not media.startswith("image/"):
        raise FetchFailed(f"not an image (Content-Type {media or 'missing'})")
    return media


def identity_content_type(response: http.client.HTTPResponse) -> str:
    """The media type, refusing compressed bodies (we asked for identity: no zip bombs)."""
    encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise FetchFailed(f"compressed response (Content-Encoding {encoding}) refused")
    return (response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()


def read_body(response: http.client.HTTPResponse, rules: FetchRules, watchdog: Watchdog
              ) -> bytes:
    """The body, within the size cap; the watchdog ends it at the deadline."""
    declared = response.getheader("Content-Length", "").strip()
    expected = int(declared) if declared.isdigit() else None
    if expected is not None and expected > rules.max_bytes:
        raise FetchFailed(f"too large ({expected:,} bytes; the limit is {rules.max_bytes:,})")
    chunks: list[bytes] = []
    received = 0
    while True:
        watchdog.check()
        chunk = response.read1(CHUNK)  # what has come, not a full chunk
        if not chunk:
            break
        received += len(chunk)
        if received > rules.max_bytes:
            raise FetchFailed(f"too large (over the {rules.max_bytes:,}-byte limit)")
        chunks.append(chunk)
    watchdog.check()  # an end the watchdog made is not the end of the body
    if expected is not None and received < expected:
        raise FetchFailed(f"the download was cut short ({received:,} of {expected:,} bytes)")
    return b"".join(chunks)
