"""Typed readers for YAML nodes: each turns one node into one Python value or a diagnostic.

Front matter and site.yaml are both read through these, so every field of every file gets
the same rules: scalars are read by the field's schema (the text `no` is a string where a
string is expected), text is cleaned of control characters, URLs must be http(s), and every
problem is reported with the line of the node and the dotted path of the field.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo
from urllib.parse import quote, urlsplit

import yaml

from .diagnostics import Diagnostics
from .frontmatter import kind_of

_NULL_TAG = "tag:yaml.org,2002:null"
_INTEGER = re.compile(r"[-+]?[0-9]+")
_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}
HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?",
    re.IGNORECASE,
)
MAX_URL_LENGTH = 4096
MIN_YEAR, MAX_YEAR = 1900, 2200
_DATE_HINT = "a date and time like 2020-01-24T18:24:00Z"

# Characters that must never reach a page or feed: C0/C1 controls (tab and newline are
# handled as whitespace), lone surrogates (unencodable), the 66 Unicode noncharacters
# (U+FDD0-U+FDEF and the last two of every plane: forbidden in HTML, invalid in feeds), and
# the invisible bidirectional embeddings, overrides and isolates (U+202A-U+202E,
# U+2066-U+2069): one left open in a title reverses the text after it wherever the title is
# shown (the "Trojan Source" trick); right-to-left scripts are laid out without them.
_UNWANTED = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
    "\ufdd0-\ufdef\ufffe\uffff]"
)
# The other planes' two noncharacters: a class of 32 single characters is tried character
# by character, so it runs only on text beyond the Basic Multilingual Plane (emoji), rare.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_ASTRAL_UNWANTED = re.compile("[" + "".join(chr(plane * 0x10000 + last) for plane in range(1, 17)
                                            for last in (0xFFFE, 0xFFFF)) + "]")
_WHITESPACE = re.compile(r"\s+")
_ASCII_INVISIBLE = re.compile(r"[\x00-\x20\x7f]")


def remove_unwanted(text: str) -> str:
    """`text` without the characters that must never reach a page or feed (see _UNWANTED)."""
    text = _UNWANTED.sub("", text)
    return _ASTRAL_UNWANTED.sub("", text) if _ASTRAL.search(text) else text


def clean_text(text: str, *, single_line: bool = True) -> str:
    """Remove control and illegal characters; fold whitespace for one-line fields."""
    if text.isascii() and text.isprintable():  # most text: nothing to remove or normalise
        return text if not single_line else (
            text.strip() if "  " not in text else _WHITESPACE.sub(" ", text).strip())
    text = remove_unwanted(unicodedata.normalize("NFC", text.replace("\r\n", "\n")))
    if single_line:
        return _WHITESPACE.sub(" ", text).strip()
    return text.replace("\r", "\n")


# Characters that show nothing on their own: format characters (zero-width space, soft
# hyphen, BOM), spaces, combining marks with nothing to combine with, and the Hangul
# fillers, which are letters that are drawn blank.
_BLANK_CATEGORIES = frozenset({"Cf", "Zs", "Zl", "Zp", "Mn", "Me", "Cc"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


def is_visible(text: str) -> bool:
    """Whether `text` shows anything: a title of zero-width spaces and soft hyphens made a
    blank headline on pages and in feeds."""
    if text.isascii():
        return bool(text.strip())
    return any(unicodedata.category(char) not in _BLANK_CATEGORIES
               and char not in _BLANK_LETTERS for char in text)


_MINUTE = timedelta(minutes=1)


def _offset_problem(offset: timedelta | None) -> str | None:
    """Feeds, sitemaps and HTML take offsets in whole minutes, and real ones are within
    -12:00 and +14:00."""
    if not offset:  # None, or UTC: most dates
        return None
    if offset % _MINUTE:
        return f"the offset {_offset_text(offset)} is not in whole minutes"
    if not timedelta(hours=-12) <= offset <= timedelta(hours=14):
        return f"the offset {_offset_text(offset)} is not a real one (-12:00 to +14:00)"
    return None


def _offset_text(offset: timedelta) -> str:
    sign, size = ("-", -offset) if offset < timedelta(0) else ("+", offset)
    minutes, seconds = divmod(int(size.total_seconds()), 60)
    text = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return text + (f":{seconds:02d}" if seconds else "")


def local_time(naive: datetime, timezone: tzinfo) -> datetime:
    """A wall-clock time in `timezone`, as the instant it names. A time that never existed
    (skipped when clocks went forward) becomes the one it is read as (01:30 in London's
    spring gap is 02:30 summer time); where the zone's offset then was not whole minutes
    (the local mean times before about 1940, like Amsterdam's +00:19:32), the instant is
    kept in UTC, which every format can write."""
    aware = naive.replace(tzinfo=timezone).astimezone(UTC)
    if _offset_problem(aware.astimezone(timezone).utcoffset()):
        return aware
    return aware.astimezone(timezone)


def is_null(node: yaml.Node | None) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG)


class NodeReader:
    """Reads the nodes of one YAML document, reporting into `diagnostics` with file lines."""

    def __init__(self, path: str, first_line: int, diagnostics: Diagnostics) -> None:
        self.path = path
        self.first_line = first_line
        self.diagnostics = diagnostics
        self._mappings: dict[int, yaml.MappingNode] = {}  # id of a fields() dict -> its node

    def line(self, node: yaml.Node) -> int:
        return self.first_line + node.start_mark.line

    def error(self, node: yaml.Node | None, field: str, message: str) -> None:
        line = self.line(node) if node is not None else max(self.first_line - 1, 1)
        self.diagnostics.error(self.path, line, field, message)

    def warning(self, node: yaml.Node | None, field: str, message: str) -> None:
        line = self.line(node) if node is not None else max(self.first_line - 1, 1)
        self.diagnostics.warning(self.path, line, field, message)

    # -- containers ---------------------------------------------------------------------

    def fields(self, node: yaml.Node | None, field: str) -> dict[str, yaml.Node] | None:
        """A mapping's values by key (keys were checked for duplicates when composed)."""
        if is_null(node):
            return None
        assert node is not None
        if not isinstance(node, yaml.MappingNode):
            self.error(node, field, f"expected a mapping of fields, got {kind_of(node)}")
            return None
        found = {str(k.value): v for k, v in node.value}
        self._mappings[id(found)] = node  # for the lines of unknown keys (rare): see unknown
        return found

    def items(self, node: yaml.Node | None, field: str, what: str) -> Iterator[yaml.Node]:
        """The items of a list (a missing or null list is empty)."""
        if is_null(node):
            return iter(())
        assert node is not None
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, field, f"expected a list of {what}, got {kind_of(node)}")
            return iter(())
        return iter(node.value)

    def unknown(
        self,
        fields: dict[str, yaml.Node],
        known: set[str],
        prefix: str,
        ignored: frozenset[str] = frozenset(),
    ) -> None:
        """Warn about fields we do not know (likely typos); their values are never used."""
        if fields.keys() <= known or fields.keys() - known <= ignored:
            return  # nearly always: asked for every mapping of every story (and `secured`)
        import difflib

        mapping = self._mappings.get(id(fields))
        key_of = {id(v): k for k, v in mapping.value} if mapping else {}  # value -> its key
        choices = sorted(known)
        for name in sorted(set(fields) - known - ignored):
            close = difflib.get_close_matches(name, choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            shown = name or "''"  # an empty key still needs a name in the message
            where = f"{prefix}.{shown}" if prefix else shown
            self.warning(key_of.get(id(fields[name]), fields[name]), where,
                         f"unknown field, ignored{hint}")

    # -- scalars ------------------------------------------------------------------------

    def scalar(self, node: yaml.Node | None, field: str, expected: str) -> str | None:
        """The raw text of a scalar node, whatever YAML would have resolved it to."""
        if is_null(node):
            return None
        assert node is not None
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, field, f"expected {expected}, got {kind_of(node)}")
            return None
        return str(node.value)

    def text(
        self,
        node: yaml.Node | None,
        field: str,
        *,
        required: bool = False,
        single_line: bool = True,
        max_length: int = 100_000,
    ) -> str | None:
        raw = self.scalar(node, field, "text")
        if raw is None:
            if required and (node is None or is_null(node)):
                self.error(node, field, "is required" if node is None else "must not be empty")
            return None
        value = clean_text(raw, single_line=single_line)
        if required and not is_visible(value):
            self.error(node, field, "must not be empty")
            return None
        if len(value) > max_length:
            self.error(node, field, f"is too long ({len(value)} characters, at most {max_length})")
            return None
        return value

    def integer(
        self, node: yaml.Node | None, field: str, *, minimum: int, maximum: int
    ) -> int | None:
        raw = self.scalar(node, field, "a whole number")
        if raw is None:
            return None
        if not _INTEGER.fullmatch(raw.strip()):
            self.error(node, field, f"expected a whole number, got {raw!r}")
            return None
        value = int(raw.strip())
        if not minimum <= value <= maximum:
            self.error(node, field, f"expected a number from {minimum} to {maximum}, got {value}")
            return None
        return value

    def boolean(self, node: yaml.Node | None, field: str) -> bool | None:
        raw = self.scalar(node, field, "true or false")
        if raw is None:
            return None
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        self.error(node, field, f"expected true or false, got {raw!r}")
        return None

    def timestamp(
        self, node: yaml.Node | None, field: str, timezone: tzinfo, *, required: bool = False
    ) -> datetime | None:
        """An aware datetime; naive values are taken in the site's timezone."""
        raw = self.scalar(node, field, _DATE_HINT)
        if raw is None:
            if required and is_null(node):  # not a list or mapping: that was told
                self.error(node, field, "is required" if node is None else "must not be empty")
            return None
        parsed = parse_datetime(raw.strip())
        if parsed is None:
            self.error(node, field, f"{no_such_day(raw.strip())}expected {_DATE_HINT}, "
                       f"got {raw!r}")
            return None
        if not MIN_YEAR <= parsed.year <= MAX_YEAR:
            self.error(
                node, field, f"year {parsed.year} is out of range ({MIN_YEAR} to {MAX_YEAR})"
            )
            return None
        if parsed.tzinfo is not None:
            problem = _offset_problem(parsed.utcoffset())
            if problem:
                self.error(node, field, problem)
                return None
        else:
            parsed = local_time(parsed, timezone)
        # the year pages show (and issues count): another only around the first and last
        shown = parsed.year if MIN_YEAR < parsed.year < MAX_YEAR else parsed.astimezone(
            timezone).year
        if not MIN_YEAR <= shown <= MAX_YEAR:
            self.error(node, field, f"is in the year {shown} in the site's timezone, out of "
                       f"range ({MIN_YEAR} to {MAX_YEAR})")
            return None
        return parsed

    def calendar_date(self, node: yaml.Node | None, field: str) -> date | None:
        raw = self.scalar(node, field, "a date like 2020-01-20")
        if raw is None:
            return None
        try:
            value = date.fromisoformat(raw.strip())
        except ValueError:
            self.error(node, field, f"expected a date like 2020-01-20, got {raw!r}")
            return None
        if not MIN_YEAR <= value.year <= MAX_YEAR:
            self.error(node, field, f"year {value.year} is out of range")
            return None
        return value

    def url(self, node: yaml.Node | None, field: str, *, required: bool = False) -> str | None:
        raw = self.scalar(node, field, "an http(s) URL")
        if raw is None:
            if required and is_null(node):  # not a list or mapping: that was told
                self.error(node, field, "is required" if node is None else "must not be empty")
            return None
        value = raw.strip()
        if is_plain_url(value):
            return value
        problem = url_problem(value)
        if problem:
            self.error(node, field, f"expected an http(s) URL, got {shorten(raw)!r}{problem}")
            return None
        return normalise_url(value)

    def hostname(self, node: yaml.Node | None, field: str) -> str | None:
        raw = self.text(node, field)
        if raw is None:
            return None
        value = raw.lower().rstrip(".")
        if not HOSTNAME.fullmatch(value):
            self.error(
                node, field, f"expected a domain name like example.com, got {shorten(raw)!r}"
            )
            return None
        return value


def shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Most URLs in content are plain: a lower-case scheme and host, no port, no user, printable
# ASCII. For those the checks below pass and normalise_url returns them unchanged, so they
# skip both (a test holds the two paths to the same answers).
_PLAIN_LABEL = r"(?!xn--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN_URL = re.compile(  # a host of plain labels, the last one not a number (an IPv4 address)
    rf"https?://(?:{_PLAIN_LABEL}\.)*(?=[a-z0-9-]*[a-z]){_PLAIN_LABEL}"
    r"(?:/[\x21\x23-\x3b\x3d\x3f-\x5a\x5f\x61-\x7a\x7e]*)?"
)
# What may stay as written in a URL's path, query and fragment (RFC 3986's unreserved and
# reserved characters, and `%` of the escapes already there); anything else, such as
# `|`, `[`, `^` or `é`, is percent-encoded, as browsers do: feeds need real URIs.
_URL_SAFE = "!#$%&'()*+,-./:;=?@_~"


def is_plain_url(value: str) -> bool:
    return (
        len(value) <= MAX_URL_LENGTH
        and value.isascii()
        and _PLAIN_URL.fullmatch(value) is not None
        and "?#" not in value
        and value[-1] not in "?#"
    )


def url_problem(value: str) -> str:
    """Why `value` is not an acceptable absolute http(s) URL ('' when it is)."""
    if not value:
        return " (it is empty)"
    if len(value) > MAX_URL_LENGTH:
        return f" (longer than {MAX_URL_LENGTH} characters)"
    if _ASCII_INVISIBLE.search(value) or (not value.isascii() and any(
        ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs", "Cf") for ch in value
    )):
        return " (it contains spaces or control characters)"
    if any(ch in value for ch in '<>"`\\'):
        return " (it contains characters that are not allowed in URLs)"
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return " (it is malformed)"
    if parts.scheme.lower() not in ("http", "https"):
        return " (only http and https links are allowed)"
    if not host:
        return " (it has no host)"
    if "@" in parts.netloc:  # https://news.example.com@evil.example/ leads to evil.example
        return " (it has a user name or password)"
    return _host_problem(host)


def _host_problem(host: str) -> str:
    """Why `host` (urlsplit's: lower case, no brackets) is not one a browser would take:
    `x..example` and `xn--` are invalid URLs for the HTML checker and for feed readers."""
    if ":" in host:  # an IPv6 address, which urlsplit checked
        return ""
    name = host[:-1] if host.endswith(".") else host
    if name.rpartition(".")[2].isdigit():  # a number last: browsers read an IPv4 address
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return " (its host is not a valid IP address)"
        return ""
    try:
        name.encode("idna").decode("idna")  # empty or long labels, bad xn-- labels
    except UnicodeError:
        return " (its host is not a valid domain name)"
    return ""


def normalise_url(value: str) -> str:
    """Lower-case the scheme and host (an international host in its ASCII form) and
    percent-encode what a URI may not hold in its path, query and fragment; the rest is
    kept exactly as written."""
    parts = urlsplit(value)
    netloc = parts.netloc
    if "@" not in netloc:
        netloc = _ascii_host(netloc.lower())
    return parts._replace(
        scheme=parts.scheme.lower(), netloc=netloc, path=quote(parts.path, safe=_URL_SAFE),
        query=quote(parts.query, safe=_URL_SAFE), fragment=quote(parts.fragment, safe=_URL_SAFE),
    ).geturl()


def _ascii_host(netloc: str) -> str:
    if netloc.isascii():
        return netloc
    host, colon, port = netloc.rpartition(":") if "]" not in netloc else (netloc, "", "")
    if not colon or not port.isdigit():
        host, colon, port = netloc, "", ""
    try:
        return host.encode("idna").decode("ascii") + colon + port
    except UnicodeError:
        return netloc


_ISO_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ]|$)")


def no_such_day(text: str) -> str:
    """`2020-02-30T10:00:00Z` has the right shape: say that the day itself does not exist
    (a curator reading "expected a date like ..." would see nothing wrong), else ""."""
    match = _ISO_DAY.match(text)
    if match is None:
        return ""
    year, month, day = (int(part) for part in match.groups())
    try:
        date(year, month, day)
    except ValueError:
        return f"there is no day {year}-{month:02d}-{day:02d}; "
    return ""


def parse_datetime(text: str) -> datetime | None:
    """ISO 8601 (with `Z`, `T` or space, optional offset) or RFC 2822 as feeds write it."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime  # 10 ms to import, for feeds' dates only

    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
