"""The persistent image cache (`<cache_dir>/images/`): downloads, thumbnails, what each source is.

`output/` is replaced by every build, so anything costly to redo (a download, a decode, an
encode) lives here and is hard-linked into the staging folder. Files are named by content
hashes and written through a temporary file and a rename, so two builds sharing the cache
never see half a file. Entries no build has used for `PRUNE_AFTER_DAYS` days are deleted.

    images/remote/<sha256 of URL>.json   a download: {"url", "digest", "type", "size",
                                         "private"} or {"url", "problem", "rules"}
    images/originals/<sha256>            downloaded bytes, by content
    images/thumbs/<name>                 finished thumbnails; the name is the output name
    images/index.json                    per source digest: size, colour, preview (or problem);
                                         the digest of each local image by its size and mtime
                                         (like git's index, so an unchanged file is not read);
                                         and the day each entry was last used, for pruning
    images/unreachable-<day>.json        the hosts that could not be reached that day, and
                                         why (only today's is read; the others are deleted)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .buildcache import RACY_NS  # a file changed this close to being hashed is hashed again
from .config import IMAGE_CACHE_FOLDER, unreachable_path
from .imaging import SourceInfo, write_atomically
from .thumbnails import PIPELINE_VERSION

CACHE_FOLDER = IMAGE_CACHE_FOLDER
PRUNE_AFTER_DAYS = 30
INDEX_VERSION = f"2/{PIPELINE_VERSION}"  # 2: SourceInfo.preview_scale


@dataclass(frozen=True)
class RemoteRecord:
    """What the last download of a URL gave: the bytes' digest, or the reason it failed."""

    url: str
    digest: str = ""
    type: str = ""
    problem: str = ""
    size: int = 0  # of the bytes: a lower images.max_bytes refuses them
    rules: str = ""  # the settings a failure met (images.fetch_rules): others try again
    # The download went through a private, loopback or link-local address: kept only for
    # builds that allow private hosts. None: a record from before this was kept.
    private: bool | None = None


class ImageCache:
    """One site's image cache; folders are created on first write."""

    def __init__(self, cache_dir: Path) -> None:
        self.folder = cache_dir / CACHE_FOLDER
        self.remote_dir = self.folder / "remote"
        self.originals_dir = self.folder / "originals"
        self.thumbs_dir = self.folder / "thumbs"
        self.index_path = self.folder / "index.json"
        self._index = self._load_index()
        self._dirty = False
        self._files_seen: set[str] = set()
        self._record_names: set[str] | None = None
        # The record name of each URL asked about that has a record: finish() stamps them
        # without hashing every URL of the site again (~140,000 at 10,000 stories).
        self._named: dict[str, str] = {}
        self._hosts: tuple[date, dict[str, Any]] | None = None  # a day's unreachable hosts
        self._hosts_dirty = False

    # -- downloads --------------------------------------------------------------------

    def remote(self, url: str) -> RemoteRecord | None:
        records = self._records()
        if not records:
            return None  # nothing ever downloaded: not even the URL's hash is needed
        name = record_name(url)
        if name not in records:
            return None  # never downloaded: no need to try opening its record
        self._named[url] = name
        path = self.remote_dir / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            record = RemoteRecord(**data)
        except (OSError, ValueError, TypeError):
            return None
        if record.url != url or (record.digest and not self.original(record.digest).is_file()):
            return None
        return record

    def save_remote(self, record: RemoteRecord, data: bytes | None = None) -> None:
        """Keep a download's bytes (by digest) and what happened, for every later build."""
        self._ensure(self.remote_dir, self.originals_dir)
        if data is not None:
            target = self.original(record.digest)
            if not target.is_file():
                write_atomically(target, data)
        text = json.dumps(asdict(record), sort_keys=True)
        path = self._record_path(record.url)
        write_atomically(path, text.encode("utf-8"))
        self._records().add(path.name)
        self._named[record.url] = path.name

    def _records(self) -> set[str]:
        """The names of the download records, from one listing of their folder."""
        if self._record_names is None:
            try:
                self._record_names = {e.name for e in os.scandir(self.remote_dir)}
            except OSError:
                self._record_names = set()
        return self._record_names

    def original(self, digest: str) -> Path:
        return self.originals_dir / digest

    def _record_path(self, url: str) -> Path:
        return self.remote_dir / record_name(url)

    # -- hosts that cannot be reached ------------------------------------------------

    def unreachable_hosts(self, rules: str, today: date | None = None) -> dict[str, str]:
        """The hosts that could not be reached in an earlier build today under the same
        fetch rules, and why. Only for the day: offline, or with a host down for a while,
        its images are not asked for again build after build, and not remembered URL by
        URL either (a large site has ~140,000), so they are tried again once it is back."""
        found = self._unreachable(today or date.today())
        return {host: str(entry.get("problem", "")) for host, entry in found.items()
                if isinstance(entry, dict) and entry.get("rules") == rules}

    def remember_host_failure(self, host: str, problem: str, rules: str,
                              today: date | None = None) -> None:
        """Kept for the rest of the day (saved by finish)."""
        hosts = self._unreachable(today or date.today())
        if hosts.get(host) != {"problem": problem, "rules": rules}:
            hosts[host] = {"problem": problem, "rules": rules}
            self._hosts_dirty = True

    def _unreachable(self, today: date) -> dict[str, Any]:
        if self._hosts is None or self._hosts[0] != today:
            try:
                found = json.loads(unreachable_path(self.folder, today).read_text("utf-8"))
            except (OSError, ValueError):
                found = None
            self._hosts = (today, found if isinstance(found, dict) else {})
        return self._hosts[1]

    def _save_unreachable(self, today: date) -> None:
        """Today's file, if there is anything to keep; every other day's is deleted."""
        if self._hosts_dirty and self._hosts is not None and self._hosts[0] == today:
            self._ensure(self.folder)
            text = json.dumps(self._hosts[1], sort_keys=True, indent=1)
            write_atomically(unreachable_path(self.folder, today), text.encode("utf-8"))
            self._hosts_dirty = False
        keep = unreachable_path(self.folder, today).name
        for old in self.folder.glob("unreachable-*.json"):
            if old.name != keep:
                with contextlib.suppress(OSError):  # another build's, gone already
                    old.unlink()

    # -- thumbnails and source facts --------------------------------------------------

    def thumb(self, name: str) -> Path:
        return self.thumbs_dir / name

    def thumb_names(self) -> set[str]:
        """The names of every finished thumbnail, from one listing of the folder."""
        try:
            return {e.name for e in os.scandir(self.thumbs_dir) if not e.name.startswith(".")}
        except OSError:
            return set()

    def prepare_thumbs(self) -> Path:
        self._ensure(self.thumbs_dir)
        return self.thumbs_dir

    def source(self, digest: str, limits: tuple[int, int] | None = None
               ) -> SourceInfo | str | None:
        """What we learnt decoding a source: its facts, a problem (str), or None if unknown.

        With `limits` (max_pixels, max_bytes), a problem met under other limits is unknown:
        it may have been the limit, and a refusal must not outlive the setting behind it."""
        entry = self._index["sources"].get(digest)
        if not isinstance(entry, dict):
            return None
        if "problem" in entry:
            if limits is not None and entry.get("limits") != list(limits):
                return None
            return str(entry["problem"])
        try:
            return SourceInfo(**entry)
        except TypeError:
            return None

    def remember(self, digest: str, outcome: SourceInfo | str,
                 limits: tuple[int, int] | None = None) -> None:
        """Keep a source's facts, or its problem with the limits it was met under."""
        entry: dict[str, object] = (
            {"problem": outcome, "limits": list(limits or ())} if isinstance(outcome, str)
            else asdict(outcome))
        if self._index["sources"].get(digest) != entry:
            self._index["sources"][digest] = entry
            self._dirty = True

    def forget(self, digest: str) -> None:
        if self._index["sources"].pop(digest, None) is not None:
            self._dirty = True

    def known_digest(self, path: str, stat: os.stat_result) -> str | None:
        """The digest recorded for a local file, if it cannot have changed since."""
        self._files_seen.add(path)
        entry = self._index["files"].get(path)
        if not isinstance(entry, list) or len(entry) != 5:
            return None
        size, mtime, inode, digest, recorded = entry
        unchanged = (size, mtime, inode) == (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        return str(digest) if unchanged and recorded - mtime > RACY_NS else None

    def remember_digest(self, path: str, stat: os.stat_result, digest: str) -> None:
        entry = [stat.st_size, stat.st_mtime_ns, stat.st_ino, digest, time.time_ns()]
        self._index["files"][path] = entry
        self._dirty = True

    # -- bookkeeping ------------------------------------------------------------------

    def finish(
        self, thumbs: set[str], digests: set[str], urls: set[str], today: date | None = None
    ) -> int:
        """Note what this build used, delete what nothing used for a while, save the index.

        Returns how many files were deleted."""
        today = today or date.today()
        entries = self._entries()
        used = {f"thumbs/{n}" for n in thumbs}
        used |= {f"originals/{d}" for d in digests} | {f"sources/{d}" for d in digests}
        if any(entry.startswith("remote/") for entry in entries):
            named = self._named
            used |= {f"remote/{named.get(u) or record_name(u)}" for u in urls}
        used &= entries  # a URL never downloaded (offline) has nothing to keep or prune
        deleted = 0
        stamps: dict[str, str] = self._index["used"]
        for key in sorted(entries | set(stamps)):
            if key in used:
                self._stamp(key, today)
                continue
            if key not in entries:  # gone already: forget its stamp
                del stamps[key]
                self._dirty = True
                continue
            last = _day(stamps.get(key)) or self._stamp(key, today)
            if today - last > timedelta(days=PRUNE_AFTER_DAYS):
                deleted += self._delete(key)
        self._save_unreachable(today)
        for path in set(self._index["files"]) - self._files_seen:
            del self._index["files"][path]
            self._dirty = True
        if self._dirty:
            self._save_index()
        return deleted

    def _entries(self) -> set[str]:
        found = {f"sources/{d}" for d in self._index["sources"]}
        for folder in (self.thumbs_dir, self.originals_dir, self.remote_dir):
            try:
                names = [e.name for e in os.scandir(folder) if not e.name.startswith(".")]
            except OSError:
                continue
            found |= {f"{folder.name}/{name}" for name in names}
        return found

    def _stamp(self, key: str, today: date) -> date:
        if self._index["used"].get(key) != today.isoformat():
            self._index["used"][key] = today.isoformat()
            self._dirty = True
        return today

    def _delete(self, key: str) -> int:
        kind, _, name = key.partition("/")
        self._index["used"].pop(key, None)
        self._dirty = True
        if kind == "sources":
            self._index["sources"].pop(name, None)
            return 0
        try:
            (self.folder / kind / name).unlink()
        except OSError:
            return 0
        return 1

    def _load_index(self) -> dict[str, Any]:
        try:
            index = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            index = None
        if not isinstance(index, dict) or index.get("version") != INDEX_VERSION:
            index = {"version": INDEX_VERSION}
        for part in ("sources", "files", "used"):
            if not isinstance(index.get(part), dict):
                index[part] = {}
        return index

    def _save_index(self) -> None:
        self._ensure(self.folder)
        text = json.dumps(self._index, sort_keys=True, separators=(",", ":"))
        write_atomically(self.index_path, text.encode("utf-8"))
        self._dirty = False

    @staticmethod
    def _ensure(*folders: Path) -> None:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:40]


def record_name(url: str) -> str:
    """The file name of a URL's download record in the `remote` folder."""
    return f"{url_key(url)}.json"


def _day(text: object) -> date | None:
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        return None
