"""Thumbnails: pictures on pages, files in the output, safe downloads, the cache, placeholders.

A local HTTP server on 127.0.0.1 plays the web (the sites allow private hosts for it, which
a real site does not); every failure must end as one warning and a placeholder, never as a
failed build. Files are checked by size, format and name, never by bytes.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lxml import etree
from PIL import ExifTags, Image

from broadsheet import images
from broadsheet.assemble import assemble_site
from broadsheet.cli import main
from broadsheet.config import load_config
from broadsheet.diagnostics import Diagnostics
from broadsheet.fetch import FetchFailed, FetchRules, check_target, is_public
from broadsheet.imagecache import PRUNE_AFTER_DAYS, ImageCache, RemoteRecord, url_key
from broadsheet.images import StoryViews, render_images
from broadsheet.stages import DiscardingSink, load_articles
from broadsheet.thumbnails import ImagePlan, crop_box, output_sizes
from broadsheet.urls import UrlBuilder

from .conftest import MiniSite, parse_html, story, wait_until

NAME = re.compile(r"^[0-9a-f]{20}-(\d+)x(\d+)\.(webp|jpg|svg)$")
FETCH_YAML = """\
title: Test Digest
base_url: https://example.org/
issues:
  epoch: 2020-01-06
images:
  allow_private_hosts: true   # the test server is on 127.0.0.1
  timeout: 0.5
  max_bytes: 300000
  max_pixels: 10000000
"""


# -- images made for the tests ------------------------------------------------------------


def photo(size: tuple[int, int] = (1200, 800), fmt: str = "JPEG", **save: object) -> bytes:
    """A smooth test picture: a diagonal blend of two colours."""
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").rotate(90).resize(size)
    blue = Image.new("L", size, 120)
    image = Image.merge("RGB", (red, green, blue))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def photo_with_gps() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestCam"
    exif[ExifTags.Base.Orientation] = 1
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({1: "N", 2: (51.0, 30.0, 1.0), 3: "W"})
    return photo(exif=exif, quality=90)


def sideways_png() -> bytes:
    """Stored 800x400, left half red and right half blue, EXIF orientation 6 (turn right):
    shown upright it is 400x800, red on top."""
    image = Image.new("RGB", (800, 400), (220, 20, 20))
    image.paste((20, 20, 220), (400, 0, 800, 400))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    return buffer.getvalue()


def png_bomb(width: int = 5000, height: int = 5000) -> bytes:
    """A PNG that claims 25 megapixels in a few bytes."""
    return raw_png(width, height, 8, 0, b"\x00" * 4096)


def raw_png(width: int, height: int, depth: int, colour: int, rows: bytes,
            *chunks: tuple[bytes, bytes]) -> bytes:
    """A PNG written by hand, for what Pillow does not write (16-bit RGB, lying headers):
    `rows` are the scanlines, each with its filter byte; `chunks` go before the data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    middle = b"".join(chunk(kind, data) for kind, data in chunks)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + middle
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# -- the test web server ------------------------------------------------------------------


class ImageServer:
    """What each path answers, how often it was asked, and the most requests at once."""

    def __init__(self) -> None:
        good = photo_with_gps()
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {
            "/good.jpg": (200, {"Content-Type": "image/jpeg"}, good),
            "/sideways.png": (200, {"Content-Type": "image/png"}, sideways_png()),
            "/missing.jpg": (404, {"Content-Type": "text/html"}, b"<h1>Not found</h1>"),
            "/huge.jpg": (200, {"Content-Type": "image/jpeg"}, b"\xff" * 400_000),
            "/loop.jpg": (302, {"Location": "/loop.jpg"}, b""),
            "/hop.jpg": (301, {"Location": "/good.jpg"}, b""),
            "/to-ftp.jpg": (302, {"Location": "ftp://127.0.0.1/x.jpg"}, b""),
            "/to-bracket.jpg": (302, {"Location": "http://[::1/x.jpg"}, b""),
            "/page.jpg": (200, {"Content-Type": "image/jpeg"}, b"<!doctype html><p>Hi</p>"),
            "/truncated.jpg": (200, {"Content-Type": "image/jpeg"}, good[: len(good) // 2]),
            "/bomb.png": (200, {"Content-Type": "image/png"}, png_bomb()),
            "/vector.svg": (200, {"Content-Type": "image/svg+xml"}, b"<svg/>"),
        }
        self.hits: Counter[str] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.delay = 0.0
        # trickled paths whose client hung up before the end: the bytes it had been sent
        self.cut: dict[str, int] = {}

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        with self.lock:
            self.hits[path] += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        finished = False
        try:
            time.sleep(self.delay)
            if path == "/slow.jpg":
                time.sleep(3)  # far beyond the site's 0.5 s timeout
            if path.startswith("/trickle"):
                with self.lock:
                    self.in_flight -= 1
                    finished = True
                sent = trickle(handler, headers_too=path == "/trickle-headers.jpg")
                if sent is not None:
                    with self.lock:
                        self.cut[path] = sent
                return
            status, headers, body = self.routes.get(
                path, (200, {"Content-Type": "image/jpeg"}, self.routes["/good.jpg"][2])
            )
            # Count the download as done before its last bytes go out: once the client has
            # them it starts the next one, possibly before this thread runs again.
            with self.lock:
                self.in_flight -= 1
                finished = True
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if not finished:
                with self.lock:
                    self.in_flight -= 1


TRICKLED_HEAD = b"Content-Type: image/jpeg\r\nContent-Length: 60\r\n\r\n"


def trickle(handler: http.server.BaseHTTPRequestHandler, headers_too: bool) -> int | None:
    """A slow loris: a byte every 50 ms, each well within any read timeout, 3 s in all.
    None when all was sent, else how many of the trickled bytes were before the client
    hung up (the headers' are counted with the body's when they trickle too)."""
    head = TRICKLED_HEAD
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n" + (b"" if headers_too else head))
    trickled = (head if headers_too else b"") + b"\xff" * 60
    for sent, byte in enumerate(trickled):
        try:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return sent
        time.sleep(0.05)
    return None


@pytest.fixture
def server() -> Iterator[tuple[ImageServer, str]]:
    images = ImageServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            images.answer(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield images, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def image_story(url: str, width: int | None = 1200, height: int | None = 800) -> str:
    """A story whose one image is `url` (line 6 of the file)."""
    size = f"\n    width: {width}\n    height: {height}" if width and height else ""
    return story(
        url=f"https://news.example.com/{zlib.crc32(url.encode())}",
        extra=f'images:\n  - url: "{url}"{size}\n    title: "The picture"',
    )


def numbered_story(n: int, extra: str) -> str:
    """Story n of a test site, with `extra` front matter (its images, its related items)."""
    return story(title=f"Story {n}", url=f"https://news.example.com/{n}", extra=extra)


# -- reading what a build made ------------------------------------------------------------


def slots(site: MiniSite, route: str) -> list[dict[str, object]]:
    """Every picture slot of a page: its <img> attributes and the srcsets offered."""
    found = []
    page = (site.output / route / "index.html").read_bytes()
    for div in parse_html(page).iter("div"):
        if "thumb" not in (div.get("class") or "").split():
            continue
        img = div.find(".//img")
        source = div.find(".//source")
        found.append(
            {
                "class": div.get("class"),
                "img": dict(img.attrib) if img is not None else None,
                "webp": source.get("srcset") if source is not None else None,
            }
        )
    return found


def srcset_files(site: MiniSite, srcset: str) -> list[tuple[Path, int]]:
    """(file in the output, width descriptor) for each candidate of a srcset."""
    found = []
    for candidate in srcset.split(","):
        url, descriptor = candidate.split()
        found.append((site.output / url.lstrip("/"), int(descriptor.rstrip("w"))))
    return found


def warnings_by_file(report) -> dict[str, str]:
    return {w.path: str(w) for w in report.warnings}


# -- pictures on pages --------------------------------------------------------------------


def test_a_local_image_becomes_a_responsive_picture(make_site) -> None:
    site = make_site({"content/a.md": image_story("img/a.jpg"), "content/img/a.jpg": photo()})
    report = site.build()
    assert report.warnings == []
    story_slot = slots(site, "stories/a")[0]
    img = story_slot["img"]
    assert (img["width"], img["height"], img["alt"]) == ("1200", "800", "The picture")
    assert img["fetchpriority"] == "high" and "loading" not in img  # the top of the page
    assert img["sizes"]
    for srcset, fmt in ((img["srcset"], "JPEG"), (story_slot["webp"], "WEBP")):
        files = srcset_files(site, srcset)
        assert [w for _, w in files] == [320, 640, 1200]  # 1280 would be wider than the source
        for path, width in files:
            match = NAME.match(path.name)
            assert match, path.name
            with Image.open(path) as thumb:
                assert thumb.format == fmt
                assert thumb.size == (width, round(width * 800 / 1200))
                assert thumb.size == (int(match[1]), int(match[2]))
    assert (site.output / img["src"].lstrip("/")).is_file()


def test_cards_are_cropped_to_the_card_shape_around_the_centre(make_site) -> None:
    source = Image.new("RGB", (1600, 1000), (128, 128, 128))
    source.paste((255, 0, 0), (0, 0, 1600, 50))  # bands that a centred 16:9 crop removes
    source.paste((255, 0, 0), (0, 950, 1600, 1000))
    buffer = io.BytesIO()
    source.save(buffer, "PNG")
    site = make_site(
        {
            "content/a.md": image_story("a.png", 1600, 1000),
            "content/a.png": buffer.getvalue(),
        }
    )
    site.build()
    card = next(s for s in slots(site, "") if "thumb--card" in s["class"])
    img = card["img"]
    assert (img["width"], img["height"]) == ("1600", "900")
    assert img["fetchpriority"] == "high"  # the lead story's card is at the top of the page
    for path, width in srcset_files(site, img["srcset"]):
        with Image.open(path) as thumb:
            assert thumb.size == (width, width * 9 // 16)
            top = thumb.convert("RGB").getpixel((thumb.width // 2, 0))
            assert abs(top[0] - 128) < 20, top  # grey: the red band was cropped away


def test_crop_geometry_is_centred_and_sizes_never_exceed_the_source() -> None:
    assert crop_box((1600, 1000), "crop-16x9") == (0.0, 50.0, 1600.0, 950.0)
    assert crop_box((1000, 1000), "crop-16x9") == (0.0, 218.75, 1000.0, 781.25)
    assert crop_box((1920, 800), "crop-16x9") == pytest.approx((248.89, 0, 1671.11, 800), abs=0.01)
    assert output_sizes((500, 300), "fit", (320, 640, 1280)) == [(320, 192), (500, 300)]
    assert output_sizes((200, 100), "fit", (320, 640)) == [(200, 100)]
    assert output_sizes((3000, 2000), "fit", (640, 320)) == [(320, 213), (640, 427)]


def test_card_aspect_and_widths_come_from_site_yaml(make_site) -> None:
    site_yaml = FETCH_YAML + "  widths: [200, 400]\n  card_aspect: '4:3'\n"
    site = make_site(
        {"content/a.md": image_story("a.jpg"), "content/a.jpg": photo()}, site_yaml=site_yaml
    )
    site.build()
    card = next(s for s in slots(site, "") if "thumb--card" in s["class"])
    assert (card["img"]["width"], card["img"]["height"]) == ("1067", "800")
    assert [w for _, w in srcset_files(site, card["webp"])] == [200, 400]


def test_alt_text_falls_back_to_the_story_title(make_site) -> None:
    text = story(title="Headline", extra='images:\n  - {url: "a.jpg", width: 1200, height: 800}')
    site = make_site({"content/a.md": text, "content/a.jpg": photo()})
    site.build()
    assert slots(site, "stories/a")[0]["img"]["alt"] == "Headline"


def test_a_page_links_only_thumbnails_that_exist_and_the_rest_are_not_in_output(make_site) -> None:
    site = make_site({"content/a.md": image_story("a.jpg"), "content/a.jpg": photo()})
    site.build()
    first = {p.name for p in (site.output / "thumbs").iterdir()}
    site.write("content/a.jpg", photo((1000, 700)))
    site.build()
    second = {p.name for p in (site.output / "thumbs").iterdir()}
    assert first and second and not first & second  # new bytes, new names; old ones gone


def test_feeds_enclose_the_largest_jpeg(make_site) -> None:
    site = make_site({"content/a.md": image_story("a.jpg"), "content/a.jpg": photo()})
    site.build()
    feed = (site.output / "feed.xml").read_text()
    enclosure = re.search(r'<enclosure url="([^"]+)" length="(\d+)" type="([^"]+)"', feed)
    assert enclosure, feed
    url, length, kind = enclosure.groups()
    assert url.startswith("https://example.org/thumbs/") and url.endswith("-1200x800.jpg")
    assert kind == "image/jpeg"
    assert int(length) == (site.output / url.removeprefix("https://example.org/")).stat().st_size
    media = "{http://search.yahoo.com/mrss/}"
    for name, entry_tag in (("feed.xml", "item"), ("atom.xml", "{http://www.w3.org/2005/Atom}entry")):
        entry = next(etree.parse(str(site.output / name)).iter(entry_tag))
        # The picture is the entry's thumbnail itself: a media:group of one is an error for
        # the W3C validator (a group holds alternatives).
        assert not list(entry.iter(f"{media}group")), name
        thumbnail = entry.find(f"{media}thumbnail")
        assert thumbnail is not None and thumbnail.get("url") == url, name


# -- sources and safety -------------------------------------------------------------------


def test_remote_images_each_fail_with_one_warning_and_the_build_finishes(make_site, server) -> None:
    _, base = server
    cases = {
        "good": ("/good.jpg", None),
        "sideways": ("/sideways.png", None),
        "hop": ("/hop.jpg", None),
        "missing": ("/missing.jpg", "HTTP 404 Not Found"),
        "slow": ("/slow.jpg", "timed out"),
        "huge": ("/huge.jpg", "too large"),
        "loop": ("/loop.jpg", "more than 3 redirects"),
        "ftp": ("/to-ftp.jpg", "ftp URL refused"),
        "bracket": ("/to-bracket.jpg", "HTTP 302 redirect to a malformed URL"),
        "page": ("/page.jpg", "not an image Pillow can read"),
        "truncated": ("/truncated.jpg", "truncated"),
        "bomb": ("/bomb.png", "5000x5000 pixels is over the 10,000,000-pixel limit"),
        "vector": ("/vector.svg", "SVG images are not supported"),
    }
    files = {f"content/{name}.md": image_story(base + path) for name, (path, _) in cases.items()}
    site = make_site(files, site_yaml=FETCH_YAML)
    report = site.build(offline=False)
    warned = warnings_by_file(report)
    assert len(report.warnings) == len(warned)  # one warning per broken image
    for name, (_, reason) in cases.items():
        shown = warned.get(f"content/{name}.md", "")
        if reason is None:
            assert not shown, shown
            continue
        assert f"content/{name}.md:6: warning: images[0].url: image not available: " in shown
        assert reason in shown and "placeholder" in shown
        slot = slots(site, f"stories/{name}")[0]
        assert "thumb--placeholder" in slot["class"] and slot["webp"] is None
        assert NAME.match(slot["img"]["src"].rsplit("/", 1)[1])
        assert (slot["img"]["width"], slot["img"]["height"]) == ("1200", "800")
        svg = site.output / slot["img"]["src"].lstrip("/")
        assert svg.read_bytes().startswith(b"<svg")
    assert report.images.failed == len(warned) and report.images.fetched == 6
    assert (site.output / "stories/good/index.html").is_file()


def test_damaged_and_oversized_local_images_are_named_for_what_they_are(make_site) -> None:
    """Pillow's messages vary in case ("Truncated File Read"), and past its own cap (about
    179 million pixels) its refusal quoted that cap: the warning quotes the site's."""
    files: dict[str, str | bytes] = {
        "content/cut.md": image_story("cut.jpg"),
        "content/cut.jpg": photo()[:100],
        "content/bomb.md": image_story("bomb.png"),
        "content/bomb.png": png_bomb(20000, 20000),
    }
    site = make_site(files, site_yaml=FETCH_YAML)
    warned = warnings_by_file(site.build())
    assert "truncated or damaged image (Truncated File Read)" in warned["content/cut.md"]
    assert ("400,000,000 pixels is over the 10,000,000-pixel limit (a decompression bomb?)"
            in warned["content/bomb.md"])


def test_thumbnails_carry_no_exif_and_are_turned_upright(make_site, server) -> None:
    images, base = server
    with Image.open(io.BytesIO(images.routes["/good.jpg"][2])) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the source has GPS data
    site = make_site(
        {
            "content/good.md": image_story(base + "/good.jpg"),
            "content/sideways.md": image_story(base + "/sideways.png", 400, 800),
        },
        site_yaml=FETCH_YAML,
    )
    site.build(offline=False)
    thumbs = sorted((site.output / "thumbs").iterdir())
    assert len(thumbs) >= 16
    for path in thumbs:
        data = path.read_bytes()
        assert b"Exif" not in data and b"TestCam" not in data, path.name
        with Image.open(path) as thumb:
            assert not thumb.getexif() and "icc_profile" not in thumb.info, path.name
    img = slots(site, "stories/sideways")[0]["img"]
    for path, width in srcset_files(site, img["srcset"]):
        with Image.open(path) as thumb:
            assert thumb.size == (width, width * 2)  # upright: taller than wide
            rgb = thumb.convert("RGB")
            assert rgb.getpixel((width // 2, 5))[0] > 150  # red on top
            assert rgb.getpixel((width // 2, thumb.height - 5))[2] > 150  # blue below


def keyed_png(mode: str, key: object, left: object, right: object) -> bytes:
    """A 20x10 PNG whose left half is `left` and right half `right`, with the tRNS colour key
    `key` (in the file's own bit depth)."""
    if mode == "RGB;16":  # Pillow does not write 16-bit RGB
        row = b"\x00" + struct.pack(">HHH", *left) * 10 + struct.pack(">HHH", *right) * 10
        return raw_png(20, 10, 16, 2, row * 10, (b"tRNS", struct.pack(">HHH", *key)))
    image = Image.new("I" if mode == "I;16" else mode, (20, 10), left)  # type: ignore[arg-type]
    image.paste(right, (10, 0, 20, 10))  # type: ignore[arg-type]
    if mode == "P":
        image.putpalette([0, 0, 0] + [200] * 765)
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, "PNG", transparency=key)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "mode, key, left, right, shown",
    [
        ("L", 0, 0, 200, 200),
        ("RGB", (0, 0, 0), (0, 0, 0), (200, 200, 200), 200),
        ("P", 0, 0, 1, 200),
        ("1", 0, 0, 1, 255),
        # 16-bit: only the key itself is transparent, not the 256 others of its 8-bit grey
        ("I;16", 40000, 40000, 40001, 155),
        ("RGB;16", (40000,) * 3, (40000,) * 3, (50000,) * 3, 195),
    ],
    ids=["grey", "rgb", "palette", "1-bit", "16-bit-grey", "16-bit-rgb"],
)
def test_a_transparent_colour_key_is_flattened_onto_white(
    mode: str, key: object, left: object, right: object, shown: int
) -> None:
    from broadsheet.imaging import to_srgb

    with Image.open(io.BytesIO(keyed_png(mode, key, left, right))) as source:
        flat = to_srgb(source)
    assert flat.mode == "RGB" and flat.info == {}
    assert flat.getpixel((2, 2)) == (255, 255, 255)  # the keyed colour: transparent
    assert flat.getpixel((15, 5)) == (shown, shown, shown)


def test_a_very_tall_image_is_shown_with_jpeg_where_webp_cannot_go(make_site) -> None:
    """WebP stops at 16383 pixels a side: the largest story size of a tall infographic is
    JPEG only, the rest as usual."""
    buffer = io.BytesIO()
    Image.new("L", (1300, 17000), 90).save(buffer, "PNG")
    site = make_site({"content/a.md": image_story("a.png", 1300, 17000),
                      "content/a.png": buffer.getvalue()})
    assert site.build().warnings == []
    story_slot = slots(site, "stories/a")[0]
    assert "thumb--placeholder" not in story_slot["class"]
    jpegs = srcset_files(site, story_slot["img"]["srcset"])
    assert [w for _, w in jpegs] == [320, 640, 1280]  # 1280x16738
    assert [w for _, w in srcset_files(site, story_slot["webp"])] == [320, 640]
    for path, _ in jpegs:
        assert path.is_file()


def test_a_strip_too_tall_for_jpeg_is_made_as_wide_as_fits(make_site) -> None:
    """JPEG stops at 65500 pixels a side: a 12x70000 strip's story picture is 11 pixels
    wide (JPEG only: WebP stops sooner) rather than no picture at all."""
    buffer = io.BytesIO()
    Image.new("L", (12, 70000), 90).save(buffer, "PNG")
    site = make_site({"content/a.md": image_story("a.png", None, None),
                      "content/a.png": buffer.getvalue()})
    assert site.build().warnings == []
    story_slot = slots(site, "stories/a")[0]
    assert story_slot["webp"] is None
    [(path, width)] = srcset_files(site, story_slot["img"]["srcset"])
    with Image.open(path) as thumb:
        assert (width, thumb.size) == (11, (11, 64167))


def test_an_encoding_failure_is_not_called_a_decoding_one(tmp_path, monkeypatch) -> None:
    """The source decoded; what failed was making a thumbnail of it."""
    from broadsheet import imaging

    data = photo((400, 300))
    (tmp_path / "a.jpg").write_bytes(data)

    def refuse(image: Image.Image, fmt: str, quality: int) -> bytes:
        raise OSError("encoder error -2")

    monkeypatch.setattr(imaging, "encode", refuse)
    job = imaging.ImageJob(str(tmp_path / "a.jpg"), hashlib.sha256(data).hexdigest(), ("fit",),
                           (320,), 80, 10_000_000, 1_000_000, str(tmp_path))
    result = imaging.make_thumbnails(job)
    assert result.info is None and result.decoded == 1
    assert result.problem == "cannot be encoded as JPEG 320x240 (encoder error -2)"


def test_a_refusal_does_not_outlive_the_limit_behind_it(make_site) -> None:
    """As max_pixels goes down, back up and down again, each incremental build shows what a
    clean one does: neither a refusal nor a decode outlives the limit it was made under."""
    files: dict[str, str | bytes] = {"content/a.md": image_story("a.jpg", 800, 600),
                                     "content/a.jpg": photo((800, 600))}
    site = make_site(files)
    for n, limit in enumerate(["100000", "10000000", "100000"]):
        site_yaml = FETCH_YAML.replace("10000000", limit)
        site.write("site.yaml", site_yaml)
        refused = "over the 100,000-pixel limit" in str(site.build().warnings)
        assert refused == (limit == "100000")
        clean = make_site(files, site_yaml=site_yaml, name=f"clean-{n}")
        clean.build()
        assert site.files() == clean.files()


def test_a_download_follows_max_bytes_both_ways(make_site, server) -> None:
    """A download refused as too large is tried again under a higher images.max_bytes, and
    one kept from before is refused under a lower one, as a clean build would."""
    images, base = server
    size = len(images.routes["/good.jpg"][2])
    files: dict[str, str | bytes] = {"content/a.md": image_story(base + "/good.jpg")}
    site = make_site(files)
    for n, limit in enumerate([size - 1, 300000, size - 1]):
        site_yaml = FETCH_YAML.replace("300000", str(limit))
        site.write("site.yaml", site_yaml)
        refused = "too large" in str(site.build(offline=False).warnings)
        assert refused == (limit < size)
        clean = make_site(files, site_yaml=site_yaml, name=f"clean-{n}")
        clean.build(offline=False)
        assert site.files() == clean.files()


@pytest.mark.parametrize("host", ["127.0.0.1", "intranet.example"])
def test_a_download_from_a_private_host_follows_allow_private_hosts(
    make_site, server, monkeypatch, host
) -> None:
    """An image downloaded while images.allow_private_hosts was on is refused once it is
    off, as a clean build refuses it (a cached copy would show what the setting forbids),
    and shown again once it is back on. A host name is judged by the addresses it had
    then, an IP literal by itself."""
    import socket

    from broadsheet import fetch

    _, base = server
    real_lookup = socket.getaddrinfo

    def lookup(name: str, *args: object, **kwargs: object) -> object:
        return real_lookup("127.0.0.1" if name == "intranet.example" else name,
                           *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", lookup)
    url = base.replace("127.0.0.1", host) + "/good.jpg"
    files: dict[str, str | bytes] = {"content/a.md": image_story(url)}
    site = make_site(files)
    for n, allowed in enumerate([True, False, False, True, False]):
        site_yaml = FETCH_YAML.replace("allow_private_hosts: true",
                                       f"allow_private_hosts: {str(allowed).lower()}")
        site.write("site.yaml", site_yaml)
        site.build(offline=False)
        shown = "thumb--placeholder" not in str(slots(site, "stories/a")[0]["class"])
        assert shown == allowed
        clean = make_site(files, site_yaml=site_yaml, name=f"clean-{n}")
        warnings = str(clean.build(offline=False).warnings)
        assert ("private, loopback or link-local" in warnings) == (not allowed)
        assert site.files() == clean.files()


def test_a_download_kept_from_before_is_judged_private_by_its_url() -> None:
    """Records written before they said whether the download was private: an IP literal
    or localhost is judged without a lookup; other names are taken as public."""
    from broadsheet.images import from_private_host

    for url, private in [("http://127.0.0.1:8000/a.jpg", True), ("http://[::1]/a.jpg", True),
                         ("http://10.1.2.3/a.jpg", True), ("http://localhost/a.jpg", True),
                         ("http://93.184.215.14/a.jpg", False),
                         ("https://cdn.example.com/a.jpg", False)]:
        assert from_private_host(RemoteRecord(url, "d" * 64, "image/jpeg")) == private, url
    assert from_private_host(RemoteRecord("https://cdn.example.com/a.jpg", private=True))
    assert not from_private_host(RemoteRecord("http://127.0.0.1/a.jpg", private=False))


@pytest.mark.parametrize("trouble", ["changed", "memory"])
def test_a_failure_of_the_moment_is_not_remembered(make_site, monkeypatch, trouble) -> None:
    """A file that changed while the build ran, or memory that ran out, says nothing of the
    image's bytes: the next build decodes them again (a file changed back to bytes once
    caught mid-change stayed a placeholder)."""
    from broadsheet import imaging

    jpeg = photo((800, 600))
    site = make_site({"content/a.md": image_story("a.jpg", 800, 600), "content/a.jpg": jpeg})
    make_job = images.make_job

    def changing(*args: object) -> object:
        site.write("content/a.jpg", photo((640, 480)))  # after it was hashed
        return make_job(*args)  # type: ignore[arg-type]

    def exhausted(*args: object) -> bytes:
        raise MemoryError

    if trouble == "changed":
        monkeypatch.setattr(images, "make_job", changing)
    else:
        monkeypatch.setattr(imaging, "read_source", exhausted)
    said = str(site.build().warnings)
    assert "build again" in said and ("changed" in said or "memory" in said)
    monkeypatch.undo()
    site.write("content/a.jpg", jpeg)
    assert site.build().warnings == []
    assert "thumb--placeholder" not in slots(site, "stories/a")[0]["class"]


def test_refetch_decodes_again_a_local_image_that_failed(make_site) -> None:
    """--refetch tries every remembered failure again, local images' too (say a Pillow
    upgrade now reads them)."""
    jpeg = photo((800, 600))
    site = make_site({"content/a.md": image_story("a.jpg", 800, 600), "content/a.jpg": jpeg},
                     site_yaml=FETCH_YAML)
    site.build()
    index_path = site.root / ".cache/images/index.json"
    index = json.loads(index_path.read_text())
    index["sources"][hashlib.sha256(jpeg).hexdigest()] = {
        "problem": "cannot be decoded (a bug since fixed)", "limits": [10000000, 300000]}
    index_path.write_text(json.dumps(index))
    assert "a bug since fixed" in str(site.build().warnings)
    assert site.build(refetch=True).warnings == []
    assert site.build().warnings == []
    assert "thumb--placeholder" not in slots(site, "stories/a")[0]["class"]


def test_parts_files_of_killed_builds_are_removed(make_site) -> None:
    """A build killed by SIGTERM leaves its temporary parts file; a later build removes it,
    but not one whose process is still running."""
    site = make_site({"content/a.md": image_story("a.jpg"), "content/a.jpg": photo()})
    site.build()
    folder = next(site.root.rglob(".cache/build"))
    dead = folder / f".image-parts.pickle.{2**22 + 1}"  # above any pid_max: never running
    alive = folder / f".image-parts.pickle.{os.getppid()}"
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    site.write("content/b.md", image_story("a.jpg").replace("news.example.com/", "n.example/"))
    site.build()
    assert not dead.exists() and alive.exists()
    alive.unlink()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times: /proc")
def test_a_parts_file_whose_pid_was_reused_is_removed(make_site) -> None:
    """A killed build's pid may belong to another process since: one that started after the
    file was written did not write it, and the file goes all the same."""
    site = make_site({"content/a.md": image_story("a.jpg"), "content/a.jpg": photo()})
    site.build()
    reused = next(site.root.rglob(".cache/build")) / f".image-parts.pickle.{os.getppid()}"
    reused.write_bytes(b"x")
    os.utime(reused, (1e9, 1e9))  # 2001: long before the process that has that pid now
    site.write("content/b.md", image_story("a.jpg").replace("news.example.com/", "n.example/"))
    site.build()
    assert not reused.exists()


def test_cmyk_and_transparent_sources_become_plain_rgb(make_site) -> None:
    cmyk = io.BytesIO()
    Image.new("CMYK", (800, 500), (0, 200, 200, 0)).save(cmyk, "JPEG")
    clear = io.BytesIO()
    Image.new("RGBA", (800, 500), (0, 0, 255, 0)).save(clear, "PNG")
    site = make_site(
        {
            "content/a.md": image_story("a.jpg", 800, 500),
            "content/a.jpg": cmyk.getvalue(),
            "content/b.md": image_story("b.png", 800, 500),
            "content/b.png": clear.getvalue(),
        }
    )
    assert site.build().warnings == []
    for name, colour in (("a", (255, 55, 55)), ("b", (255, 255, 255))):  # red; white backing
        for path, _ in srcset_files(site, slots(site, f"stories/{name}")[0]["img"]["srcset"]):
            with Image.open(path) as thumb:
                assert thumb.mode == "RGB"
                pixel = thumb.getpixel((10, 10))
                assert all(abs(a - b) < 40 for a, b in zip(pixel, colour, strict=True)), pixel


def test_a_second_build_fetches_and_decodes_nothing(make_site, server, monkeypatch) -> None:
    images, base = server
    site = make_site(
        {
            "content/good.md": image_story(base + "/good.jpg"),
            "content/sideways.md": image_story(base + "/sideways.png", 400, 800),
            "content/missing.md": image_story(base + "/missing.jpg"),
            "content/local.md": image_story("local.jpg"),
            "content/local.jpg": photo((900, 600)),
        },
        site_yaml=FETCH_YAML,
    )
    first = site.build(offline=False)
    assert first.images.decoded >= 3 and first.images.made > 0
    hits = dict(images.hits)
    outputs = {p.name: p.stat().st_mtime_ns for p in (site.output / "thumbs").iterdir()}
    opened: list[object] = []
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or pytest.fail("decoded"))
    second = site.build(offline=False)
    assert (second.images.decoded, second.images.made, opened) == (0, 0, [])
    assert dict(images.hits) == hits  # the 404 is remembered too
    assert [str(w) for w in second.warnings] == [  # named in full once, then one line
        ".cache/images: warning: 1 image is still a placeholder: the download failed in an "
        "earlier build, which named each one; --refetch tries again"]
    assert {p.name: p.stat().st_mtime_ns for p in (site.output / "thumbs").iterdir()} == outputs
    monkeypatch.undo()
    site.build(offline=False, refetch=True)
    assert images.hits["/missing.jpg"] == hits["/missing.jpg"] + 1
    assert images.hits["/good.jpg"] == hits["/good.jpg"]


def test_offline_uses_only_the_cache(make_site, server) -> None:
    images, base = server
    site = make_site({"content/good.md": image_story(base + "/good.jpg")}, site_yaml=FETCH_YAML)
    site.build(offline=False)
    site.write("content/new.md", image_story(base + "/new.jpg"))
    assert main(["build", "--site", str(site.root), "--offline", "-q"]) == 0
    report = site.build(offline=True)
    assert images.hits["/new.jpg"] == 0 and images.hits["/good.jpg"] == 1
    assert [str(w) for w in report.warnings] == [
        ".cache/images: warning: 1 remote image is a placeholder: not downloaded yet, and "
        "fetching is off (--offline or images.fetch: false)"]
    assert "thumb--placeholder" not in slots(site, "stories/good")[0]["class"]
    site.write("site.yaml", FETCH_YAML + "  fetch: false\n")
    assert "fetching is off" in str(site.build(offline=False).warnings[0])
    assert images.hits["/new.jpg"] == 0


def test_placeholders_of_one_size_share_a_few_files_whatever_the_number_of_images(
    make_site,
) -> None:
    """One file per size and tint, not per image: a site of 150,000 remote images wrote
    13,000 placeholder files (each build, and each reader's browser fetched them all)."""
    files = {f"content/s{n}.md": image_story(f"https://img.example.com/{n}.jpg")
             for n in range(120)}
    site = make_site(files)
    site.build(offline=True)
    shown = {slot["img"]["src"] for n in range(120)  # type: ignore[index]
             for slot in slots(site, f"stories/s{n}")}
    assert 1 < len(shown) <= 24  # the tints still vary from image to image
    assert all((site.output / src.lstrip("/")).is_file() for src in shown)
    assert len(list((site.output / "thumbs").glob("*.svg"))) <= 2 * 24  # page and card sizes


def test_private_addresses_are_refused_unless_the_site_allows_them(make_site, server) -> None:
    images, base = server
    site = make_site({"content/good.md": image_story(base + "/good.jpg")})
    report = site.build(offline=False)
    assert "127.0.0.1 is a private, loopback or link-local address" in str(report.warnings[0])
    assert images.hits["/good.jpg"] == 0
    site.write("site.yaml", FETCH_YAML)  # the refusal is not remembered past the setting
    assert site.build(offline=False).warnings == []
    assert images.hits["/good.jpg"] == 1


def test_downloads_from_one_host_are_limited_to_two_at_a_time(make_site, server) -> None:
    images, base = server
    images.delay = 0.2
    files = {f"content/s{i}.md": image_story(f"{base}/p{i}.jpg") for i in range(6)}
    site = make_site(files, site_yaml=FETCH_YAML)
    assert site.build(offline=False).warnings == []
    assert images.most_in_flight == 2


def test_a_host_that_stops_answering_is_not_asked_for_all_its_images(make_site, server) -> None:
    """Each download of a host that has gone quiet waits the whole timeout: after a few in a
    row its other images are not tried in this build (remembered as failed, like the ones
    that timed out), so a large site whose CDN is down does not build for hours."""
    from broadsheet.images import PER_HOST, UNANSWERED_LIMIT

    images, base = server
    images.delay = 2.0  # beyond the site's 0.5 s timeout: every download times out
    files = {f"content/s{i}.md": image_story(f"{base}/q{i}.jpg") for i in range(12)}
    site = make_site(files, site_yaml=FETCH_YAML)
    report = site.build(offline=False)
    asked = sum(images.hits.values())
    assert asked <= UNANSWERED_LIMIT + PER_HOST - 1, images.hits
    text = "\n".join(str(w) for w in report.warnings)
    assert text.count("timed out") == asked, text  # one warning each, then one summary line
    assert f"{12 - asked} more images from 127.0.0.1 not tried: it left 3 downloads" in text
    assert len(report.warnings) == asked + 1


def test_a_server_that_trickles_bytes_is_cut_off_at_the_deadline(make_site, server) -> None:
    """Each byte comes well within the read timeout, so only the overall deadline (3 x
    timeout, status line and headers included) ends such downloads."""
    images, base = server
    files = {"content/body.md": image_story(f"{base}/trickle.jpg"),
             "content/head.md": image_story(f"{base}/trickle-headers.jpg")}
    site = make_site(files, site_yaml=FETCH_YAML.replace("timeout: 0.5", "timeout: 0.2"))
    report = site.build(offline=False)
    # Hung up before the headers were all there (and the body, for the other): not after
    # waiting them out and then judging.
    assert wait_until(lambda: len(images.cut) == 2)
    assert images.cut["/trickle-headers.jpg"] < len(TRICKLED_HEAD)
    assert images.cut["/trickle.jpg"] < 60
    warned = warnings_by_file(report)
    for name in ("body", "head"):
        assert "too slow (not finished within 0.6 s)" in warned[f"content/{name}.md"]


def test_a_host_too_slow_to_finish_counts_as_unanswered(make_site, server) -> None:
    """A host that trickles every image is as much a stalled host as one that never
    answers: after a few downloads in a row cut at the deadline, its other images are not
    tried (each would hold the build for the whole deadline)."""
    from broadsheet.images import PER_HOST, UNANSWERED_LIMIT

    images, base = server
    files = {f"content/s{i}.md": image_story(f"{base}/trickle-{i}.jpg") for i in range(8)}
    site = make_site(files, site_yaml=FETCH_YAML.replace("timeout: 0.5", "timeout: 0.2"))
    report = site.build(offline=False)
    asked = sum(images.hits.values())
    assert asked <= UNANSWERED_LIMIT + PER_HOST - 1, images.hits
    text = "\n".join(str(w) for w in report.warnings)
    slow = text.count("too slow (not finished within 0.6 s)")
    assert slow and slow + text.count("timed out") == asked, text  # a loaded machine's gap
    assert f"{8 - asked} more images from 127.0.0.1 not tried" in text


def test_an_imported_feed_that_trickles_is_cut_off_at_the_deadline(server) -> None:
    """`broadsheet import` downloads through the same guarded reader as images."""
    from broadsheet.fetch import Unanswered, fetch_document

    images, base = server
    rules = FetchRules(timeout=0.2, allow_private_hosts=True)
    for path in ("/trickle.jpg", "/trickle-headers.jpg"):
        with pytest.raises(Unanswered, match=r"too slow \(not finished within 0\.6 s\)"):
            fetch_document(base + path, rules, accept="*/*", content_types=("image/jpeg",))
        assert wait_until(lambda path=path: path in images.cut)  # hung up, not waited out
        assert images.cut[path] < (len(TRICKLED_HEAD) if "headers" in path else 60)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "192.168.0.1",
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "224.0.0.1",
        "0.0.0.0",
        "fd00::1",
    ],
)
def test_special_addresses_are_not_public(address: str) -> None:
    assert not is_public(address)


def test_only_http_urls_to_public_hosts_are_fetched() -> None:
    assert is_public("93.184.215.14") and is_public("2606:4700::6810:84e5")
    rules = FetchRules()
    for url, reason in [
        ("file:///etc/passwd", "file URL refused"),
        ("gopher://example.com/", "gopher URL refused"),
        ("http://user:pw@example.com/a.jpg", "user name or password"),
        ("http://127.0.0.1/a.jpg", "private, loopback or link-local"),
        ("http://localhost/a.jpg", "private, loopback or link-local"),
    ]:
        with pytest.raises(FetchFailed, match=reason):
            check_target(url, rules)


def test_each_host_is_looked_up_once_per_set_of_rules(monkeypatch) -> None:
    """A site shows hundreds of images from one host: one DNS query serves them all, a failed
    one too (a resolver that stalled on parallel queries made every image wait again: 200
    images of an unresolvable host took 36 s). The address checks still apply every time."""
    import socket

    from broadsheet import fetch

    calls: list[str] = []

    def lookup(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        calls.append(host)
        if host == "gone.example":
            raise socket.gaierror(-2, "Name or service not known")
        address = "10.0.0.7" if host == "intranet.example" else "93.184.215.14"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", lookup)
    rules = FetchRules()
    for n in range(5):
        assert check_target(f"https://cdn.example/{n}.jpg", rules).address == "93.184.215.14"
        with pytest.raises(FetchFailed, match=r"cannot resolve gone\.example"):
            check_target(f"https://gone.example/{n}.jpg", rules)
        with pytest.raises(FetchFailed, match="private, loopback or link-local"):
            check_target(f"https://intranet.example/{n}.jpg", rules)
    assert sorted(calls) == ["cdn.example", "gone.example", "intranet.example"]
    check_target("https://cdn.example/x.jpg", FetchRules())  # other rules (another build)
    assert len(calls) == 4


def test_a_name_server_that_never_answers_does_not_hold_the_build(make_site, monkeypatch
                                                                   ) -> None:
    """getaddrinfo cannot be interrupted and has no timeout of its own: a lookup that hangs
    ends the download as unanswered, named in its warning, and after a few such downloads
    the host's other images are not tried, as with a host that does not answer."""
    import socket

    from broadsheet import fetch
    from broadsheet.images import PER_HOST, UNANSWERED_LIMIT

    real_lookup, release, asked = socket.getaddrinfo, threading.Event(), Counter[str]()

    def lookup(host: str, *args: object, **kwargs: object) -> object:
        if host != "stalled.example":
            return real_lookup(host, *args, **kwargs)  # type: ignore[arg-type]
        asked[host] += 1
        # A resolver that does not answer until the test is over (or, so that the code of
        # before fails instead of hanging, for far longer than the 0.2 s the site allows).
        release.wait(5)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(fetch.socket, "getaddrinfo", lookup)
    files = {f"content/s{i}.md": image_story(f"http://stalled.example/{i}.jpg")
             for i in range(8)}
    site = make_site(files, site_yaml=FETCH_YAML.replace("timeout: 0.5", "timeout: 0.2"))
    try:
        report = site.build(offline=False)
    finally:
        release.set()
    warned = warnings_by_file(report)
    unanswered = [path for path, text in warned.items()
                  if "cannot resolve stalled.example (the name server did not answer within "
                     "0.2 s)" in text]
    assert UNANSWERED_LIMIT <= len(unanswered) <= UNANSWERED_LIMIT + PER_HOST - 1, warned
    assert all(f"{path}:6: warning: images[0].url: image not available" in warned[path]
               for path in unanswered), warned
    assert (f"{8 - len(unanswered)} more images from stalled.example not tried"
            in warned[".cache/images"])
    assert asked["stalled.example"] == 1  # one lookup, however many images wait for it
    assert all("thumb--placeholder" in slot["class"]  # type: ignore[operator]
               for i in range(8) for slot in slots(site, f"stories/s{i}"))


def test_a_host_that_cannot_be_reached_is_remembered_for_the_day_not_url_by_url(
        make_site, server, monkeypatch) -> None:
    """Offline, no host name resolves. A large site's first build then left a record and a
    warning for every image (14,213 warnings at 1,000 stories), and once back online its
    images stayed placeholders until --refetch. Now the host is named once, its other
    images are not tried, it is remembered for the day only, and tried again after."""
    import socket

    from broadsheet import config as config_module
    from broadsheet import fetch, imagecache
    from broadsheet.images import PER_HOST

    _, base = server
    port = urlsplit(base).port
    online, asked, real_lookup = [False], Counter[str](), socket.getaddrinfo

    def lookup(host: str, *args: object, **kwargs: object) -> object:
        if host != "cdn.example":
            return real_lookup(host, *args, **kwargs)  # type: ignore[arg-type]
        asked[host] += 1
        if not online[0]:
            raise socket.gaierror(-2, "Name or service not known")
        return real_lookup("127.0.0.1", *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", lookup)
    files = {f"content/s{i}.md": image_story(f"http://cdn.example:{port}/p{i}.jpg")
             for i in range(8)}
    site = make_site(files, site_yaml=FETCH_YAML)
    report = site.build(offline=False)
    named = [w for w in report.warnings if w.path.startswith("content/")]
    assert 1 <= len(named) <= PER_HOST, report.warnings
    assert all(":6: warning: images[0].url: image not available: cannot resolve cdn.example "
               "(Name or service not known)" in str(w) for w in named)
    summary = [str(w) for w in report.warnings if w.path == ".cache/images"]
    assert summary == [f".cache/images: warning: {8 - len(named)} more images from "
                       "cdn.example not tried: cannot resolve cdn.example (Name or service "
                       "not known) in this build; the first build of another day tries "
                       "again, or --refetch"]
    assert not (site.root / ".cache/images/remote").exists()  # nothing kept URL by URL
    assert asked["cdn.example"] == 1

    site.write("content/other.md", story(title="Another story"))  # a build that looks again
    past = time.time() - 60  # and then a build that may find nothing changed
    for path in site.root.rglob("*"):
        os.utime(path, (past, past))
    again = site.build(offline=False)
    assert [str(w) for w in again.warnings] == [
        ".cache/images: warning: 8 images from cdn.example are placeholders: cannot resolve "
        "cdn.example (Name or service not known) in an earlier build today; the first build "
        "of another day tries again, or --refetch"]
    assert asked["cdn.example"] == 1  # not asked again today

    class Tomorrow(date):
        @classmethod
        def today(cls) -> date:
            return date.today() + timedelta(days=1)

    online[0] = True
    assert site.build(offline=False).nothing_changed  # the same day
    for module in (config_module, imagecache, images):
        monkeypatch.setattr(module, "date", Tomorrow)
    tomorrow = site.build(offline=False)  # nothing changed, but it is another day
    assert tomorrow.warnings == []
    assert asked["cdn.example"] == 2
    assert all("thumb--placeholder" not in slot["class"]  # type: ignore[operator]
               for i in range(8) for slot in slots(site, f"stories/s{i}"))
    assert [p.name for p in (site.root / ".cache/images").glob("unreachable-*")] == []


def test_when_no_host_name_resolves_the_other_hosts_are_not_asked(make_site, monkeypatch
                                                                   ) -> None:
    """Offline, every outlet's name fails in turn, each after the resolver gives up (seconds
    each, behind some resolvers): once the first few have failed and none resolved, the
    other hosts are not asked in this build, and are told of in one line."""
    import socket

    from broadsheet import fetch
    from broadsheet.fetch import NO_NETWORK_AFTER
    from broadsheet.images import FETCH_THREADS

    asked = Counter[str]()

    def lookup(host: str, *args: object, **kwargs: object) -> object:
        asked[host] += 1
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(fetch.socket, "getaddrinfo", lookup)
    hosts = 3 * NO_NETWORK_AFTER
    files = {f"content/s{i}.md": image_story(f"https://cdn{i}.example/{i}.jpg")
             for i in range(hosts)}
    site = make_site(files, site_yaml=FETCH_YAML)
    report = site.build(offline=False)
    assert NO_NETWORK_AFTER <= len(asked) <= NO_NETWORK_AFTER + FETCH_THREADS - 1, asked
    text = [str(w) for w in report.warnings]
    assert sum("image not available: cannot resolve" in line for line in text) == len(asked)
    assert text[-1] == (
        f".cache/images: warning: {hosts - len(asked)} more images from {hosts - len(asked)} "
        f"hosts not tried: no host name could be resolved (the first {NO_NETWORK_AFTER} tried "
        "all failed: the network seems to be down) in this build; the first build of another "
        "day tries again, or --refetch")
    assert len(text) == len(asked) + 1

    site.write("content/other.md", story(title="Another story"))  # the stage looks again
    again = [str(w) for w in site.build(offline=False).warnings]
    assert len(asked) == sum(asked.values())  # none asked again today
    assert len(again) == len(asked) + 1  # a line for each host asked, one for the others
    assert (
        f".cache/images: warning: {hosts - len(asked)} images from {hosts - len(asked)} hosts "
        f"are placeholders: no host name could be resolved (the first {NO_NETWORK_AFTER} tried "
        "all failed: the network seems to be down) in an earlier build today; the first "
        "build of another day tries again, or --refetch") in again


def test_a_host_that_resolves_to_a_private_address_is_refused_as_a_host(make_site,
                                                                        monkeypatch) -> None:
    """Behind a captive portal every name resolves to the portal's private address: each
    image was refused and remembered as failed one by one (until --refetch), each with a
    warning. The refusal is the host's: named once, remembered for the day."""
    import socket

    from broadsheet import fetch
    from broadsheet.images import PER_HOST

    def lookup(host: str, port: int, *args: object, **kwargs: object) -> object:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port))]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", lookup)
    files = {f"content/s{i}.md": image_story(f"https://cdn.example/{i}.jpg") for i in range(6)}
    site = make_site(files, site_yaml=FETCH_YAML.replace("allow_private_hosts: true",
                                                         "allow_private_hosts: false"))
    text = [str(w) for w in site.build(offline=False).warnings]
    named = sum("cdn.example is a private, loopback or link-local address (10.0.0.1)" in line
                for line in text if line.startswith("content/"))
    assert 1 <= named <= PER_HOST and len(text) == named + 1, text
    assert text[-1].startswith(f".cache/images: warning: {6 - named} more images from "
                               "cdn.example not tried: cdn.example is a private")
    assert not (site.root / ".cache/images/remote").exists()


def test_a_redirect_to_a_host_that_cannot_be_reached_is_remembered_with_its_url(
        make_site, server) -> None:
    """The host that failed is the redirect's, not the URL's: the day's record of it does
    not settle the URL, so the failure is kept with the URL, or every build asked again."""
    import socket

    images, base = server
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    images.routes["/moved.jpg"] = (302, {"Location": f"http://localhost:{port}/x.jpg"}, b"")
    site = make_site({"content/a.md": image_story(base + "/moved.jpg")}, site_yaml=FETCH_YAML)
    first = site.build(offline=False)
    assert "cannot connect to localhost (Connection refused)" in str(first.warnings)
    site.write("content/b.md", story(title="Another story"))  # the stage looks again
    again = site.build(offline=False)
    assert images.hits["/moved.jpg"] == 1
    assert "1 image is still a placeholder" in str(again.warnings)


def test_a_host_that_refuses_connections_is_not_asked_for_all_its_images(make_site) -> None:
    """Nothing listens at the address: every image of the host would fail the same way."""
    import socket

    from broadsheet.images import PER_HOST

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    files = {f"content/s{i}.md": image_story(f"http://127.0.0.1:{port}/r{i}.jpg")
             for i in range(6)}
    site = make_site(files, site_yaml=FETCH_YAML)
    report = site.build(offline=False)
    text = "\n".join(str(w) for w in report.warnings)
    named = text.count("image not available: cannot connect to 127.0.0.1 (Connection refused)")
    assert 1 <= named <= PER_HOST, text
    assert (f"{6 - named} more images from 127.0.0.1 not tried: cannot connect to 127.0.0.1 "
            "(Connection refused) in this build" in text)
    assert len(report.warnings) == named + 1


def test_local_images_are_found_next_to_the_story_or_under_content(make_site) -> None:
    site = make_site(
        {
            "content/2020/a.md": image_story("pics/a.jpg"),  # content/pics/a.jpg
            "content/pics/a.jpg": photo(),
            "content/2020/b.md": image_story("b.jpg"),  # content/2020/b.jpg
            "content/2020/b.jpg": photo(),
            "content/2020/c.md": image_story("gone.jpg"),
        }
    )
    report = site.build()
    assert [w.path for w in report.warnings] == ["content/2020/c.md"]
    assert "no such file" in str(report.warnings[0])
    assert "thumb--placeholder" not in slots(site, "stories/a")[0]["class"]
    assert "thumb--placeholder" not in slots(site, "stories/b")[0]["class"]


def test_a_local_path_that_escapes_through_a_symlink_is_refused(make_site, tmp_path) -> None:
    secret = tmp_path / "outside.jpg"
    secret.write_bytes(photo())
    site = make_site({"content/a.md": image_story("sneaky.jpg")})
    (site.root / "content" / "sneaky.jpg").symlink_to(secret)
    report = site.build()
    assert "leads outside the site folder" in str(report.warnings[0])
    assert not (site.output / "thumbs").exists() or all(
        p.suffix == ".svg" for p in (site.output / "thumbs").iterdir()
    )


def test_related_coverage_shows_its_first_image_as_a_card(make_site) -> None:
    text = story(
        extra="""
        related:
          - title: Elsewhere
            webUrl: "https://other.example.com/x"
            images:
              - {url: "r.jpg", width: 1200, height: 800}
              - {url: "never-used.jpg"}
          - title: Broken
            webUrl: "https://third.example.com/y"
            images:
              - {url: "gone.jpg", width: 1200, height: 800}
        """
    )
    site = make_site({"content/a.md": text, "content/r.jpg": photo()})
    report = site.build()
    assert [str(w) for w in report.warnings] == [
        "content/a.md:14: warning: related[1].images[0].url: image not available: no such file "
        "(looked in content/); showing a placeholder"
    ]
    cards = slots(site, "stories/a")
    assert len(cards) == 2 and all("thumb--card" in c["class"] for c in cards)
    assert cards[0]["img"]["alt"] == "Elsewhere" and cards[0]["webp"]
    assert cards[0]["img"]["loading"] == "lazy" and cards[0]["img"]["decoding"] == "async"
    assert "thumb--placeholder" in cards[1]["class"]


def test_the_image_stage_holds_the_related_images_of_only_a_few_stories_at_once(
    make_site, monkeypatch
) -> None:
    """At 10,000 stories the planned images of related coverage are ~285,000 objects: the
    views are found again story by story, holding the related ones of the last few only.
    Asked in any order, with every story's held set evicted in between, each image gets
    the view of its own source, and an image the stage was not asked about gets none."""
    monkeypatch.setattr(StoryViews, "RECENT", 1)
    files: dict[str, str | bytes] = {"content/ok.jpg": photo()}
    for n in range(4):
        files[f"content/s{n}.md"] = numbered_story(n, f"""
            images:
              - {{url: "{"ok.jpg" if n % 2 else "gone.jpg"}", width: 1200, height: 800}}
            related:
              - title: Elsewhere {n}
                webUrl: "https://other.example.com/{n}"
                images:
                  - {{url: "{"gone.jpg" if n % 2 else "ok.jpg"}", width: 1200, height: 800}}
                  - {{url: "ok.jpg"}}
            """)
    site = make_site(files)
    config = load_config(site.root)
    model = assemble_site(load_articles(config, Diagnostics()), config)
    pictures, _ = render_images(model, config, UrlBuilder(config.base_url), DiscardingSink())
    views = pictures.sources
    assert isinstance(views, StoryViews)
    uses = [use for _, story in ImagePlan(model, pictures.card_operation) for use in story]
    assert len(uses) == 8
    for use in [*uses, *reversed(uses), *uses[::3]]:
        view = views.get(use.image)
        assert view is not None
        assert view.readable == (use.image.url == "ok.jpg"), use.image
        assert len(views._related) <= 1
    unplanned = [item.images[1] for article in model.articles for item in article.related]
    assert unplanned and all(views.get(image) is None for image in unplanned)
    assert pictures.picture(unplanned[0]).placeholder


def test_a_missing_image_used_three_times_is_one_warning_at_its_first_use(make_site) -> None:
    """The stage does not keep every use of every image (a large site has ~300,000): a
    source that fails is found again in the stories that use it, and named once, at its
    first use in file order (here a related item listed before the story's own images),
    with its other uses counted; the next build says the same."""
    files: dict[str, str | bytes] = {"content/img/ok.jpg": photo()}
    for n in range(3):
        files[f"content/s{n}.md"] = numbered_story(n, f"""
            related:
              - title: Elsewhere {n}
                webUrl: "https://other.example.com/{n}"
                images:
                  - {{url: "{"img/gone.jpg" if n else "https://cdn.example.com/r.jpg"}"}}
            images:
              - {{url: "{"img/ok.jpg" if n != 1 else "img/gone.jpg"}", width: 1200, height: 800}}
            """)
    site = make_site(files)
    report = site.build()
    gone = [str(w) for w in report.warnings if "gone.jpg" in str(w) or "no such file" in str(w)]
    assert len(gone) == 1, report.warnings
    assert gone[0].startswith("content/s1.md:")
    assert "related[0].images[0].url: image not available: no such file" in gone[0]
    assert "(used 2 more times)" in gone[0]
    assert report.images.failed == 2  # gone.jpg, and the remote image (offline)
    site.write("content/s2.md", files["content/s2.md"].replace("Story 2", "Story two"))
    assert [str(w) for w in site.build().warnings] == [str(w) for w in report.warnings]


# -- determinism and the cache ------------------------------------------------------------


def test_thumbnails_do_not_depend_on_what_was_made_before(make_site, tmp_path) -> None:
    files = {"content/a.md": image_story("a.jpg", 1600, 1000), "content/a.jpg": photo((1600, 1000))}
    incremental = make_site(files, name="one")
    incremental.write("site.yaml", FETCH_YAML + "  widths: [320]\n")
    incremental.build()
    incremental.write("site.yaml", FETCH_YAML + "  widths: [320, 640, 1280]\n")
    incremental.build()
    clean = make_site(files, site_yaml=FETCH_YAML + "  widths: [320, 640, 1280]\n", name="two")
    clean.build()
    assert incremental.files() == clean.files()


def test_a_new_story_costs_the_image_stage_only_its_own_images(make_site, monkeypatch) -> None:
    """Each story's part of the image stage's grouping is kept by the digest of its images
    (images.PARTS_FILE): a build where a story's images change reads only that story's
    images again (at 10,000 stories the stage took 1.8 s -> 1.0 s). The new story here
    asks a new operation of an image other stories already use, which changes what the
    stage says of it for them too, and an edited story shows another image: the result
    is still that of a clean build. A parts file that cannot be read is made again."""
    files: dict[str, str | bytes] = {"content/ok.jpg": photo(), "content/b.jpg": photo((900, 600))}
    for n in range(4):
        files[f"content/s{n}.md"] = numbered_story(n, f"""
            images:
              - {{url: "b.jpg", width: 900, height: 600}}
            related:
              - title: Elsewhere {n}
                webUrl: "https://other.example.com/{n}"
                images:
                  - {{url: "ok.jpg", width: 1200, height: 800}}
            """)
    site = make_site(files)
    past = time.time() - 60  # old enough that the stage trusts the images' mtimes
    for path in site.root.rglob("*"):
        os.utime(path, (past, past))
    made: list[object] = []
    story_part = images._story_part

    def counted(*args: object) -> object:
        made.append(args)
        return story_part(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(images, "_story_part", counted)
    site.build()  # makes the thumbnails, so the next build runs the stage again
    assert len(made) == 4
    files["content/s0.md"] = files["content/s0.md"].replace("Story 0", "Story zero")
    site.write("content/s0.md", files["content/s0.md"])
    made.clear()
    site.build()
    assert made == []  # every story's part was kept

    def change(name: str, text: str) -> int:
        """Write a story and build: the stories whose images the stage read."""
        files[name] = text
        site.write(name, text)
        made.clear()
        site.build()
        read = len(made)
        clean = make_site(files, name=f"clean-{name.replace('/', '-')}")
        clean.build(use_cache=False)
        assert site.files() == clean.files()
        return read

    assert change("content/s9.md", numbered_story(9, """
        images:
          - {url: "ok.jpg", width: 1200, height: 800}
        """)) == 1  # the new story's images only
    edited = files["content/s1.md"].replace('url: "ok.jpg"', 'url: "b.jpg"')
    assert change("content/s1.md", edited) == 1  # its related item shows another image
    parts = site.root / ".cache" / "build" / images.PARTS_FILE
    assert images.read_story_parts(parts).keys() == {f"content/s{n}.md" for n in (0, 1, 2, 3, 9)}
    parts.write_bytes(parts.read_bytes()[: len(parts.read_bytes()) // 2])  # truncated
    assert images.read_story_parts(parts) == {}
    assert change("content/s8.md", numbered_story(8, """
        images:
          - {url: "b.jpg", width: 600, height: 400}
        """)) == 6  # every story again
    assert len(images.read_story_parts(parts)) == 6


def test_unused_cache_entries_are_pruned_after_a_while(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path)
    thumbs = cache.prepare_thumbs()
    (thumbs / "kept.webp").write_bytes(b"1")
    (thumbs / "old.webp").write_bytes(b"2")
    today = date(2026, 1, 1)
    assert cache.finish({"kept.webp", "old.webp"}, set(), set(), today) == 0
    later = today + timedelta(days=PRUNE_AFTER_DAYS)
    assert ImageCache(tmp_path).finish({"kept.webp"}, set(), set(), later) == 0
    much_later = today + timedelta(days=PRUNE_AFTER_DAYS + 1)
    assert ImageCache(tmp_path).finish({"kept.webp"}, set(), set(), much_later) == 1
    assert sorted(p.name for p in thumbs.iterdir()) == ["kept.webp"]
    index = json.loads((tmp_path / "images" / "index.json").read_text())
    assert list(index["used"]) == ["thumbs/kept.webp"]


def test_download_records_in_use_are_kept_and_unused_ones_pruned(tmp_path: Path) -> None:
    """A URL's download record stays while the site uses the URL, whether this build found
    it (remote), downloaded it again (save_remote) or neither; a record no build has used
    for a while goes."""
    urls = [f"https://cdn.example.com/{n}.jpg" for n in range(4)]
    cache = ImageCache(tmp_path)
    for url in urls:
        cache.save_remote(RemoteRecord(url, problem="HTTP 404"))
    first = date(2026, 1, 1)
    assert cache.finish(set(), set(), set(urls), first) == 0
    later = first + timedelta(days=PRUNE_AFTER_DAYS + 1)
    again = ImageCache(tmp_path)
    assert again.remote(urls[0]) == RemoteRecord(urls[0], problem="HTTP 404")
    again.save_remote(RemoteRecord(urls[1], problem="HTTP 500"))
    assert again.finish(set(), set(), set(urls[:3]), later) == 1  # urls[3]: unused for long
    names = {f"{url_key(url)}.json": url for url in urls}
    left = {names[p.name] for p in (tmp_path / "images" / "remote").iterdir()}
    assert left == set(urls[:3])
    index = json.loads((tmp_path / "images" / "index.json").read_text())
    assert index["used"] == {f"remote/{url_key(u)}.json": later.isoformat() for u in urls[:3]}


def test_the_cache_folder_is_configurable_and_never_inside_the_output(make_site) -> None:
    site = make_site(
        {"content/a.md": image_story("a.jpg"), "content/a.jpg": photo()},
        site_yaml=FETCH_YAML + "  cache_dir: build-cache\n",
    )
    site.build()
    assert (site.root / "build-cache/images/thumbs").is_dir()
    assert not (site.root / ".cache").exists()
    site.write("site.yaml", FETCH_YAML + "  cache_dir: output/cache\n")
    assert any(
        "images.cache_dir: must not be inside the output folder" in m for m in site.messages()
    )


def test_image_settings_are_validated_with_lines(make_site) -> None:
    site = make_site(
        {"content/a.md": story()},
        site_yaml=FETCH_YAML + "  widths: [0]\n  card_aspect: wide\n  qualty: 5\n",
    )
    messages = site.messages()
    assert "site.yaml:10: images.widths[0]: expected a number from 16 to 8192, got 0" in messages
    assert "site.yaml:11: images.card_aspect: expected an aspect like 16:9, got 'wide'" in messages
    assert (
        "site.yaml:12: warning: images.qualty: unknown field, ignored; did you mean 'quality'?"
        in messages
    )


def test_the_index_keeps_no_stamps_for_what_was_never_downloaded(tmp_path: Path) -> None:
    """Offline, a remote image has no file in the cache: nothing to stamp or prune (a large
    site offline used to grow the index by one entry per image URL)."""
    cache = ImageCache(tmp_path)
    (cache.prepare_thumbs() / "kept.webp").write_bytes(b"1")
    urls = {f"https://cdn.example.com/{n}.jpg" for n in range(50)}
    cache.finish({"kept.webp"}, set(), urls, date(2026, 1, 1))
    index = json.loads((tmp_path / "images" / "index.json").read_text())
    assert list(index["used"]) == ["thumbs/kept.webp"]
    index["used"]["remote/gone.json"] = "2026-01-01"  # a stamp left by an older version
    (tmp_path / "images" / "index.json").write_text(json.dumps(index))
    ImageCache(tmp_path).finish({"kept.webp"}, set(), urls, date(2026, 1, 2))
    index = json.loads((tmp_path / "images" / "index.json").read_text())
    assert list(index["used"]) == ["thumbs/kept.webp"]
