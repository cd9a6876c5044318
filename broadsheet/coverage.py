"""Related coverage: recognise one outlet page behind its AMP, CDN and tracking variants.

Aggregated coverage lists the same story more than once: the canonical and AMP URLs of one
page, a syndicated copy with another id, tracking parameters from an RSS feed. We fold those
into one entry (the highest-quality copy) and keep the other links as "also at".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .model import Article, Coverage, CoverageKeys, Related

_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "hsa_", "oly_")
_TRACKING = {
    "fbclid",
    "gclid",
    "dclid",
    "msclkid",
    "yclid",
    "igshid",
    "feedtype",
    "feedname",
    "cmpid",
    "cmp",
    "ref",
    "ref_src",
    "ref_url",
    "ncid",
    "ocid",
    "smid",
    "smtyp",
    "taid",
    "partner",
    "wt.mc_id",
    "s_cid",
    "icid",
    "sr_share",
    "share",
    "amp",
    "outputtype",
    "amp_js_v",
    "usqp",
    "_ga",
    "_gl",
    "cid",
    "rss",
    "at_medium",
    "at_campaign",
}
_HOST_PREFIXES = ("www.", "m.", "mobile.", "amp.")
_AMP_HOST = ".cdn.ampproject.org"
_AMP_CACHE = re.compile(r"^/(?:c|v|i)/(s/)?(.+)$")
_AMP_PATH = re.compile(r"(^|/)(?:platform/)?amp(?=/|$)", re.IGNORECASE)
_AMP_SUFFIX = re.compile(r"\.amp(\.html?)$", re.IGNORECASE)
_WORDS = re.compile(r"\w+")
# Most coverage URLs: a lower-case host, no port, query or fragment, a printable ASCII path.
_PLAIN = re.compile(r"https?://([a-z0-9][a-z0-9.-]*)(/[\x21\x22\x24-\x3e\x40-\x7e]*)?")


def clean_url(url: str) -> str:
    """The page's own URL: out of the Google AMP cache, without AMP path parts, tracking
    parameters or fragment. Scheme, host and the order of other parameters are kept."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower().rstrip(".")
    if host.endswith(_AMP_HOST):
        inner = _AMP_CACHE.match(parts.path)
        if inner:
            scheme = "https://" if inner.group(1) else "http://"
            query = f"?{parts.query}" if parts.query else ""
            return clean_url(scheme + inner.group(2) + query)
    path = parts.path
    if "amp" in path.lower():  # most paths have no AMP part: skip both substitutions
        path = _AMP_PATH.sub(r"\1", path)
        path = _AMP_SUFFIX.sub(r"\1", path)
    path = path.replace("//", "/") or "/"
    query = parts.query and urlencode(
        [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
         if not _is_tracking(key)]
    )
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, query, ""))


@lru_cache(maxsize=65536)
def canonical_url(url: str) -> str:
    """A comparison key for a URL: its clean_url without scheme, www/m/amp host prefixes,
    trailing slash or parameter order. Not a URL to link to."""
    plain = _PLAIN.fullmatch(url)
    if plain:
        # What the general way below gives such a URL, without splitting, joining and
        # splitting it again (every related item of every story is keyed by up to three
        # URLs, two of them AMP forms): a test holds the two ways to the same answers.
        host, path = plain.group(1).rstrip("."), plain.group(2) or ""
        if host.endswith(_AMP_HOST):
            inner = _AMP_CACHE.match(path)
            if inner:  # the AMP cache's copy: the key of the page it copies
                return canonical_url(("https://" if inner.group(1) else "http://")
                                     + inner.group(2))
        elif "//" not in path:
            if "amp" in path.lower():
                path = _AMP_SUFFIX.sub(r"\1", _AMP_PATH.sub(r"\1", path)).replace("//", "/")
            return _without_prefix(host) + path.rstrip("/")
    return _canonical(url)


def _canonical(url: str) -> str:
    parts = urlsplit(clean_url(url))
    host = _without_prefix((parts.hostname or "").rstrip("."))
    query = parts.query and urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return host + parts.path.rstrip("/") + (f"?{query}" if query else "")


def _without_prefix(host: str) -> str:
    for prefix in _HOST_PREFIXES:
        if host.startswith(prefix) and host.count(".") >= 2:
            return host[len(prefix) :]
    return host


def _is_tracking(key: str) -> bool:
    key = key.lower()
    return key in _TRACKING or key.startswith(_TRACKING_PREFIXES)


def title_key(outlet: str, title: str) -> str:
    """(outlet, title) as one comparison key, ignoring case, punctuation and spacing."""
    words = " ".join(_WORDS.findall(title.casefold()))
    return f"{outlet.casefold()}\x00{words}"


def related_keys(item: Related) -> set[str]:
    keys = {canonical_url(u) for u in (item.url, item.amp_url, item.cdn_amp_url) if u}
    outlet = item.provider.domain or item.provider.name
    if outlet and item.title:
        keys.add(title_key(outlet, item.title))
    return keys


def fold_coverage(
    items: Iterable[Related], own_urls: set[str]
) -> tuple[tuple[Related, frozenset[str]], ...]:
    """Deduplicate related items, keeping the curator's order of first appearance; each
    kept item comes with its comparison keys (worked out once per item).

    Items sharing a canonical URL or an (outlet, title) are one story; the highest-quality
    copy is kept and the others' distinct links become its `also`. Items that point at the
    story itself (`own_urls`, canonical) are dropped.
    """
    groups: list[list[Related]] = []
    keys_of: dict[int, frozenset[str]] = {}
    group_of: dict[str, int] = {}  # a key's group when the key was last seen; see `merged`
    merged: list[int] = []  # each group's group, itself until merged into an earlier one

    def current(group: int) -> int:
        while merged[group] != group:
            merged[group] = group = merged[merged[group]]  # halve the path as it is walked
        return group

    for item in items:
        keys = frozenset(related_keys(item))
        if keys & own_urls:
            continue
        keys_of[id(item)] = keys
        found = sorted({current(group_of[k]) for k in keys if k in group_of})
        if not found:
            index = len(groups)
            groups.append([item])
            merged.append(index)
        else:
            index = found[0]
            groups[index].append(item)
            # This item bridges groups: merge them. Their keys follow `merged` instead of
            # being rewritten one by one, which took the square of the count on hostile files.
            for other in found[1:]:
                groups[index].extend(groups[other])
                groups[other] = []
                merged[other] = index
        group_of.update({k: index for k in keys})
    kept = []
    for group in groups:
        if group:
            best = _keep_best(group)
            kept.append((best[0], keys_of[id(best[1])]))
    return tuple(kept)


def _keep_best(group: list[Related]) -> tuple[Related, Related]:
    """The group's best item with the others' links as its `also`, and the item it is."""
    best = max(group, key=lambda item: item.quality)  # ties: the first (max keeps it)
    seen = {canonical_url(best.url)}
    also = []
    for item in group:
        key = canonical_url(item.url)
        if key not in seen:
            seen.add(key)
            also.append(Coverage(outlet=item.provider.name or item.provider.domain, url=item.url))
    return (replace(best, also=tuple(also)) if also or best.also else best), best


def prepare_coverage(article: Article) -> Article:
    """Fold the story's related items and note their comparison keys, once, when its file
    is read: both depend on the file alone, so the build cache keeps them with the story."""
    own = canonical_url(article.url)
    folded = fold_coverage(article.related, {own})
    return replace(article, related=tuple(item for item, _ in folded),
                   coverage=CoverageKeys(own, tuple(keys for _, keys in folded)))
