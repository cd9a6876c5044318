#!/usr/bin/env python3
"""How fast the thumbnail pipeline is, cold and warm, against a plain Pillow loop.

Makes N local 1600x1000 JPEGs (synthetic photos), writes a site whose stories use them, and
times the image stage exactly as a build runs it (source hashing, cache lookups, the worker
processes, hard links into a staging output, the swap) making 3 widths x 2 formats of each:

  cold   an empty cache: every image decoded, resized and encoded
  warm   the same again: everything cached, so no Pillow work at all
  plain  the same files from a single-process loop: open each image once, then for each
         width `copy()` + `thumbnail()` + save as JPEG and as WebP, with the pipeline's
         encoder settings (so the encoders do the same work on both sides)

Cold and plain are each the best of --repeat runs (a shared machine is noisy). For scale, it
also times the plain loop split over one process per core: what parallelism alone gives on
this machine.

Usage: python bench/images.py [-n 48] [--repeat 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broadsheet.assemble import assemble_site
from broadsheet.config import load_config
from broadsheet.diagnostics import Diagnostics
from broadsheet.images import process_images
from broadsheet.imaging import encode
from broadsheet.output import OutputWriter
from broadsheet.stages import load_articles
from broadsheet.thumbnails import FIT, ImageUse

SIZE = (1600, 1000)
WIDTHS = (320, 640, 1280)


def synthetic_photo(seed: int) -> bytes:
    """Soft shapes over a gradient with a little grain: compresses like a photo."""
    rnd = random.Random(seed)
    width, height = SIZE
    ramp = Image.linear_gradient("L").resize(SIZE)
    glow = Image.radial_gradient("L").resize(SIZE)
    base = Image.merge(
        "RGB",
        (
            ramp.point(lambda v: 40 + v // 2),
            glow.point(lambda v: 200 - v // 2),
            ramp.point(lambda v: 255 - v // 3),
        ),
    )
    draw = ImageDraw.Draw(base)
    for _ in range(30):
        x, y, r = rnd.randrange(width), rnd.randrange(height), rnd.randrange(20, 220)
        colour = tuple(rnd.randrange(256) for _ in range(3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    base = base.filter(ImageFilter.GaussianBlur(4))
    grain = Image.effect_noise(SIZE, 20).convert("RGB")
    photo = Image.blend(base, grain, 0.08)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def make_site(root: Path, count: int) -> None:
    (root / "content" / "img").mkdir(parents=True)
    (root / "site.yaml").write_text(
        "title: Bench\nbase_url: https://example.org/\nimages:\n"
        f"  widths: [{', '.join(map(str, WIDTHS))}]\n",
        encoding="utf-8",
    )
    for i in range(count):
        (root / "content" / "img" / f"{i}.jpg").write_bytes(synthetic_photo(i))
        (root / "content" / f"s{i}.md").write_text(
            f'---\ntitle: "Story {i}"\npublishedDateTime: 2024-01-0{1 + i % 7}T10:00:00Z\n'
            f'webUrl: "https://example.com/{i}"\nimages:\n'
            f'  - {{url: "img/{i}.jpg", width: {SIZE[0]}, height: {SIZE[1]}}}\n---\n',
            encoding="utf-8",
        )


def run_pipeline(root: Path) -> tuple[float, int, int]:
    """One image stage into a fresh staging output; (seconds, files, Pillow decodes)."""
    config = load_config(root)
    site = assemble_site(load_articles(config, Diagnostics()), config)
    plan = [(a.source, [ImageUse(a.images[0], (FIT,))]) for a in site.articles]
    started = time.perf_counter()
    with OutputWriter(root / "output") as sink:
        stats, warnings = process_images(plan, config, sink)
    seconds = time.perf_counter() - started
    if warnings:
        raise SystemExit(f"unexpected warnings: {warnings[:3]}")
    return seconds, stats.files, stats.decoded


def plain_loop(sources: list[Path], target: Path, quality: int) -> None:
    """The same files, made one after another the plain way."""
    for path in sources:
        with Image.open(path) as image:
            for width in WIDTHS:
                thumb = image.copy()
                thumb.thumbnail((width, width))
                for fmt, ext in (("jpeg", "jpg"), ("webp", "webp")):
                    data = encode(thumb, fmt, quality)
                    (target / f"{path.stem}-{width}.{ext}").write_bytes(data)


def run_plain_loop(root: Path, quality: int, processes: int = 1) -> tuple[float, int]:
    target = root / "plain"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    sources = sorted((root / "content" / "img").glob("*.jpg"))
    started = time.perf_counter()
    if processes == 1:
        plain_loop(sources, target, quality)
    else:
        with ProcessPoolExecutor(processes) as pool:
            shares = [sources[i::processes] for i in range(processes)]
            list(pool.map(plain_loop, shares, [target] * processes, [quality] * processes))
    seconds = time.perf_counter() - started
    return seconds, len(list(target.iterdir()))


def cold_run(root: Path) -> tuple[float, int, int]:
    """The pipeline with an empty cache and no previous output."""
    shutil.rmtree(root / ".cache", ignore_errors=True)
    shutil.rmtree(root / "output", ignore_errors=True)
    return run_pipeline(root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--images", type=int, default=48)
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2, help="cold and plain runs (best kept)")
    parser.add_argument("--keep", type=Path, help="build in DIR and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="broadsheet-bench-"))
    try:
        make_site(root, args.images)
        quality = load_config(root).images.quality
        n = args.images
        cold, files, decoded = min(cold_run(root) for _ in range(args.repeat))
        warm_runs = [run_pipeline(root) for _ in range(args.warm_runs)]
        warm = statistics.median(r[0] for r in warm_runs)
        assert all(r[1] == files and r[2] == 0 for r in warm_runs), "a warm run decoded"
        plain, plain_files = min(run_plain_loop(root, quality) for _ in range(args.repeat))
        assert plain_files == files, (plain_files, files)
        cpus = os.cpu_count() or 1
        split, _ = run_plain_loop(root, quality, cpus)
        print(
            f"{n} JPEGs of {SIZE[0]}x{SIZE[1]} -> {len(WIDTHS)} widths x 2 formats = {files} files"
        )
        print(f"cores: {cpus}; Pillow decodes cold: {decoded}, warm: 0")
        print(f"pipeline, cold : {n / cold:9.1f} images/s  ({cold:.2f} s)")
        print(
            f"pipeline, warm : {n / warm:9.1f} images/s  ({warm * 1000:.1f} ms, median of "
            f"{args.warm_runs})  {cold / warm:.0f}x cold  (target: >= 100x)"
        )
        print(
            f"plain loop     : {n / plain:9.1f} images/s  ({plain:.2f} s)  "
            f"cold pipeline = {plain / cold:.2f}x the plain loop  (target: >= 2x)"
        )
        print(
            f"plain loop, {cpus} processes: {n / split:.1f} images/s  ({split:.2f} s), "
            f"{plain / split:.2f}x the plain loop: what the cores alone give here"
        )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
