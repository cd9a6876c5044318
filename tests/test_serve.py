"""The dev server: serves the last good build, rebuilds on edits, reloads browsers, stays safe."""

from __future__ import annotations

import http.client
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from broadsheet.buildcache import CACHE_FILE
from broadsheet.serve import DevServer

from .conftest import REPO, MiniSite, story

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


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


def test_missing_pages_get_the_theme_404_with_status_404(running) -> None:
    _, dev = running
    status, _, body = get(dev, "/no/such/page/")
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


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:80", "127.0.0.1:1", ""])
def test_foreign_host_headers_are_refused(running, host: str) -> None:
    _, dev = running
    assert get(dev, "/", host=host)[0] == 403


def test_local_host_names_are_accepted(running) -> None:
    _, dev = running
    assert get(dev, "/", host=f"localhost:{dev.port}")[0] == 200


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


def test_a_build_finished_before_the_stream_connects_is_announced(running) -> None:
    """A page carries the generation it was served at; a build that completed between
    serving it and its event stream connecting must still reload it (it stayed stale)."""
    site, dev = running
    _, _, body = get(dev, "/stories/a/")
    served = int(body.split(b'data-generation="')[1].split(b'"')[0])
    before = dev.state.generation
    site.write("content/a.md", story(title="Second title", extra="topics: [AI]"))
    assert wait_until(lambda: dev.state.generation > before)
    events = EventListener(dev, f"?g={served}")
    assert wait_until(lambda: events.reloads >= 1, timeout=3)
    events.close()


class EventListener:
    """Reads the server-sent event stream in the background and counts reload events."""

    def __init__(self, dev: DevServer, query: str = "") -> None:
        self.reloads = 0
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
        assert code == 0
        assert not list(scratch.glob("broadsheet-serve-*"))
        assert (site.root / ".cache" / "serve" / CACHE_FILE).is_file()
    finally:
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


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_a_usage_error(make_site, port: str) -> None:
    site = make_site({"content/a.md": story()})
    result = subprocess.run(
        [sys.executable, str(REPO / "build.py"), "serve", "--port", port],
        cwd=site.root, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "must be 0-65535" in result.stderr and "Traceback" not in result.stderr


def test_a_page_open_in_a_real_browser_reloads_after_an_edit(running) -> None:
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (.ci/run installs it)")
        pytest.skip("Chromium is not installed here; .ci/run installs it")
    playwright_api = pytest.importorskip("playwright.sync_api")
    site, dev = running
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.goto(dev.url + "stories/a/")
        assert "First title" in page.inner_text("h1")
        page.wait_for_function("() => true")
        time.sleep(0.5)  # let the page open its event stream
        site.write("content/a.md", story(title="Edited in the browser", extra="topics: [AI]"))
        page.wait_for_function(
            "() => document.querySelector('h1').textContent.includes('Edited in the browser')",
            timeout=15000,
        )
        browser.close()
