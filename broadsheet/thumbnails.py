"""Thumbnail planning: which images the pages need, in which shapes and sizes, under which names.

Pure functions of the model and of numbers (no files, no Pillow), so one plan decides both
what the workers make and what the pages link to, and a rebuild can name every file without
decoding anything. A file's name is a hash of everything its bytes depend on (source bytes,
operation, size, format, quality and the JPEG decode scale): the name is the cache key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from math import gcd
from typing import overload

from .model import Article, Image, Site, related_first_images

PIPELINE_VERSION = "4"  # bump when the Pillow work changes: every name changes with it
# (4: tRNS colour keys flattened onto white; a cache of 3 kept black backgrounds)
FIT = "fit"  # keep the source's own shape (story pages)
FORMATS = ("webp", "jpeg")  # every size is made in both; <picture> offers WebP first
EXTENSIONS = {"webp": "webp", "jpeg": "jpg"}
MIME_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg"}
WEBP_MAX_SIDE = 16383  # libwebp cannot encode a longer side; such sizes are JPEG only
JPEG_MAX_SIDE = 65500  # nor libjpeg: a size that would be taller is made narrower instead
THUMBS_FOLDER = "thumbs/"  # under the output folder and in the cache
DEFAULT_CARD_ASPECT = (16, 9)
JPEG_SCALES = (8, 4, 2)  # the DCT scalings libjpeg can decode at (Pillow's draft mode)

Size = tuple[int, int]
Box = tuple[float, float, float, float]


def crop_operation(aspect: Size) -> str:
    """The operation name of a centred crop to `aspect` (width, height), e.g. 'crop-16x9'."""
    divisor = gcd(*aspect)
    return f"crop-{aspect[0] // divisor}x{aspect[1] // divisor}"


def operation_aspect(operation: str) -> Size | None:
    """(16, 9) for 'crop-16x9'; None for 'fit'."""
    if operation == FIT:
        return None
    width, height = operation.removeprefix("crop-").split("x")
    return int(width), int(height)


def crop_box(size: Size, operation: str) -> Box:
    """The centred region of a `size` image that `operation` keeps (the whole image for fit)."""
    width, height = size
    aspect = operation_aspect(operation)
    if aspect is None or width * aspect[1] == height * aspect[0]:
        return (0.0, 0.0, float(width), float(height))
    if width * aspect[1] > height * aspect[0]:  # too wide: trim the sides
        kept = height * aspect[0] / aspect[1]
        return ((width - kept) / 2, 0.0, (width + kept) / 2, float(height))
    kept = width * aspect[1] / aspect[0]  # too tall: trim top and bottom
    return (0.0, (height - kept) / 2, float(width), (height + kept) / 2)


def shaped_size(size: Size, operation: str) -> Size:
    """The pixel size of the region `operation` keeps of a `size` image."""
    left, top, right, bottom = crop_box(size, operation)
    return max(1, round(right - left)), max(1, round(bottom - top))


def output_sizes(size: Size, operation: str, widths: tuple[int, ...]) -> list[Size]:
    """The sizes to make, smallest first: the configured widths, never wider than the source.

    When a configured width is wider than the (cropped) source, the source's own width takes
    its place, so a small image still gets its full-size version. A size that would be
    taller than JPEG allows (a strip 1:100) is as wide as fits instead: no format could
    encode it, and the whole source would be a placeholder.
    """
    kept_width, kept_height = shaped_size(size, operation)
    chosen = sorted({w for w in widths if w < kept_width})
    if any(w >= kept_width for w in widths) or not chosen:
        chosen.append(kept_width)
    widest = max(1, JPEG_MAX_SIDE * kept_width // kept_height)
    if chosen[-1] > widest:
        chosen = sorted({min(w, widest) for w in chosen})
    return [(w, max(1, round(w * kept_height / kept_width))) for w in chosen]


def decode_scale(size: Size, operation: str, largest: Size, jpeg: bool) -> int:
    """How much smaller than full size a JPEG source is decoded for one operation: the
    largest DCT scaling that still leaves the kept region as big as the largest output."""
    if not jpeg:
        return 1
    left, top, right, bottom = crop_box(size, operation)
    for scale in JPEG_SCALES:
        if (right - left) / scale >= largest[0] and (bottom - top) / scale >= largest[1]:
            return scale
    return 1


def preview_scale(size: Size, widths: tuple[int, ...], jpeg: bool) -> int:
    """The decode scale a source's loading preview is made from: the fit operation's, so the
    preview shares the story image's decode. It changes only with that decode's scale, which
    the cache index records with the preview."""
    return decode_scale(size, FIT, output_sizes(size, FIT, widths)[-1], jpeg)


@dataclass(frozen=True)
class ThumbSpec:
    """One file to make: a source (by the hash of its bytes) through one operation, one size."""

    digest: str  # sha256 of the source bytes
    operation: str  # "fit" or "crop-16x9"
    width: int
    height: int
    format: str  # "webp" | "jpeg"
    quality: int
    scale: int = 1  # the source is decoded at 1/scale (JPEG draft mode), then resampled
    parent: Size | None = None  # resampled from this (larger) output of the same operation

    @cached_property
    def name(self) -> str:
        """The file name, which is also its cache key: `3fa2…-640x360.webp`."""
        key = "|".join(
            [
                PIPELINE_VERSION,
                self.digest,
                self.operation,
                f"{self.width}x{self.height}",
                self.format,
                str(self.quality),
                str(self.scale),
                f"{self.parent[0]}x{self.parent[1]}" if self.parent else "source",
            ]
        )
        digest = hashlib.sha256(key.encode("ascii")).hexdigest()[:20]
        return f"{digest}-{self.width}x{self.height}.{EXTENSIONS[self.format]}"

    @property
    def route(self) -> str:
        return THUMBS_FOLDER + self.name

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.format]


@lru_cache(maxsize=8192)
def thumb_specs(
    digest: str,
    size: Size,
    operation: str,
    widths: tuple[int, ...],
    quality: int,
    jpeg: bool = False,
) -> tuple[ThumbSpec, ...]:
    """Every file one operation makes from one source of `size` (after EXIF rotation); a
    JPEG source is decoded once per operation, as small as its largest output allows."""
    sizes = output_sizes(size, operation, widths)
    scale = decode_scale(size, operation, sizes[-1], jpeg)
    # Each size but the largest is resampled from the next larger one, not from the source:
    # fewer pixels to read, for the same quality at these ratios. The parent is in the name.
    parents: list[Size | None] = [*sizes[1:], None]
    return tuple(
        ThumbSpec(digest, operation, w, h, fmt, quality, scale, parent)
        for (w, h), parent in zip(sizes, parents, strict=True)
        for fmt in FORMATS
        if fmt != "webp" or max(w, h) <= WEBP_MAX_SIDE  # a tall infographic's large sizes
    )


# -- which images the site needs ----------------------------------------------------------


@dataclass(frozen=True)
class ImageUse:
    """One image the pages show, and the operations they need of it."""

    image: Image
    operations: tuple[str, ...]


class ImagePlan(Sequence[tuple[str, Iterator[ImageUse]]]):
    """Every story image (as a card and in its own shape) and each related item's first
    image (as a card), story by story in a stable order: (story file, its uses).

    A story's uses are made as they are read, and the image stage reads them more than
    once rather than keep them: ~300,000 on a large site, most of them related items'
    images, unpickled from each story's blob (model.related_first_images)."""

    def __init__(self, site: Site, card_operation: str) -> None:
        self._articles = sorted(site.articles, key=lambda a: a.source)
        self._operation = card_operation

    @overload
    def __getitem__(self, index: int) -> tuple[str, Iterator[ImageUse]]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, Iterator[ImageUse]]]: ...

    def __getitem__(
        self, index: int | slice
    ) -> tuple[str, Iterator[ImageUse]] | Sequence[tuple[str, Iterator[ImageUse]]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        article = self._articles[index]
        return article.source, story_uses(article, self._operation)

    def __len__(self) -> int:
        return len(self._articles)


def story_uses(article: Article, card_operation: str) -> Iterator[ImageUse]:
    """The images one story gives the pages, in plan order."""
    for image in article.images:
        yield ImageUse(image, (card_operation, FIT))
    for first in related_first_images(article):
        if first is not None:
            yield ImageUse(first, (card_operation,))


def uses_digest(article: Article) -> str:
    """A digest of the images `story_uses` takes from one story (keep the two in step): the
    build cache keeps it per story file, so a build can tell that no story's images
    changed without looking at any of them."""
    chosen = [*article.images, None, *(r.images[0] for r in article.related if r.images)]
    return hashlib.blake2b(repr(chosen).encode(), digest_size=16).hexdigest()
