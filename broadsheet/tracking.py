"""What a page read while it rendered, so a later build can tell whether it would change.

A template gets `site` and its context objects wrapped in `Tracked` proxies. Every value it
reads through them is noted as a *fact*: the path it was read at (`site.issues[0].number`)
and a fingerprint of the value. Templates, static files and pictures note the facts they
depend on the same way. A page whose static key (template name, page head) and facts are all
unchanged would render the same bytes, because rendering is a pure function of what it read;
a rebuild skips it. Nothing here is a guess about what a theme uses: themes can read anything,
and whatever they read is what is checked.

Stories are fingerprinted by the digest of their file (their parsed form is a function of it)
plus the few fields assembly derives from other stories, so a fingerprint costs O(1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, Protocol

from markupsafe import Markup

from .model import Article, related_slugs

FactPath = tuple[Any, ...]
Facts = dict[FactPath, Any]
Derived = tuple[Any, Any]  # a story's fields set by assembly, and its fingerprint with them


class Remembered(Protocol):
    """What a story's cache entry keeps of its last fingerprint (buildcache.StoryEntry):
    for the same file read the same way, so only the derived fields can differ."""

    fingerprint: Derived | None

LEN, BOOL, TYPE, WHOLE = "#len", "#bool", "#type", "#whole"
# The model's classes that hold stories: fingerprinted through the stories' own fingerprints
# (cheap, and what assembly derived), never through repr.
AGGREGATES = frozenset({"Site", "Topic", "Issue", "Section", "Pager", "Feed", "Article"})


def digest(data: str) -> bytes:
    return hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def parts_digest(parts: Any) -> bytes | None:
    """A digest of fingerprint parts (see _PartsDigest), or None if some cannot be pickled."""
    try:
        return _PartsDigest()(parts)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return None


class _PartsDigest:
    """Digests of fingerprint parts (nested tuples and lists of str, bytes, int, float,
    bool and None), several times quicker than of their repr.

    The parts are pickled without a memo (the pickler's fast mode): the bytes then depend
    only on the values, never on which equal objects happen to be shared, so equal parts
    always give the same digest, in any process. The one pickler and buffer are reused."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._pickler = pickle.Pickler(self._buffer, protocol=5)
        self._pickler.fast = True

    def __call__(self, parts: Any) -> bytes:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._pickler.dump(parts)
        return hashlib.blake2b(buffer.getbuffer(), digest_size=16).digest()


class Fingerprints:
    """Fingerprints of the model values of one build, memoised for the shared aggregates."""

    def __init__(
        self, parsed: Mapping[str, str], known: Mapping[str, Remembered] | None = None
    ) -> None:
        self.parsed = parsed  # article.source -> digest of its file and how it was read
        # article.source -> what the last build found for the same `parsed` (a story's
        # cache entry): with the same derived fields, the same fingerprint, not hashed again
        self.known: Mapping[str, Remembered] = known or {}
        self.found: dict[str, Derived] = {}  # those this build hashed, for the next
        self._memo: dict[int, tuple[object, Any]] = {}  # id -> (the object, kept alive; fp)
        self._fields: dict[type, tuple[str, ...]] = {}
        self._digest = _PartsDigest()

    def article(self, article: Article) -> Any:
        """A story's fingerprint: its file's digest and what assembly set from other stories."""
        found = self._memo.get(id(article))
        if found is not None and found[0] is article:
            return found[1]
        source = article.source
        base = self.parsed.get(source)
        if base is None:  # not from a parsed file (tests build models by hand)
            value = self._structure(article)
        else:
            derived = (
                article.issue,
                [(t.name, t.slug) for t in article.topics],
                related_slugs(article),
            )
            entry = self.known.get(source)
            last = entry.fingerprint if entry is not None else None
            if last is not None and last[0] == derived:
                value = last[1]
            else:
                value = ("A", self._digest((base, derived)))
                self.found[source] = (derived, value)
        self._memo[id(article)] = (article, value)
        return value

    def of(self, value: Any) -> Any:
        """Any value's fingerprint: equal fingerprints mean a template sees the same thing."""
        kind = type(value)
        if kind is str:
            return value if len(value) <= 200 else ("h", digest(value))
        if value is None or kind is bool or kind is int:
            return (kind.__name__, value)
        if kind is Article:
            return self.article(value)
        if kind is float:
            return ("f", repr(value))
        if kind is datetime:
            return ("dt", value.isoformat(), str(value.tzinfo))
        if kind is date:
            return ("d", value.isoformat())
        if kind is Markup:
            return ("M", digest(str(value)))
        found = self._memo.get(id(value))
        if found is not None and found[0] is value:
            return found[1]
        result = self._structure(value)
        self._memo[id(value)] = (value, result)
        return result

    def _items(self, value: tuple[Any, ...] | list[Any]) -> list[Any]:
        """The fingerprints of a sequence's items. Its stories' are mostly known already
        (an issue's sections repeat its stories; every list holds stories fingerprinted
        for their pages): those are taken from the memo here, without a call each."""
        memo, article, of = self._memo, self.article, self.of
        parts = []
        for item in value:
            if type(item) is Article:
                found = memo.get(id(item))
                parts.append(found[1] if found is not None and found[0] is item
                             else article(item))
            else:
                parts.append(of(item))
        return parts

    def _structure(self, value: Any) -> Any:
        if isinstance(value, tuple | list):
            parts: Any = self._items(value)
        elif type(value).__name__ not in AGGREGATES and dataclasses.is_dataclass(value):
            # Plain values (images, page heads, settings): their repr says everything.
            return ("r", digest(repr(value)))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            names = self._fields.get(type(value))
            if names is None:
                names = tuple(f.name for f in dataclasses.fields(value))
                self._fields[type(value)] = names
            parts = (type(value).__qualname__, [self.of(getattr(value, n)) for n in names])
        elif isinstance(value, Mapping):
            parts = sorted((repr(k), self.of(v)) for k, v in value.items())
        elif isinstance(value, frozenset | set):
            parts = sorted(repr(self.of(v)) for v in value)
        elif isinstance(value, str):  # str subclasses
            parts = (type(value).__qualname__, str(value))
        else:
            parts = (type(value).__qualname__, repr(value))
        return ("s", self._digest(parts))


class Recorder:
    """Collects the facts one rendering reads."""

    def __init__(self, fingerprints: Fingerprints) -> None:
        self.fp = fingerprints
        self.facts: Facts = {}

    def note(self, path: FactPath, value: Any) -> None:
        self.facts[path] = value

    def wrap(self, value: Any, path: FactPath) -> Any:
        """`value` as read at `path`: leaves are noted, containers come back tracked."""
        kind = type(value)
        if kind is Article:
            self.facts[path] = self.fp.article(value)
            return value
        if kind is tuple or kind is list:
            return TrackedSeq(value, path, self)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            self.facts[(*path, TYPE)] = kind.__qualname__
            return Tracked(value, path, self)
        self.facts[path] = self.fp.of(value)
        return value


def _obj(proxy: Any) -> Any:
    return object.__getattribute__(proxy, "_obj")


def unwrap(value: Any) -> Any:
    return _obj(value) if type(value) in (Tracked, TrackedSeq) else value


class _Compared:
    """Comparing, hashing or printing a tracked value uses all of it: noted as a whole."""

    __slots__ = ()

    def _whole(self) -> Any:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return bool(self._whole() == _noted(other))

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self._whole())

    def __str__(self) -> str:
        return str(self._whole())

    def __repr__(self) -> str:
        return repr(self._whole())


class Tracked(_Compared):
    """A model object whose every read is noted. Properties and methods run with the proxy
    as `self`, so what they read is noted too; isinstance() sees the wrapped class."""

    __slots__ = ("_obj", "_path", "_rec")

    def __init__(self, obj: Any, path: FactPath, recorder: Recorder) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_rec", recorder)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, Issue) is True
        return type(_obj(self))

    def __getattr__(self, name: str) -> Any:
        obj = _obj(self)
        if name.startswith("__"):
            return getattr(obj, name)
        attribute = getattr(type(obj), name, None)
        if isinstance(attribute, property) and attribute.fget is not None:
            return attribute.fget(self)
        if isinstance(attribute, types.FunctionType):
            return types.MethodType(attribute, self)
        path = object.__getattribute__(self, "_path")
        return object.__getattribute__(self, "_rec").wrap(getattr(obj, name), (*path, name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(name)

    def _whole(self) -> Any:
        obj = _obj(self)
        recorder = object.__getattribute__(self, "_rec")
        path = object.__getattribute__(self, "_path")
        recorder.note((*path, WHOLE), recorder.fp.of(obj))
        return obj

    def __bool__(self) -> bool:
        return True


class TrackedSeq(_Compared):
    """A tuple or list read through a proxy: its length and items are noted as they are used."""

    __slots__ = ("_obj", "_path", "_rec")

    def __init__(self, obj: Any, path: FactPath, recorder: Recorder) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_rec", recorder)

    def _noted_len(self) -> int:
        obj, path, recorder = self._parts()
        recorder.facts[(*path, LEN)] = len(obj)
        return len(obj)

    def _parts(self) -> tuple[Any, FactPath, Recorder]:
        return (
            object.__getattribute__(self, "_obj"),
            object.__getattribute__(self, "_path"),
            object.__getattribute__(self, "_rec"),
        )

    def __len__(self) -> int:
        return self._noted_len()

    def __bool__(self) -> bool:
        obj, path, recorder = self._parts()
        recorder.facts[(*path, BOOL)] = bool(obj)  # `{% if site.articles %}`: not its length
        return bool(obj)

    def __iter__(self) -> Iterator[Any]:
        obj, path, recorder = self._parts()
        self._noted_len()
        for index, item in enumerate(obj):
            yield recorder.wrap(item, (*path, index))

    def __reversed__(self) -> Iterator[Any]:
        obj, path, recorder = self._parts()
        size = self._noted_len()
        for index in range(size - 1, -1, -1):
            yield recorder.wrap(obj[index], (*path, index))

    def __getitem__(self, key: Any) -> Any:
        obj, path, recorder = self._parts()
        if isinstance(key, slice):
            step = ("#slice", key.start, key.stop, key.step)
            return TrackedSeq(obj[key], (*path, step), recorder)
        if not isinstance(key, int):
            raise TypeError(f"sequence indices must be integers, not {type(key).__name__}")
        if not -len(obj) <= key < len(obj):
            self._noted_len()  # the IndexError depends on the length
        return recorder.wrap(obj[key], (*path, key))

    def __contains__(self, item: object) -> bool:
        return _noted(item) in self._whole()

    def _whole(self) -> Any:
        obj, path, recorder = self._parts()
        recorder.note((*path, WHOLE), recorder.fp.of(obj))
        return obj

    def __add__(self, other: Any) -> Any:
        return self._whole() + _noted(other)

    def __radd__(self, other: Any) -> Any:
        return _noted(other) + self._whole()

    def index(self, item: object) -> int:
        return int(self._whole().index(_noted(item)))

    def count(self, item: object) -> int:
        return int(self._whole().count(_noted(item)))


def _noted(value: Any) -> Any:
    """The plain value behind a proxy, its whole value noted (it is compared as a whole)."""
    if type(value) in (Tracked, TrackedSeq):
        return value._whole()
    return value


# -- the recorder of the rendering in progress ----------------------------------------------

_current: list[Recorder] = []


def note(path: FactPath, value: Any) -> None:
    """For helpers that templates call (pictures, assets, templates loaded): note a fact."""
    if _current:
        _current[-1].note(path, value)


def note_of(path: FactPath, value: Any) -> None:
    """Note a fact whose value is fingerprinted (a model value, not a digest already)."""
    if _current:
        recorder = _current[-1]
        recorder.note(path, recorder.fp.of(value))


@contextmanager
def recording(recorder: Recorder) -> Iterator[Recorder]:
    _current.append(recorder)
    try:
        yield recorder
    finally:
        _current.pop()


# -- checking facts against a new build -----------------------------------------------------

_MISSING = object()
Special = Callable[[FactPath], Any]


class FactChecker:
    """Evaluates recorded fact paths against this build's model, memoised per root."""

    def __init__(self, fingerprints: Fingerprints, specials: Mapping[str, Special]) -> None:
        self.fp = fingerprints
        self.specials = specials  # "#picture", "#template", ...: facts not read from a model
        self._memo: dict[tuple[int, FactPath], Any] = {}

    def value(self, roots: Mapping[str, Any], path: FactPath) -> Any:
        head = path[0]
        special = self.specials.get(head)
        if special is not None:
            key = (0, path)
            found = self._memo.get(key, _MISSING)
            if found is _MISSING:
                found = self._memo[key] = special(path)
            return found
        root = roots.get(head, _MISSING)
        if root is _MISSING:
            return _MISSING
        key = (id(root), path)
        found = self._memo.get(key, _MISSING)
        if found is _MISSING:
            found = self._memo[key] = self._evaluate(root, path[1:])
        return found

    def _evaluate(self, value: Any, steps: FactPath) -> Any:
        try:
            for position, step in enumerate(steps):
                if step == LEN:
                    return len(value)
                if step == BOOL:
                    return bool(value)
                if step == TYPE:
                    return type(value).__qualname__
                if step == WHOLE:
                    return self.fp.of(value)
                if type(step) is int:
                    value = value[step]
                elif type(step) is tuple:
                    value = value[slice(step[1], step[2], step[3])]
                else:
                    value = getattr(value, step)
                if position == len(steps) - 1:
                    return self.fp.of(value)
            return self.fp.of(value)
        except (AttributeError, IndexError, KeyError, TypeError):
            return _MISSING

    def changed(self, roots: Mapping[str, Any], facts: Facts) -> FactPath | None:
        """The first recorded fact that no longer holds, or None when all still hold."""
        for path, seen in facts.items():
            if self.value(roots, path) != seen:
                return path
        return None


def describe(path: FactPath) -> str:
    """A fact path as a reader would write it: `site.issues[0].number`."""
    text = str(path[0])
    for step in path[1:]:
        if step in (LEN, BOOL, TYPE, WHOLE):
            text += {LEN: " (its length)", BOOL: " (empty or not)", TYPE: "", WHOLE: ""}[step]
        elif type(step) is int:
            text += f"[{step}]"
        elif type(step) is tuple:
            start, stop, stride = (("" if v is None else v) for v in step[1:])
            text += f"[{start}:{stop}" + (f":{stride}]" if stride != "" else "]")
        else:
            text += f".{step}"
    return text
