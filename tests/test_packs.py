"""Pack files of the build cache: blobs stay readable through every compaction, packs stay
few, and damage is detected before a build trusts them."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from broadsheet import packs
from broadsheet.packs import BlobRef, PackDamaged, Packs


def blobs(count: int, size: int, tag: str) -> list[bytes]:
    return [f"{tag}{i}:".encode() * size for i in range(count)]


def test_blobs_read_back_after_compaction_by_count(tmp_path: Path) -> None:
    store = Packs(tmp_path)
    base = store.store(blobs(20, 500, "base"))  # the large pack
    small = [ref for n in range(packs.MAX_PACKS + 2) for ref in store.store(blobs(1, 5, f"s{n}"))]
    refs = base + small
    expected = [ref.read() for ref in refs]
    base_pack = base[0].path
    store.compact(refs)
    store.remove_unused(refs)
    assert len(store.paths()) == 2  # the large one, and the small ones merged
    assert {ref.path for ref in base} == {base_pack}  # left where it was
    assert [ref.read() for ref in refs] == expected


def test_dead_bytes_are_compacted_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packs, "COMPACT_SLACK", 0)
    store = Packs(tmp_path)
    refs = store.store(blobs(10, 100, "a"))
    kept = refs[:2]
    expected = [ref.read() for ref in kept]
    store.compact(kept)
    store.remove_unused(kept)
    assert [ref.read() for ref in kept] == expected
    (only,) = store.paths()
    assert only.stat().st_size == sum(len(b) for b in expected)


def test_a_missing_or_short_pack_is_damage(tmp_path: Path) -> None:
    store = Packs(tmp_path)
    (ref,) = store.store([b"x" * 1000])
    loader = Packs(tmp_path)
    with loader.loading():
        loaded = pickle.loads(pickle.dumps(ref))
    loader.check()
    assert loaded.read() == b"x" * 1000
    Path(ref.path).write_bytes(b"x" * 999)
    with pytest.raises(PackDamaged):
        loader.check()
    with pytest.raises(PackDamaged):
        loaded.read()
    Path(ref.path).unlink()
    with pytest.raises(PackDamaged):
        loader.check()


def test_references_cannot_leave_the_cache_folder(tmp_path: Path) -> None:
    with pytest.raises(PackDamaged):
        Packs(tmp_path).bind("../../etc/passwd", 0, 10)
    assert isinstance(Packs(tmp_path).bind("pack-ab.bin", 0, 1), BlobRef)
    moved = Packs(tmp_path / "elsewhere")
    with moved.loading():  # a cache loads from its own folder, wherever it was saved
        ref = pickle.loads(pickle.dumps(BlobRef("/old/site/.cache/build/pack-ab.bin", 0, 1)))
    assert ref.path == str(tmp_path / "elsewhere" / "pack-ab.bin")
    with pytest.raises(PackDamaged):
        moved.check()
    # outside a load (a worker process), a reference keeps its path
    assert pickle.loads(pickle.dumps(ref)).path == ref.path
