"""The Pillow work, run in worker processes: decode, orient, convert to sRGB, resize, encode.

Sources are untrusted bytes from the web, so only a few common formats are ever opened
(never Pillow's EPS plugin, which runs Ghostscript), an image above our pixel cap is refused
from its header before anything is decoded, and thumbnails are written with no metadata at
all. A source is decoded once per operation, a JPEG at the smallest DCT scale that covers
the operation's largest output (draft mode); the largest size is made from that decode by an
integer `reduce()` and one final resample, each smaller one from the next larger, and the
loading preview is averaged from the fit operation's decode. What a file's bytes depend on is
in its name (ThumbSpec), so they never depend on what else the cache happened to hold.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import io
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageCms, UnidentifiedImageError

from .thumbnails import Size, ThumbSpec, crop_box, preview_scale, thumb_specs

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
RESAMPLE = Image.Resampling.BICUBIC
# Box-reduce by an integer factor while 1.25x is left for the final bicubic resample: half
# the cost of a full resample, and measured at 52+ dB PSNR against a full Lanczos one (no
# visible difference), like decoding a JPEG at a DCT scale (draft mode) then resampling.
REDUCING_GAP = 1.25
PREVIEW_SIDE = 8  # the inline loading preview: at most this many pixels on its long side
_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


# glibc's mallopt() parameters, the largest mmap threshold it accepts on 64-bit systems, and
# how much freed memory a worker keeps (a few sources' working sets; more is given back)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_WORKER_KEEPS = 256 * 1024 * 1024


class ImageProblem(Exception):
    """Why a source cannot become thumbnails, in words for the warning."""


class Transient(ImageProblem):
    """A problem of this moment, not of the source's bytes (the file changed or could not be
    read, the cache could not be written): the cache must not remember it."""


@dataclass(frozen=True)
class ImageJob:
    """Everything a worker needs for one source; small, so it pickles cheaply."""

    path: str  # the source bytes: an image in the site or an original in the cache
    digest: str  # sha256 of those bytes, checked again before decoding
    operations: tuple[str, ...]
    widths: tuple[int, ...]
    quality: int
    max_pixels: int
    max_bytes: int
    thumbs_dir: str  # where finished files go (the cache), named by ThumbSpec.name


@dataclass(frozen=True)
class SourceInfo:
    """What pages need to know about a readable source, kept in the cache index."""

    width: int  # after EXIF rotation
    height: int
    color: str  # the average colour, "#rrggbb"
    preview: str  # a few-pixel PNG as a data: URI
    jpeg: bool = False  # decoded in draft mode (see thumbnails.decode_scale)
    preview_scale: int = 1  # the preview was made from this decode (thumbnails.preview_scale)

    @property
    def size(self) -> Size:
        return self.width, self.height


@dataclass(frozen=True)
class JobResult:
    digest: str
    info: SourceInfo | None
    problem: str = ""
    made: int = 0
    decoded: int = 0
    transient: bool = False  # the problem is of this moment (Transient): not to remember


def prepare_worker() -> None:
    """Run once in each worker process: keep freed memory for the next image.

    Every source allocates the same large buffers again (its decode, each size, the
    encoders' planes), and by default glibc hands big freed blocks straight back to the
    kernel (munmap, or trimming the top of the heap), so every image pays again for
    thousands of fresh, zeroed pages: measured at 4,300 page faults and 15-20 ms of system
    time per 1600x1000 JPEG, a tenth of its work, against 300 faults and 6 ms with this.
    Pillow allocates images in blocks of at most 16 MB (below the threshold set here), so
    they all come from the heap and are reused; a worker lives for one image stage only."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
    mallopt(_M_TRIM_THRESHOLD, _WORKER_KEEPS)


def make_thumbnails(job: ImageJob) -> JobResult:
    """Make every missing file of `job`; a bad source is a result, never an exception."""
    work = _Work(job)
    try:
        info = work.run()
    except Exception as exc:  # hostile bytes can upset any decoder; the build must go on
        transient = isinstance(exc, Transient | MemoryError)
        problem = describe_failure(exc, job.max_pixels)
        return JobResult(job.digest, None, problem, work.made, work.decoded, transient)
    return JobResult(job.digest, info, "", work.made, work.decoded)


def describe_failure(exc: Exception, max_pixels: int) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ImageProblem):
        return text
    if isinstance(exc, MemoryError):
        return "not enough memory to make its thumbnails; build again"
    if isinstance(exc, Image.DecompressionBombError):  # from a frame, say, past the header
        return over_the_limit(_pixels_named(exc), max_pixels)
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read (JPEG, PNG, WebP, GIF or BMP)"
    if "truncated" in text.lower() or isinstance(exc, EOFError):  # "Truncated File Read" too
        return f"truncated or damaged image ({text})"
    return f"cannot be decoded ({type(exc).__name__}: {text})"


class _Work:
    """One source through every operation; counts decodes and files made."""

    def __init__(self, job: ImageJob) -> None:
        self.job = job
        self.made = 0
        self.decoded = 0
        self.data = b""
        self._decodes: dict[int, tuple[Image.Image, float]] = {}
        self._resized: dict[tuple[str, int, int], Image.Image] = {}  # both formats share one
        self._specs: dict[tuple[str, Size], ThumbSpec] = {}  # to find a spec's parent

    def run(self) -> SourceInfo:
        self.data = read_source(self.job)
        probe = open_image(self.data, self.job.max_pixels)
        self.is_jpeg = probe.format == "JPEG"
        if self.is_jpeg:
            size = oriented_size(probe.size, probe.getexif().get(_ORIENTATION, 1))
        else:
            size = self.decode(1)[0].size
        info = self.source_info(size)
        job = self.job
        for operation in job.operations:
            specs = thumb_specs(job.digest, size, operation, job.widths, job.quality, self.is_jpeg)
            self._specs.update({(s.operation, (s.width, s.height)): s for s in specs})
            # Largest first: each size is encoded while its pixels are fresh in the cache,
            # then made smaller for the next one.
            for spec in reversed(specs):
                self.make(spec, size)
            self._resized.clear()
        return info

    def make(self, spec: ThumbSpec, size: Size) -> None:
        target = Path(self.job.thumbs_dir) / spec.name
        if target.exists():
            return
        resized = self.resize(spec, size)
        try:
            data = encode(resized, spec.format, spec.quality)
        except (ValueError, OSError) as exc:  # it decoded; "cannot be decoded" would mislead
            raise ImageProblem(f"cannot be encoded as {spec.format.upper()} "
                               f"{spec.width}x{spec.height} ({exc})") from None
        try:
            write_atomically(target, data)
        except OSError as exc:  # a full disk, not the image
            raise Transient(f"cannot be kept in the cache ({exc.strerror or exc})") from None
        self.made += 1

    def resize(self, spec: ThumbSpec, size: Size) -> Image.Image:
        """The kept region at the spec's size: resampled from its parent output when it has
        one, else from the operation's decode, box-reduced by an integer factor, then
        resampled once. Both formats share it."""
        key = (spec.operation, spec.width, spec.height)
        if key not in self._resized:
            if spec.parent is not None:
                parent = self._specs[(spec.operation, spec.parent)]
                source = self.resize(parent, size)
                self._resized[key] = source.resize(
                    (spec.width, spec.height), RESAMPLE, reducing_gap=REDUCING_GAP
                )
            else:
                box = crop_box(size, spec.operation)
                image, scale = self.decode(spec.scale)
                scaled = (box[0] / scale, box[1] / scale, box[2] / scale, box[3] / scale)
                self._resized[key] = image.resize(
                    (spec.width, spec.height), RESAMPLE, box=scaled, reducing_gap=REDUCING_GAP
                )
        return self._resized[key]

    def decode(self, scale: int) -> tuple[Image.Image, float]:
        """The whole source decoded at 1/`scale` (JPEG only), oriented, in sRGB; memoised."""
        if scale not in self._decodes:
            image = open_image(self.data, self.job.max_pixels)
            actual = 1.0
            if scale > 1:
                width, height = image.size
                drafted = image.draft(None, (width // scale, height // scale))
                if drafted is not None:
                    actual = width / drafted[1][2]
            self.decoded += 1
            image.load()
            self._decodes[scale] = (to_srgb(orient(image)), actual)
        return self._decodes[scale]

    def source_info(self, size: Size) -> SourceInfo:
        """The loading preview and average colour, box-averaged from the decode the fit
        operation uses (so no decode of their own when the source is a story image)."""
        preview_size = fit_within(size, PREVIEW_SIDE)
        scale = preview_scale(size, self.job.widths, self.is_jpeg)
        image, _ = self.decode(scale)
        tiny = image.resize(preview_size, Image.Resampling.BOX, reducing_gap=REDUCING_GAP)
        red, green, blue = tiny.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))  # type: ignore[misc]
        buffer = io.BytesIO()
        tiny.save(buffer, "PNG", optimize=True)
        preview = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        colour = f"#{red:02x}{green:02x}{blue:02x}"
        return SourceInfo(size[0], size[1], colour, preview, self.is_jpeg, scale)


def read_source(job: ImageJob) -> bytes:
    try:
        with open(job.path, "rb") as handle:
            data = handle.read(job.max_bytes + 1)
    except OSError as exc:  # gone or unreadable since it was hashed
        raise Transient(f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > job.max_bytes:
        raise ImageProblem(f"larger than the {job.max_bytes}-byte limit")
    if hashlib.sha256(data).hexdigest() != job.digest:
        raise Transient("the file changed while the site was being built; build again")
    if looks_like_svg(data):
        raise ImageProblem("SVG images are not supported; use a PNG, JPEG or WebP")
    return data


def looks_like_svg(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower()


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) from one of the allowed formats, refusing oversized dimensions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our cap decides
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except Image.DecompressionBombError as exc:  # past Pillow's own cap, above ours
            raise ImageProblem(over_the_limit(_pixels_named(exc), max_pixels)) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageProblem(over_the_limit(f"{width}x{height}", max_pixels))
    return image


def over_the_limit(pixels: str | None, max_pixels: int) -> str:
    """The refusal, quoting the site's limit (images.max_pixels), never Pillow's."""
    said = f"{pixels} pixels is over" if pixels else "more pixels than"
    return f"{said} the {max_pixels:,}-pixel limit (a decompression bomb?)"


def _pixels_named(exc: Exception) -> str | None:
    """The pixel count in Pillow's message ("Image size (400000000 pixels) exceeds ...")."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(found[1]):,}" if found else None


def oriented_size(size: Size, orientation: int) -> Size:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def orient(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, so the pixels are the way up the camera meant."""
    method = _TRANSPOSE.get(image.getexif().get(_ORIENTATION, 1))
    return image.transpose(method) if method is not None else image


def to_srgb(image: Image.Image) -> Image.Image:
    """8-bit RGB in sRGB, transparency flattened onto white, every bit of metadata dropped."""
    icc = image.info.get("icc_profile")
    if image.mode in ("I;16", "I;16B", "I;16L"):
        image = sixteen_bit_grey(image)
    key = image.info.get("transparency")
    if image.mode == "RGB" and isinstance(key, tuple) and max(key) > 255:
        # A 16-bit RGB PNG: Pillow keeps the high byte of each sample, so of the key too.
        image.info["transparency"] = tuple(value >> 8 for value in key)
    if image.mode in ("P", "1", "L", "RGB") and key is not None:
        # A tRNS colour key (palette, grey or RGB PNGs) is transparency too; convert("RGB")
        # would drop it and show the keyed colour (black, often) where white belongs.
        image = image.convert("RGBA")
    elif image.mode == "P":
        image = image.convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    if icc:
        image = apply_profile(image, icc)
    if image.mode != "RGB":
        image = image.convert("RGB")
    image.info = {}
    return image


def sixteen_bit_grey(image: Image.Image) -> Image.Image:
    """8-bit grey, scaled rather than clipped. A tRNS key is a 16-bit value, so it becomes an
    alpha channel before scaling: 257 greys scale to each 8-bit one."""
    wide = image.convert("I")
    grey = wide.point(lambda value: value * (1 / 257)).convert("L")
    key = image.info.get("transparency")
    if not isinstance(key, int):
        return grey
    alpha = wide.point([0 if value == key else 255 for value in range(65536)], "L")
    return Image.merge("LA", (grey, alpha))


def apply_profile(image: Image.Image, icc: bytes) -> Image.Image:
    """Convert from the embedded ICC profile to sRGB; a broken profile is ignored."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower().replace(" ", ""):
            return image
        converted = ImageCms.profileToProfile(image, profile, _srgb(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    return converted if converted is not None else image


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def fit_within(size: Size, side: int) -> Size:
    width, height = size
    if width >= height:
        return side, max(1, round(side * height / width))
    return max(1, round(side * width / height)), side


def encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    """The encoded file, with no EXIF, ICC or XMP (nothing is passed, and info is empty).

    The JPEG is the fallback (and the feeds' enclosure): baseline with optimised Huffman
    tables, which encodes about three times faster than progressive for a few % more bytes;
    pages show the blurred preview while a file loads anyway."""
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, "JPEG", quality=quality, optimize=True)
    else:
        image.save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue()


def write_atomically(target: Path, data: bytes) -> None:
    """Another build, worker or thread may write the same name at the same time (the same
    bytes): each writes its own temporary file, and the rename is atomic."""
    folder, name = os.path.split(target)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(handle, view) :]
    finally:
        os.close(handle)
    os.replace(temporary, target)
