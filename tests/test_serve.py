"""The dev server: serves the last good build, rebuilds on edits, reloads browsers, stays safe."""

from __future__ import annotations

import argparse
import errno
import http.client
import io
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from broadsheet import previewhttp
from broadsheet.buildcache import CACHE_FILE
from broadsheet.livereload import BuildState
from broadsheet.previewhttp import PreviewHandler
from broadsheet.serve import DevServer, serve

from .conftest import REPO, SITE_YAML, MiniSite, story, wait_until


@pytest.fixture
def running(make_site) -> Iterator[tuple[MiniSite, DevServer]]:
    site = make_site({"content/a.md": story(title="First title", extra="topics: [AI]")})
    dev = DevServer(site.root, port=0, log=io.StringIO())
    dev.start()
    yield site, dev
    dev.stop()


def get(
    dev: DevServer, path: str, host: str | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", dev.port, timeout=10)
    connection.putrequest(method, path, skip_host=True)
    connection.putheader("Host", f"127.0.0.1:{dev.port}" if host is None else host)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def raw_request(dev: DevServer, request_line: str) -> int:
    """Send a request line exactly as written (no client-side normalisation)."""
    with socket.create_connection(("127.0.0.1", dev.port), timeout=10) as sock:
        sock.sendall(f"{request_line}\r\nHost: 127.0.0.1:{dev.port}\r\n\r\n".encode())
        status_line = sock.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def test_serves_pages_with_clean_urls_and_content_types(running) -> None:
    _, dev = running
    status, headers, body = get(dev, "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b"/__broadsheet/live.js" in body
    assert headers["cache-control"] == "no-store"
    assert get(dev, "/topics/ai/")[0] == 200
    status, headers, _ = get(dev, "/topics/ai")
    assert status == 301 and headers["location"] == "/topics/ai/"
    assert get(dev, "/sitemap.xml")[1]["content-type"].startswith("application/xml")
    assert get(dev, "/robots.txt")[1]["content-type"].startswith("text/plain")
    assert get(dev, "/issues/3/email.txt")[1]["content-type"] == "text/plain; charset=utf-8"
    assert get(dev, "/issues/3/email.html")[0] == 200
    assert get(dev, "/feed.json")[1]["content-type"].startswith("application/json")
    assert get(dev, "/atom.xml")[1]["content-type"].startswith("application/xml")
    css = next(p for p in (dev.state.folder / "static").iterdir() if p.suffix == ".css")
    assert get(dev, f"/static/{css.name}")[1]["content-type"].startswith("text/css")


def test_a_directory_redirect_keeps_the_query_string(running) -> None:
    _, dev = running
    status, headers, _ = get(dev, "/topics/ai?x=1")
    assert status == 301 and headers["location"] == "/topics/ai/?x=1"


def test_redirects_are_not_kept_by_browsers(make_site) -> None:
    """Browsers keep a 301 without caching headers for good: the redirect from / to the
    base path of site.yaml's base_url outlived the preview, and another site previewed
    later on the same port was sent to a base path it does not have."""
    site = make_site({"content/a.md": story()},
                     site_yaml=SITE_YAML.replace(".org/", ".org/digest/"))
    dev = DevServer(site.root, port=0, log=io.StringIO())
    dev.start()
    try:
        status, headers, _ = get(dev, "/")
        assert status == 301 and headers["location"] == "/digest/"
        assert headers["cache-control"] == "no-store"
    finally:
        dev.stop()


def test_missing_pages_get_the_theme_404_with_status_404(running) -> None:
    _, dev = running
    status, _, body = get(dev, "/no/such/page/")
    assert status == 404 and b"Page not found" in body


def test_a_file_asked_for_as_a_folder_is_not_found(running) -> None:
    """A static host answers /stories/a/index.html/ with 404; served, its relative links
    pointed one folder too deep and the preview showed a page the site would not."""
    _, dev = running
    assert get(dev, "/stories/a/index.html")[0] == 200
    status, _, body = get(dev, "/stories/a/index.html/")
    assert status == 404 and b"Page not found" in body


def test_head_requests_have_headers_and_no_body(running) -> None:
    _, dev = running
    status, headers, body = get(dev, "/", method="HEAD")
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""


def test_the_reload_script_is_never_written_into_a_build(running) -> None:
    _, dev = running
    for path in dev.state.folder.rglob("*.html"):
        assert b"__broadsheet" not in path.read_bytes()


def test_an_edit_is_served_and_announced(running) -> None:
    site, dev = running
    events = EventListener(dev)
    site.write("content/a.md", story(title="Second title", extra="topics: [AI]"))
    assert wait_until(lambda: b"Second title" in get(dev, "/stories/a/")[2])
    assert wait_until(lambda: events.reloads >= 1)
    events.close()


def test_the_collector_tidies_up_once_edits_have_stopped_not_during_a_reload(
    make_site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full collection walks the whole model with the interpreter lock held (0.15 s at
    1,000 stories): run right after a rebuild, it held up the browser's reload and the next
    save. It waits for COLLECT_AFTER_SECONDS of quiet, and does happen."""
    from broadsheet import serve

    collected: list[float] = []
    monkeypatch.setattr(serve, "COLLECT_AFTER_SECONDS", 0.6)
    monkeypatch.setattr(serve.gc, "collect", lambda *a: collected.append(time.monotonic()) or 0)
    site = make_site({"content/a.md": story(title="First title")})
    log = io.StringIO()
    dev = DevServer(site.root, port=0, log=log)
    dev.start()
    try:
        assert wait_until(dev.watching.is_set)
        site.write("content/a.md", story(title="Second title"))
        assert wait_until(lambda: "Built" in log.getvalue().partition("Changed:")[2])
        built = time.monotonic()
        assert b"Second title" in get(dev, "/stories/a/")[2]
        assert wait_until(lambda: bool(collected), timeout=10)
        assert collected[0] - built >= 0.4, "collected while the reload was being served"
        assert len(collected) == 1  # once per quiet spell, not at every idle tick
        time.sleep(1.0)
        assert len(collected) == 1
    finally:
        dev.stop()


def test_warnings_are_printed_once_not_after_every_save(make_site) -> None:
    """The same warnings after every save would bury what the save did: a rebuild prints the
    new ones and counts the others."""
    site = make_site({"content/a.md": story(title="A", extra="colour: red"),
                      "content/b.md": story(title="B", url="https://news.example.com/b")})
    log = io.StringIO()
    dev = DevServer(site.root, port=0, log=log)
    dev.start()
    try:
        assert wait_until(dev.watching.is_set)
        assert log.getvalue().count("colour: unknown field") == 1
        site.write("content/b.md", story(title="B2", url="https://news.example.com/b"))
        assert wait_until(lambda: "Built" in log.getvalue().partition("Changed:")[2])
        after = log.getvalue().partition("Changed:")[2]
        assert "colour" not in after and "1 warning as before" in after
        site.write("content/b.md", story(title="B3", url="https://news.example.com/b",
                                         extra="flavour: odd"))
        assert wait_until(lambda: "flavour" in log.getvalue())
        assert log.getvalue().count("colour: unknown field") == 1
    finally:
        dev.stop()


def test_a_broken_edit_keeps_the_last_good_build_with_an_overlay(running) -> None:
    site, dev = running
    site.write("content/a.md", story(title="First title", url="javascript:alert(1)"))
    assert wait_until(lambda: b"broadsheet-overlay" in get(dev, "/stories/a/")[2])
    _, _, body = get(dev, "/stories/a/")
    assert b"First title" in body
    assert b"content/a.md:4: webUrl: expected an http(s) URL" in body
    site.write("content/a.md", story(title="Fixed title"))
    # The preview folder is patched in place, so a request made while a build commits can
    # see its new page before the build is announced (and the overlay dropped); browsers
    # reload on the announcement, after which the page is whole.
    assert wait_until(lambda: b"Fixed title" in (body := get(dev, "/stories/a/")[2])
                      and b"broadsheet-overlay" not in body)


def test_a_saved_cache_that_goes_away_is_no_error(make_site) -> None:
    """The preview reads the cache its last session saved lazily, long after starting;
    another preview of the site stopping (it saves its own) or `rm -rf .cache` removes it.
    The next save showed a false "the last edit broke the build" overlay."""
    body = "A paragraph long enough to be kept in a pack of the cache. " * 20
    site = make_site({f"content/{name}.md": story(title=f"Story {name}", body=body,
                                                  url=f"https://news.example.com/{name}")
                      for name in "abc"})
    earlier = DevServer(site.root, port=0, log=io.StringIO())
    earlier.start()
    earlier.stop()
    assert list((site.root / ".cache" / "serve").glob("pack-*.bin"))
    log = io.StringIO()
    dev = DevServer(site.root, port=0, log=log)
    dev.start()
    try:
        shutil.rmtree(site.root / ".cache")
        site.write("content/a.md", story(title="Edited", body=body,
                                         url="https://news.example.com/a"))
        assert wait_until(lambda: "Built" in log.getvalue().partition("Changed:")[2]
                          or "failed" in log.getvalue())
        page = get(dev, "/stories/a/")[2]
        assert b"Edited" in page and b"broadsheet-overlay" not in page
        assert "failed" not in log.getvalue()
        assert "note: the saved build cache went away" in log.getvalue()
    finally:
        dev.stop()


@pytest.mark.parametrize(
    "request_line",
    [
        "GET /../../../etc/passwd HTTP/1.1",
        "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1",
        "GET /..%2f..%2fetc%2fpasswd HTTP/1.1",
        "GET /%2E%2E%5C%2E%2E%5Cetc%5Cpasswd HTTP/1.1",
        "GET /..\\..\\etc\\passwd HTTP/1.1",
        "GET //etc/passwd HTTP/1.1",
        "GET /static/..%2f..%2f..%2fsite.yaml HTTP/1.1",
        "GET /%00 HTTP/1.1",
        "GET /leak/passwd HTTP/1.1",
    ],
)
def test_path_traversal_is_refused_and_the_server_stays_up(running, request_line) -> None:
    _, dev = running
    (dev.state.folder / "leak").symlink_to("/etc")
    assert raw_request(dev, request_line) in (400, 403, 404)
    assert get(dev, "/")[0] == 200


@pytest.mark.parametrize(("link", "path"), [("linked/index.html", "/linked/"),
                                            ("404.html", "/missing/")])
def test_pages_linked_out_of_the_build_are_not_served(running, tmp_path, link, path) -> None:
    """Every URL is kept inside the build, symlinks included; but a folder's index.html
    and the 404 page were read without that check."""
    _, dev = running
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the browser")
    page = dev.state.folder / link
    page.parent.mkdir(exist_ok=True)
    page.unlink(missing_ok=True)
    page.symlink_to(secret)
    status, _, body = get(dev, path)
    assert status == 404 and b"not for the browser" not in body


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:80", "127.0.0.1:1", ""])
def test_foreign_host_headers_are_refused(running, host: str) -> None:
    _, dev = running
    assert get(dev, "/", host=host)[0] == 403


@pytest.mark.parametrize("sent", ["Box.Example", "box.example", "BOX.EXAMPLE:9000"])
def test_host_names_are_matched_whatever_their_case(sent: str) -> None:
    """Host names are case-insensitive. The Host header was lowercased, then compared
    without its port to --host as typed: `--host Box.Example` refused even `Host:
    Box.Example` (403)."""
    dev = SimpleNamespace(wildcard=False, host="Box.Example", port=8000)
    handler = SimpleNamespace(headers={"Host": sent}, server=SimpleNamespace(dev=dev))
    assert PreviewHandler.host_allowed(handler)  # type: ignore[arg-type]


@pytest.mark.parametrize(("bound", "sent"), [
    ("Box.Example", "box.example.:8000"),
    ("Box.Example", "BOX.EXAMPLE."),  # bound to a name other machines reach: any port
    ("box.example.", "box.example:8000"),
    ("127.0.0.1", "localhost.:8000"),
    ("127.0.0.1", "127.0.0.1:8000"),
    ("::1", "[::1]:8000"),
    ("2001:db8::5", "[2001:db8::5]:8000"),
])
def test_a_fully_qualified_host_name_is_the_same_host(bound: str, sent: str) -> None:
    """`localhost.` is `localhost` with the DNS root spelled out; it was refused (403)
    unless the server listened on every interface."""
    dev = SimpleNamespace(wildcard=False, host=bound, port=8000)
    handler = SimpleNamespace(headers={"Host": sent}, server=SimpleNamespace(dev=dev))
    assert PreviewHandler.host_allowed(handler)  # type: ignore[arg-type]


@pytest.mark.parametrize(("bound", "sent"), [
    ("box.example", "evil.example.:8000"),
    ("box.example", "box.example.evil.example.:8000"),
    ("127.0.0.1", "evil.example.:8000"),
    ("127.0.0.1", "localhost.:9000"),  # a loopback server answers its own port only
    ("127.0.0.1", "localhost..:8000"),
    ("::1", "[::1]x:8000"),
])
def test_foreign_hosts_are_refused_with_a_trailing_dot_too(bound: str, sent: str) -> None:
    """DNS rebinding: a name of another domain, dot or not, is refused."""
    dev = SimpleNamespace(wildcard=False, host=bound, port=8000)
    handler = SimpleNamespace(headers={"Host": sent}, server=SimpleNamespace(dev=dev))
    assert not PreviewHandler.host_allowed(handler)  # type: ignore[arg-type]


def test_local_host_names_are_accepted(running) -> None:
    _, dev = running
    assert get(dev, "/", host=f"localhost:{dev.port}")[0] == 200
    assert get(dev, "/", host=f"localhost.:{dev.port}")[0] == 200
    assert get(dev, "/", host=f"evil.example.:{dev.port}")[0] == 403


@pytest.mark.parametrize("bind", ["0.0.0.0", ""])
def test_a_server_on_every_interface_answers_this_machines_names_and_addresses(
    make_site, bind: str
) -> None:
    """--host 0.0.0.0 is for other machines, which address this one by an IP address or
    its name: both were refused (403). Names of other domains still are (DNS rebinding)."""
    site = make_site({"content/a.md": story()})
    dev = DevServer(site.root, host=bind, port=0, log=io.StringIO())
    dev.start()
    try:
        name, port = socket.gethostname(), dev.port
        assert dev.url == f"http://127.0.0.1:{port}/"
        assert dev.network_url == f"http://{name.lower()}:{port}/"
        for host in (f"{name}:{port}", f"{name.upper()}.local:{port}", f"192.0.2.7:{port}",
                     "192.0.2.7:8080", f"[2001:db8::7]:{port}", f"localhost:{port}"):
            assert get(dev, "/", host=host)[0] == 200, host
        for host in (f"evil.example.com:{port}", f"{name}.evil.example.com:{port}", ""):
            assert get(dev, "/", host=host)[0] == 403, host
        canonical = f'<link rel="canonical" href="{dev.network_url}stories/a/"'.encode()
        assert canonical in get(dev, "/stories/a/")[2]  # links other machines can follow
    finally:
        dev.stop()


def test_a_server_on_every_interface_prints_a_url_for_other_machines(make_site) -> None:
    site = make_site({"content/a.md": story()})
    process = subprocess.Popen(
        [sys.executable, str(REPO / "build.py"), "serve", "--port", "0", "--host", "0.0.0.0"],
        cwd=site.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        port = url.rsplit(":", 1)[1]
        warning = process.stderr.readline()
        assert "reachable from other machines" in warning
        assert f"http://{socket.gethostname().lower()}:{port}" in warning
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


# Runs the serve command on every interface with a DNS that does not answer this machine's
# full name until the test writes a line to its stdin.
SLOW_DNS = """
import socket, sys, threading
from broadsheet import cli
answered = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), answered.set()), daemon=True).start()
def getfqdn(name=""):
    answered.wait()
    return "box.corp.example."
socket.getfqdn = getfqdn
sys.argv = ["broadsheet", "serve", "--port", "0", "--host", "0.0.0.0"]
cli.run()
"""


def test_a_slow_dns_does_not_hold_up_start_up_on_every_interface(make_site, tmp_path) -> None:
    """socket.getfqdn(), asked for this machine's names, waited for DNS (many seconds on a
    slow network) before the URL was printed or anything answered. Now the server starts
    and answers while the lookup is under way, and answers to the full name once known."""
    site = make_site({"content/a.md": story()})
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_DNS], cwd=site.root, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(scratch),
             "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    try:
        url = next_line(process.stdout)
        assert url.startswith("http://127.0.0.1:"), f"no URL while DNS is silent: {url!r}"
        port = int(url.rsplit(":", 1)[1].rstrip("/\n"))
        own = f"{socket.gethostname()}:{port}"
        assert wait_until(lambda: status_for(port, own) == 200)
        assert status_for(port, f"box.corp.example:{port}") == 403  # not known yet
        process.stdin.write("\n")  # DNS answers
        process.stdin.flush()
        assert wait_until(lambda: status_for(port, f"box.corp.example:{port}") == 200)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        assert_stopped_cleanly(code, site, scratch, process.stderr.read())
    finally:
        kill_if_running(process)


def next_line(stream: Any, timeout: float = 60) -> str:
    """The next line of a child's output, or "" if none came within `timeout` (a bound
    for a child that hangs, not a judgement of its speed)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def status_for(port: int, host: str) -> int:
    """The status of GET / addressed to `host`; 0 when nothing answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", "/", skip_host=True)
        connection.putheader("Host", host)
        connection.endheaders()
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def test_many_concurrent_clients_are_served(running) -> None:
    _, dev = running
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: get(dev, "/topics/ai/")[0], range(200)))
    assert statuses == [200] * 200


def test_a_client_that_disconnects_mid_response_breaks_nothing(running) -> None:
    _, dev = running
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", dev.port)) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{dev.port}\r\n\r\n".encode())
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    assert get(dev, "/")[0] == 200


def test_stopping_ends_the_connections_browsers_keep_open(make_site) -> None:
    """HTTP/1.1 keeps a connection open after a response, its thread waiting for the next
    request: those threads outlived stop(), still answering from the removed preview."""
    site = make_site({"content/a.md": story()})
    before = set(threading.enumerate())
    dev = DevServer(site.root, port=0, log=io.StringIO())
    dev.start()
    connection = http.client.HTTPConnection("127.0.0.1", dev.port, timeout=10)
    try:
        assert _status(connection) == 200  # the connection stays open
        dev.stop()
        assert _status(connection) == 0
        assert wait_until(lambda: set(threading.enumerate()) <= before)
    finally:
        connection.close()
        dev.stop()


def test_an_idle_connection_is_closed_while_the_event_stream_stays_open(
    running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that connected and sent nothing, or half a request, held a thread until the
    server stopped. Now the server closes it once it has been idle for the handler's
    timeout; the event stream, silent for longer than that, still announces the next build."""
    site, dev = running
    assert 0 < PreviewHandler.timeout <= 60  # by default too: some seconds, not never
    monkeypatch.setattr(PreviewHandler, "timeout", 0.2)
    monkeypatch.setattr(previewhttp, "KEEPALIVE_SECONDS", 600.0)  # not a byte until a build
    events = EventListener(dev, f"?since={dev.state.shown().token}")
    half_request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{dev.port}\r\n".encode()
    for sent in (b"", half_request):
        with socket.create_connection(("127.0.0.1", dev.port), timeout=10) as idle:
            idle.sendall(sent)
            assert closed_by_server(idle), sent
    site.write("content/a.md", story(title="Second title", extra="topics: [AI]"))
    assert wait_until(lambda: events.reloads == 1)
    events.close()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection (within the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# -- reloading: every page ends up showing the latest build -----------------------------------


def test_a_stream_about_to_wait_when_the_server_stops_does_not_wait() -> None:
    """A stream checked that the server was not stopping, then waited for the next build:
    stopping in between (its notification sent before the stream waited) left the stream
    waiting out a whole keepalive period, its thread and the browser's connection held."""
    state = BuildState()
    state.close()
    returned: list[str | None] = []
    token = state.shown().token
    waiting = threading.Thread(
        target=lambda: returned.append(state.wait_for_change(token, 600)), daemon=True)
    waiting.start()
    assert wait_until(lambda: returned == [None])


def served_build(body: bytes) -> str:
    """The build a served page says it shows (its reload script's data-build)."""
    return body.split(b'data-build="')[1].split(b'"')[0].decode()


def test_a_build_finished_before_the_stream_connects_is_announced(running) -> None:
    """A page carries the build it was served from; a build that completed between serving
    it and its event stream connecting reloads it at once (it stayed stale until the next
    save: two saves 70-130 ms apart, or an editor's two-step save)."""
    site, dev = running
    shown = served_build(get(dev, "/stories/a/")[2])
    site.write("content/a.md", story(title="Second title", extra="topics: [AI]"))
    assert wait_until(lambda: dev.state.shown().token != shown)
    events = EventListener(dev, f"?since={shown}")
    assert wait_until(lambda: events.builds == [dev.state.shown().token], timeout=3)
    events.close()


def test_a_page_of_the_current_build_is_reloaded_only_by_the_next(running) -> None:
    site, dev = running
    events = EventListener(dev, f"?since={served_build(get(dev, '/')[2])}")
    time.sleep(0.5)
    assert events.reloads == 0
    site.write("content/a.md", story(title="Second title", extra="topics: [AI]"))
    assert wait_until(lambda: events.reloads == 1)
    events.close()


def test_a_page_served_while_the_site_is_broken_shows_the_overlay_and_reloads_when_fixed(
    running,
) -> None:
    site, dev = running
    site.write("content/a.md", story(title="First title", url="javascript:alert(1)"))
    assert wait_until(lambda: b"broadsheet-overlay" in get(dev, "/stories/a/")[2])
    body = get(dev, "/stories/a/")[2]
    assert b"the last good version" in body and b"First title" in body
    shown = served_build(body)
    site.write("content/a.md", story(title="Fixed title"))
    assert wait_until(lambda: dev.state.shown().token != shown and not dev.state.problems)
    events = EventListener(dev, f"?since={shown}")
    assert wait_until(lambda: events.reloads >= 1, timeout=3)
    body = get(dev, "/stories/a/")[2]
    assert b"Fixed title" in body and b"broadsheet-overlay" not in body
    events.close()


def test_a_site_broken_from_the_start_says_so_and_shows_once_fixed(make_site) -> None:
    """No "last good build" when there never was one: a 503 listing the errors, which
    reloads once the site builds."""
    site = make_site({"content/a.md": story(title="Broken", url="javascript:alert(1)")})
    log = io.StringIO()
    dev = DevServer(site.root, port=0, log=log)
    dev.start()
    try:
        status, _, body = get(dev, "/")
        assert status == 503 and b"does not build yet" in body
        assert b"last good" not in body and "last good" not in log.getvalue()
        assert "no page to show yet" in log.getvalue()
        events = EventListener(dev, f"?since={served_build(body)}")
        site.write("content/a.md", story(title="Fixed"))
        assert wait_until(lambda: events.reloads >= 1)
        assert b"Fixed" in get(dev, "/stories/a/")[2]
        events.close()
    finally:
        dev.stop()


class EventListener:
    """Reads the server-sent event stream in the background and counts reload events."""

    def __init__(self, dev: DevServer, query: str = "") -> None:
        self.reloads = 0
        self.builds: list[str] = []  # each reload's data: the build to show
        self.connection = http.client.HTTPConnection("127.0.0.1", dev.port, timeout=30)
        self.connection.request(
            "GET", "/__broadsheet/events" + query, headers={"Host": f"127.0.0.1:{dev.port}"}
        )
        self.response = self.connection.getresponse()
        assert self.response.getheader("Content-Type") == "text/event-stream"
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self) -> None:
        try:
            for line in self.response:
                if line.startswith(b"data: "):
                    self.builds.append(line[6:].strip().decode())
                if line.startswith(b"event: reload"):
                    self.reloads += 1
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.connection.close()


def _ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _default_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("stop", "started"),
    [(signal.SIGINT, _default_ctrl_c), (signal.SIGTERM, _default_ctrl_c),
     (signal.SIGINT, _ignore_ctrl_c)],
    ids=["ctrl-c", "terminate", "ctrl-c-started-ignored"],
)
def test_serve_command_prints_the_url_first_and_stops_cleanly(
    make_site, tmp_path, stop, started
) -> None:
    """Ctrl-C, or SIGTERM from `kill`, an editor's stop button or a container: exit 0, the
    preview's temporary folder removed, its build cache kept for the next session. Ctrl-C
    works even when whatever started the server was ignoring SIGINT, which a child
    inherits (a full test run once started it so, and it ran on)."""
    site = make_site({"content/a.md": story()})
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "build.py"), "serve", "--port", "0"],
        cwd=site.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
        preexec_fn=started,  # one signal disposition, set between fork and exec
    )
    try:
        first_line = process.stdout.readline().strip()
        assert first_line.startswith("http://127.0.0.1:") and first_line.endswith("/")
        port = int(first_line.rsplit(":", 1)[1].rstrip("/"))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert wait_until(lambda: _status(connection) == 200)
        assert list(scratch.glob("broadsheet-serve-*"))  # the preview is built there
        process.send_signal(stop)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"still running 30 s after {stop.name}; its stderr:\n{err}")
        assert_stopped_cleanly(code, site, scratch)
    finally:
        kill_if_running(process)


# -- search: the index follows the reload -----------------------------------------------------


def test_with_search_on_a_save_reloads_before_the_search_index_is_remade(
    make_site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pagefind reads every page whatever the edit (4-6 s at 1,000 stories) and ran before
    the reload. The preview announces the build first; the index follows, served from a
    folder of its own (never written into the build)."""
    real_popen = subprocess.Popen

    def slow_pagefind(command: Any, *args: Any, **kwargs: Any) -> Any:
        if "pagefind" in command:  # 4 s more than Pagefind takes
            command = ["sh", "-c", 'sleep 4; exec "$@"', "sh", *command]
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", slow_pagefind)
    site = make_site({"content/a.md": story(title="First title")},
                     site_yaml=SITE_YAML + "search: true\n")
    log = io.StringIO()
    dev = DevServer(site.root, port=0, log=log)
    dev.start()
    try:
        events = EventListener(dev)
        site.write("content/a.md", story(title="Second title"))
        assert wait_until(lambda: events.reloads == 1)
        # Announced while this build's Pagefind still runs (4 s more): not after it.
        assert len(dev.search.folders()) < 2, "the reload waited for Pagefind"
        assert b"Second title" in get(dev, "/stories/a/")[2]
        assert wait_until(lambda: len(dev.search.folders()) == 2, timeout=40)
        status, headers, _ = get(dev, "/pagefind/pagefind.js")
        assert status == 200 and headers["content-type"].startswith("text/javascript")
        assert not (dev.state.folder / "pagefind").exists()
        assert "Search index not updated" not in log.getvalue()
        events.close()
    finally:
        dev.stop()


# -- stopping: promptly, with nothing left behind, however often asked -----------------------


@pytest.fixture
def slow_rebuilds(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[..., None]], None]:
    """Make rendering of rebuilds (not of the first build) call `delay(progress)` first."""
    from broadsheet import stages

    real = stages.render_units

    def install(delay: Callable[..., None]) -> None:
        calls = []

        def render_units(todo: Any, sink: Any, fp: Any, config: Any, progress: Any = None,
                         *args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) > 1:
                delay(progress)
            return real(todo, sink, fp, config, progress, *args, **kwargs)

        monkeypatch.setattr(stages, "render_units", render_units)

    return install


def stop_during_a_rebuild(site: MiniSite, monkeypatch: pytest.MonkeyPatch) -> tuple[
        DevServer, list[Any]]:
    """Start a preview, save, stop it while the rebuild renders: the server and what its
    threads raised."""
    raised: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", raised.append)
    log = io.StringIO()
    dev = DevServer(site.root, port=0, log=log)
    dev.start()
    site.write("content/a.md", story(title="Second title"))
    assert wait_until(lambda: "Changed:" in log.getvalue())
    time.sleep(0.3)
    dev.stop()
    return dev, raised


def test_stopping_during_a_rebuild_ends_it_at_once_and_removes_everything(
    make_site, slow_rebuilds, monkeypatch
) -> None:
    """A template edit re-renders every page (seconds at 1,000 stories): stopping then took
    15-18 s, deleted the folder under the rebuild (a traceback) and could leave its
    pending pages in the temporary folder. The rebuild stops at its next page."""

    steps: list[int] = []

    def pages_forever(progress: Any) -> None:
        for done in range(600):
            if progress:
                progress(done)
            steps.append(done)
            time.sleep(0.05)

    slow_rebuilds(pages_forever)
    site = make_site({"content/a.md": story()})
    dev, raised = stop_during_a_rebuild(site, monkeypatch)
    assert len(steps) < 600, "the rebuild ran to its end"  # and, below, it has ended
    assert not raised and not any(thread.is_alive() for thread in dev._threads)
    assert not dev.workspace.exists()
    assert (site.root / ".cache" / "serve" / CACHE_FILE).is_file()


def test_stopping_waits_for_a_rebuild_it_cannot_interrupt(
    make_site, slow_rebuilds, monkeypatch
) -> None:
    """A page that renders for long (a slow template) cannot be interrupted: stopping waits
    for it rather than deleting the folder it writes into."""
    finished: list[bool] = []

    def one_long_page(progress: Any) -> None:
        time.sleep(6.5)  # longer than stop() used to wait
        finished.append(True)

    slow_rebuilds(one_long_page)
    site = make_site({"content/a.md": story()})
    dev, raised = stop_during_a_rebuild(site, monkeypatch)
    assert finished, "stop() returned before the page it could not interrupt was done"
    assert not any(thread.is_alive() for thread in dev._threads)
    assert not raised and not dev.workspace.exists()


# Runs the serve command with a stop that takes a while (a large site's cache to save).
SLOW_STOP = """
import sys, time
from broadsheet import cli, serve
real_stop = serve.DevServer.stop
def stop(self):
    print("stopping", file=sys.stderr, flush=True)
    time.sleep(1.5)
    real_stop(self)
serve.DevServer.stop = stop
sys.argv = ["broadsheet", "serve", "--port", "0"]
cli.run()
"""


def test_more_signals_while_stopping_do_not_abort_the_cleanup(make_site, tmp_path) -> None:
    """Ctrl-C pressed again while stopping takes a moment, or `timeout` and supervisors that
    signal the process group as well as the server: the second signal aborted the cleanup
    (exit 130, the whole preview left in the temporary folder)."""
    site = make_site({"content/a.md": story()})
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_STOP], cwd=site.root, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(scratch),
             "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    try:
        port = int(process.stdout.readline().strip().rsplit(":", 1)[1].rstrip("/"))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert wait_until(lambda: _status(connection) == 200)
        process.send_signal(signal.SIGINT)
        while "stopping" not in process.stderr.readline():
            pass
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        err = process.stderr.read()
        assert "Traceback" not in err and "Interrupted" not in err
        assert_stopped_cleanly(code, site, scratch, err)
    finally:
        kill_if_running(process)


class CtrlCWhileWriting(io.StringIO):
    """Standard output on which Ctrl-C comes as soon as anything is printed."""

    def write(self, text: str) -> int:
        raise KeyboardInterrupt


def ctrl_c(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(("when", "exit_code"), [("made", 130), ("printing", 0)])
def test_ctrl_c_as_the_server_is_made_leaves_no_preview_folder(
    make_site, tmp_path, monkeypatch: pytest.MonkeyPatch, when: str, exit_code: int
) -> None:
    """The preview's temporary folder was made with the server, before the code that
    removes it on Ctrl-C: a Ctrl-C in between (at the end of making the server, or while
    its URL was printed) left it. Interrupted before the server is made, nothing was
    served: the command line says "Interrupted." (130); after, it has stopped (0)."""
    site = make_site({"content/a.md": story()})
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    if when == "made":
        monkeypatch.setattr("broadsheet.serve.BackgroundIndex", ctrl_c)  # made last
    else:
        monkeypatch.setattr(sys, "stdout", CtrlCWhileWriting())
    handlers = {each: signal.getsignal(each) for each in (signal.SIGINT, signal.SIGTERM)}
    args = argparse.Namespace(site=site.root, host="127.0.0.1", port=0, drafts=False,
                              offline=False, open=False)
    try:
        code = serve(args)
    except KeyboardInterrupt:
        code = 130  # what the command line exits with then
    finally:
        for each, handler in handlers.items():  # serve() set its own
            signal.signal(each, handler)
    assert not list(tmp_path.glob("broadsheet-serve-*"))
    assert code == exit_code


def assert_stopped_cleanly(code: int, site: MiniSite, scratch: Path, err: str = "") -> None:
    """What every way of stopping `serve` must leave: exit 0, nothing in the temporary
    folder (`scratch`, its TMPDIR), the preview's build cache kept for the next session."""
    assert code == 0, err
    assert not list(scratch.glob("broadsheet-serve-*"))
    assert (site.root / ".cache" / "serve" / CACHE_FILE).is_file()


def kill_if_running(process: subprocess.Popen[str]) -> None:
    """Whatever a test asserted, leave no server running (and its pipes closed)."""
    if process.poll() is None:
        process.kill()
    process.communicate()


def _status(connection: http.client.HTTPConnection) -> int:
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        connection.close()
        return 0


def test_a_port_in_use_is_a_clear_message(make_site) -> None:
    site = make_site({"content/a.md": story()})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(REPO / "build.py"), "serve", "--port", str(port)],
            cwd=site.root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_host_that_does_not_resolve_is_not_taken_for_a_port_in_use() -> None:
    from broadsheet.serve import cannot_listen

    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    message = cannot_listen("nonexistent.invalid", 8000, unknown)
    assert message == ("broadsheet serve: cannot listen on nonexistent.invalid:8000: "
                       "Name or service not known.")
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    assert "Is another server running?" in cannot_listen("127.0.0.1", 8000, in_use)


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_a_usage_error(make_site, port: str) -> None:
    site = make_site({"content/a.md": story()})
    result = subprocess.run(
        [sys.executable, str(REPO / "build.py"), "serve", "--port", port],
        cwd=site.root, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "must be 0-65535" in result.stderr and "Traceback" not in result.stderr


# -- in a real browser ------------------------------------------------------------------------


def shows(page: Any, title: str, timeout: float = 15000) -> None:
    page.wait_for_function(
        f"() => document.querySelector('h1')?.textContent.includes({title!r})", timeout=timeout
    )


def test_a_page_open_in_a_real_browser_reloads_after_an_edit(running, chromium) -> None:
    site, dev = running
    page = chromium.new_page()
    page.goto(dev.url + "stories/a/")
    assert "First title" in page.inner_text("h1")
    assert wait_until(lambda: dev.streams.open == 1)  # the page listens
    page.evaluate("window.__loaded = true")
    page.wait_for_timeout(500)
    assert page.evaluate("window.__loaded")  # and does not reload without a new build
    site.write("content/a.md", story(title="Edited in the browser", extra="topics: [AI]"))
    shows(page, "Edited in the browser")


def test_a_page_whose_build_was_replaced_while_it_loaded_reloads(running, chromium) -> None:
    """The reload script is held back until a newer build is out: the page must still end
    up showing it (the stream used to start from the build current when it connected)."""
    site, dev = running
    page = chromium.new_page()
    held: list[Any] = []
    page.route("**/__broadsheet/live.js", lambda route: held.append(route))
    page.goto(dev.url + "stories/a/", wait_until="commit")
    while not held:
        page.wait_for_timeout(20)
    shown = dev.state.shown().token
    site.write("content/a.md", story(title="Saved meanwhile", extra="topics: [AI]"))
    while dev.state.shown().token == shown:
        page.wait_for_timeout(20)
    held[0].continue_()
    shows(page, "Saved meanwhile")


# Counts the event streams a page opens (window.__sources).
COUNT_STREAMS = """
window.__sources = [];
const Original = window.EventSource;
window.EventSource = class extends Original {
  constructor(...args) { super(...args); window.__sources.push(this); }
};
"""


def test_more_tabs_than_a_browser_has_connections_all_load_and_reload(running, chromium) -> None:
    """Browsers allow 6 connections per host and each tab held one for its event stream:
    the 7th tab never loaded. One tab holds the stream for all; when it closes, another
    takes over."""
    site, dev = running
    context = chromium.new_context()
    context.add_init_script(COUNT_STREAMS)
    pages = []
    for _ in range(8):
        page = context.new_page()
        page.goto(dev.url + "stories/a/", timeout=10000)
        pages.append(page)
    assert wait_until(lambda: dev.streams.started == 1)
    site.write("content/a.md", story(title="Second title", extra="topics: [AI]"))
    for page in pages:
        shows(page, "Second title")

    def holders() -> list[Any]:
        return [page for page in pages if page.evaluate("window.__sources.length") > 0]

    assert wait_until(lambda: len(holders()) == 1)
    holder = holders()[0]
    started = dev.streams.started
    holder.close()
    assert wait_until(lambda: dev.streams.started == started + 1)
    site.write("content/a.md", story(title="Third title", extra="topics: [AI]"))
    for page in pages:
        if page is not holder:
            shows(page, "Third title")
    context.close()


# A browser without Web Locks (an insecure origin: another machine reaching a preview by its
# name) gets one stream per tab; this page pretends to have none and to be hidden when told.
NO_LOCKS = COUNT_STREAMS + """
Object.defineProperty(Navigator.prototype, "locks", { get: () => undefined });
window.__hide = (hidden) => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  document.dispatchEvent(new Event("visibilitychange"));
};
"""


def test_without_web_locks_a_hidden_tab_closes_its_stream_and_catches_up(
    running, chromium
) -> None:
    site, dev = running
    page = chromium.new_page()
    page.add_init_script(NO_LOCKS)
    page.goto(dev.url + "stories/a/")
    page.wait_for_function("() => window.__sources.length === 1")
    page.evaluate("window.__hide(true)")
    assert page.evaluate("window.__sources.every((s) => s.readyState === EventSource.CLOSED)")
    shown = dev.state.shown().token
    site.write("content/a.md", story(title="Edited while hidden", extra="topics: [AI]"))
    assert wait_until(lambda: dev.state.shown().token != shown)
    page.wait_for_timeout(500)
    assert "First title" in page.inner_text("h1")  # a hidden tab holds no stream
    page.evaluate("window.__hide(false)")
    shows(page, "Edited while hidden", timeout=5000)


def test_search_in_the_preview_finds_an_edit(make_site, chromium) -> None:
    site = make_site({"content/a.md": story(title="First title")},
                     site_yaml=SITE_YAML + "search: true\n")
    dev = DevServer(site.root, port=0, log=io.StringIO())
    dev.start()
    try:
        assert wait_until(lambda: len(dev.search.folders()) == 1, timeout=30)
        site.write("content/a.md", story(title="Quokka sighting"))
        assert wait_until(lambda: len(dev.search.folders()) == 2, timeout=30)
        page = chromium.new_page()
        page.goto(dev.url + "search/")
        urls = page.evaluate("""async () => {
            const pagefind = await import("/pagefind/pagefind.js");
            const search = await pagefind.search("quokka");
            return Promise.all(search.results.map(async (r) => (await r.data()).url));
        }""")
        assert "/stories/a/" in urls
    finally:
        dev.stop()
