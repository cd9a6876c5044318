"""What templates and feeds see of an image: a Picture (srcsets, size, loading preview) or a
generated placeholder, and the largest JPEG for feed enclosures.

A PictureBook is filled by the image stage and read by the `picture()` template global. It
only does arithmetic and string building; every value in a Picture is made by Broadsheet
(file names are hashes, previews are base64), so templates print them with autoescaping on
and nothing from content is ever marked safe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from . import tracking
from .config import ImageSettings
from .diagnostics import Diagnostic
from .feeds import Enclosure
from .model import Article, Image
from .templates import hue
from .thumbnails import (
    FIT,
    THUMBS_FOLDER,
    Size,
    ThumbSpec,
    crop_operation,
    shaped_size,
    thumb_specs,
)
from .urls import UrlBuilder

VARIANTS = ("card", "story")
PLANNED = "#picture"  # a fact: the picture of an image the image stage processed
UNPLANNED = "#picture-unplanned"  # ... of an image it was not asked about (a theme's choice)
ENCLOSURE = "#enclosure"
SOURCE_AT = {PLANNED: 8, ENCLOSURE: 5}  # where the image's story file is in such a fact path
DEFAULT_SIZE = (1600, 900)  # the shape of a placeholder when the metadata gives none


@dataclass(frozen=True)
class Picture:
    """Everything a `<picture>` needs; `placeholder` when the source could not be had."""

    width: int  # for the <img> width and height attributes: the space is kept while loading
    height: int
    alt: str
    src: str  # the <img src>: a middle-sized JPEG, the placeholder's SVG, or "" (no file)
    srcset: str = ""  # JPEG widths, "" for a placeholder
    webp_srcset: str = ""  # WebP widths, "" for a placeholder
    color: str = ""  # the average colour, shown while loading
    preview: str = ""  # a few-pixel preview as a data: URI, shown (scaled) while loading
    hue: int = 0  # the placeholder's colour angle
    placeholder: bool = False


@dataclass(frozen=True)
class SourceView:
    """What the image stage learnt about one source, as far as pages are concerned."""

    digest: str = ""
    width: int = 0  # after EXIF rotation; 0 when the source could not be read
    height: int = 0
    color: str = ""
    preview: str = ""
    operations: tuple[str, ...] = ()  # what was made of it
    jpeg: bool = False  # decoded in draft mode, which the file names account for

    @property
    def readable(self) -> bool:
        return bool(self.digest and self.width)


@dataclass(frozen=True)
class ImageStats:
    """What the image stage did, for reports, tests and the benchmark."""

    sources: int = 0
    fetched: int = 0
    failed: int = 0
    decoded: int = 0  # Pillow decodes: 0 on a rebuild where nothing changed
    made: int = 0  # files encoded
    files: int = 0  # files put into the output


def picture_fact(result: Picture | Enclosure | None) -> bytes | None:
    """What a page's build-cache record keeps of a picture or enclosure it showed: a digest
    of every value in it (srcsets and previews are long, and there are tens of thousands)."""
    if result is None:
        return None
    return tracking.digest(repr(tuple(vars(result).values())))


@dataclass
class PictureBook:
    """Pictures for the images of one build (`picture()`), and feed enclosures."""

    settings: ImageSettings
    urls: UrlBuilder
    sources: Mapping[Image, SourceView] = field(default_factory=dict)
    files: Mapping[str, Path] = field(default_factory=dict)  # name -> the file in the cache
    placeholders: frozenset[str] = frozenset()  # names of the placeholder files written
    stats: ImageStats = ImageStats()
    warnings: list[Diagnostic] = field(default_factory=list)  # one per source not available
    digests: dict[str, str] = field(default_factory=dict)  # images.story_digests() of the stage
    unwritten: tuple[tuple[int, int, int], ...] = ()  # placeholder files still to write
    # Placeholders by shape, and the build-cache fact of each (by id: they live as long as
    # the book). A large site shows a few thousand shapes in ~400,000 picture slots, most
    # of them placeholders when its images are remote and not downloaded yet.
    _shapes: dict[tuple[int, int, int], Picture] = field(
        default_factory=dict, init=False, repr=False)
    _facts: dict[int, bytes | None] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def card_operation(self) -> str:
        return crop_operation(self.settings.card_aspect)

    def picture(
        self, image: Image | None, variant: str = "card", alt: str = "", seed: str = ""
    ) -> Picture:
        """The picture of `image` as a 'card' (cropped to the card shape) or on its 'story'
        page (its own shape). `seed` colours the placeholder when there is no image.

        Noted as a fact for the build cache: the page that showed it is rendered again
        only when the same call would give another picture."""
        if variant not in VARIANTS:
            raise ValueError(f"picture(): variant must be 'card' or 'story', got {variant!r}")
        image = tracking.unwrap(image)
        view = self.sources.get(image) if image is not None else None
        result = self._picture(image, view, variant, alt, seed)
        key = image_key(image) if image is not None else ()
        head = PLANNED if view is not None else UNPLANNED
        fact = self._facts[id(result)] if result.placeholder else picture_fact(result)
        tracking.note((head, variant, alt, seed, *key), fact)
        return result

    def make_picture(self, image: Image | None, variant: str, alt: str, seed: str) -> Picture:
        view = self.sources.get(image) if image is not None else None
        return self._picture(image, view, variant, alt, seed)

    def _picture(
        self, image: Image | None, view: SourceView | None, variant: str, alt: str, seed: str
    ) -> Picture:
        operation = FIT if variant == "story" else self.card_operation
        specs = self._specs(view, operation)
        if image is None or view is None or not specs:
            return self.placeholder(image, operation, seed)
        width, height = self._frame(image, view, operation)
        webp = [s for s in specs if s.format == "webp"]
        jpeg = [s for s in specs if s.format == "jpeg"]
        return Picture(
            width,
            height,
            alt,
            self.urls.href(jpeg[len(jpeg) // 2].route),
            srcset=self._srcset(jpeg),
            webp_srcset=self._srcset(webp),
            color=view.color,
            preview=view.preview,
            hue=hue(image.url),
        )

    def placeholder(self, image: Image | None, operation: str, seed: str = "") -> Picture:
        """A generated stand-in of the metadata's shape, in a colour from the URL: the SVG
        file the image stage wrote for it, or no file (a tinted frame) for an image it was
        not asked about or no image at all."""
        shape = placeholder_shape(image, operation, seed)
        found = self._shapes.get(shape)
        if found is None:
            width, height, angle = shape
            name = placeholder_name(width, height, angle)
            src = self.urls.href(THUMBS_FOLDER + name) if name in self.placeholders else ""
            found = self._shapes[shape] = Picture(width, height, "", src, hue=angle,
                                                  placeholder=True)
            self._facts[id(found)] = picture_fact(found)
        return found

    def largest_jpeg(self, image: Image | None) -> Enclosure | None:
        """The absolute URL, byte length and MIME type of the largest JPEG made of `image`
        (its own shape when made, else the card crop), or None (no image, or a placeholder)."""
        image = tracking.unwrap(image)
        result = self.make_enclosure(image)
        key = image_key(image) if image is not None else ()
        tracking.note((ENCLOSURE, *key), picture_fact(result))
        return result

    def make_enclosure(self, image: Image | None) -> Enclosure | None:
        view = self.sources.get(image) if image is not None else None
        if view is None:
            return None
        for operation in (FIT, self.card_operation):
            jpegs = [s for s in self._specs(view, operation) if s.format == "jpeg"]
            if jpegs and jpegs[-1].name in self.files:
                spec = jpegs[-1]
                return Enclosure(
                    self.urls.absolute(spec.route),
                    self.files[spec.name].stat().st_size,
                    spec.mime_type,
                    spec.width,
                    spec.height,
                )
        return None

    def enclosure_for(self, article: Article) -> Enclosure | None:
        """For feeds: the story's picture (its first image)."""
        return self.largest_jpeg(article.image)

    def _specs(self, view: SourceView | None, operation: str) -> tuple[ThumbSpec, ...]:
        if view is None or not view.readable or operation not in view.operations:
            return ()
        size = (view.width, view.height)
        widths, quality = self.settings.widths, self.settings.quality
        return thumb_specs(view.digest, size, operation, widths, quality, view.jpeg)

    def _frame(self, image: Image, view: SourceView, operation: str) -> tuple[int, int]:
        """The width and height attributes: from the metadata when it has them."""
        if image.width and image.height:
            return shaped_size((image.width, image.height), operation)
        return shaped_size((view.width, view.height), operation)

    def _srcset(self, specs: list[ThumbSpec]) -> str:
        return ", ".join(f"{self.urls.href(s.route)} {s.width}w" for s in specs)


def image_key(image: Image) -> tuple[object, ...]:
    """An Image as plain values (cheap to keep in the build cache); Image(*key) is it again."""
    return (image.url, image.width, image.height, image.title, image.source, image.field,
            image.line)


def placeholder_shape(image: Image | None, operation: str, seed: str = "") -> tuple[int, int, int]:
    """Width, height and hue of the placeholder for `image` shown through `operation`.

    Asked for every use of every image by the image stage, the pages and the build cache's
    checks alike: the size part is memoised (a few distinct sizes); the hue is a checksum
    of the URL, cheaper to compute again than to keep for ~150,000 URLs of a large site."""
    if image is None:
        return (*_shaped_size(DEFAULT_SIZE, operation), hue(seed))
    return (*_shaped_size(_metadata_size(image), operation), hue(image.url))


def placeholder_shapes(image: Image, operations: tuple[str, ...]) -> list[tuple[int, int, int]]:
    """placeholder_shape(image, operation) for each operation, the hue worked out once."""
    size, angle = _metadata_size(image), hue(image.url)
    return [(*_shaped_size(size, operation), angle) for operation in operations]


def _metadata_size(image: Image) -> Size:
    return (image.width, image.height) if image.width and image.height else DEFAULT_SIZE


_shaped_size = lru_cache(maxsize=4096)(shaped_size)  # a few distinct sizes


@lru_cache(maxsize=1 << 14)  # one per size and hue: a few thousand at most
def placeholder_name(width: int, height: int, angle: int) -> str:
    """A placeholder's file name: a hash of its shape and of the code that draws it, so the
    name changes whenever the bytes would (like every thumbnail's) without making them."""
    key = f"{_drawing_version()}:{width}:{height}:{angle}".encode()
    return f"{hashlib.sha256(key).hexdigest()[:20]}-{width}x{height}.svg"


def placeholder_data(width: int, height: int, angle: int) -> bytes:
    return placeholder_svg(width, height, angle).encode("ascii")


@lru_cache(maxsize=1)
def _drawing_version() -> str:
    code = placeholder_svg.__code__
    return hashlib.sha256(repr((code.co_code, code.co_consts)).encode()).hexdigest()[:16]


def placeholder_svg(width: int, height: int, angle: int) -> str:
    """A quiet tinted panel with a fine dot screen, light or dark with the reader's scheme."""
    view_width = 320
    view_height = max(1, round(view_width * height / width))
    other = (angle + 35) % 360
    return (
        "<svg xmlns='http://www.w3.org/2000/svg' "
        f"width='{width}' height='{height}' viewBox='0 0 {view_width} {view_height}'>"
        "<style>.a{stop-color:hsl(%(h)d,38%%,89%%)}.b{stop-color:hsl(%(o)d,30%%,74%%)}"
        ".d{fill:hsl(%(h)d,35%%,25%%);fill-opacity:.14}"
        "@media (prefers-color-scheme:dark){.a{stop-color:hsl(%(h)d,22%%,25%%)}"
        ".b{stop-color:hsl(%(o)d,20%%,16%%)}.d{fill:hsl(%(h)d,40%%,80%%);fill-opacity:.1}}"
        "</style><defs><linearGradient id='g' x1='0' y1='0' x2='1' y2='1'>"
        "<stop offset='0' class='a'/><stop offset='1' class='b'/></linearGradient>"
        "<pattern id='p' width='6' height='6' patternUnits='userSpaceOnUse'>"
        "<circle cx='1' cy='1' r='1' class='d'/></pattern></defs>"
        "<rect width='100%%' height='100%%' fill='url(#g)'/>"
        "<rect width='100%%' height='100%%' fill='url(#p)'/></svg>\n"
    ) % {"h": angle, "o": other}
