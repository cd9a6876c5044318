"""Split a story file into its YAML front matter and Markdown body, keeping line numbers.

We compose YAML into nodes instead of loading it into Python values: nodes remember the line
of every key, so a diagnostic can point at `related[3].webUrl` on line 57, and the validator
reads scalars by the field's schema, so `title: no` stays the string "no" instead of the
YAML 1.1 boolean. Aliases, anchors, tags and duplicate keys are rejected here, once.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import yaml

from .diagnostics import Diagnostic

try:  # the C composer is several times faster and gives the same nodes and marks
    _Base: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Base = yaml.SafeLoader

_STR, _NULL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null"
_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_ASK = _NULLS | {"<<", "="}  # the plain scalars whose tag the full resolver must give
_SCALAR, _SEQUENCE = yaml.ScalarNode, yaml.SequenceNode


class _Loader(_Base):  # type: ignore[misc]
    """The safe loader with a quicker implicit resolver, called once per scalar.

    Readers take a scalar's raw text by the field's schema, so of YAML's implicit types only
    null matters, plus the two tags `_check_nodes` refuses (merge `<<` and value `=`); the
    full resolver is asked exactly for those, everything else is a plain string. `odd`
    says whether it gave either of those two tags."""

    odd = False

    def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:
        if kind is _SCALAR:
            if value in _ASK and implicit[0]:
                tag = str(super().resolve(kind, value, implicit))
                self.odd = self.odd or tag not in (_NULL, _STR)
                return tag
            return _STR
        return _SEQ if kind is _SEQUENCE else _MAP

    def descend_resolver(self, current_node: object, current_index: object) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None


_ALLOWED_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)
_FENCES = ("---", "...")
_ALIAS_PROBLEM = "YAML aliases (*name) are not allowed; repeat the value instead"
_DUPLICATE = "duplicate key "


@dataclass(frozen=True)
class FrontMatter:
    """A story's front matter as YAML nodes, plus its body and where each starts."""

    root: yaml.MappingNode
    first_line: int  # file line (1-based) of the first YAML line, after the opening ---
    body: str
    body_line: int
    # Keys the node check refused as repeated: the fields (the last of each key) are still
    # validated, so a file's every problem is told in one pass.
    problems: tuple[Diagnostic, ...] = ()

    def line(self, node: yaml.Node) -> int:
        """The 1-based line in the story file where `node` starts."""
        return self.first_line + node.start_mark.line


def parse_front_matter(text: str, path: str) -> FrontMatter | list[Diagnostic]:
    """Parse `text` (a whole story file); return the front matter or why it cannot be read."""
    split = _split(text, path)
    if isinstance(split, Diagnostic):
        return [split]
    yaml_text, first_line, body, body_line = split
    root, problems = _compose(yaml_text, path, first_line, what="front matter")
    if root is None or (problems and not _only_repeated_keys(root, problems)):
        # An alias may stand for a bomb, and a foreign tag or a merge key for anything:
        # the fields of such a file are not read.
        return problems
    return FrontMatter(root, first_line, body, body_line, tuple(problems))


def _only_repeated_keys(root: yaml.Node, problems: list[Diagnostic]) -> bool:
    """Whether all the node check found is repeated keys, with no alias or foreign tag
    hidden under a repeated key either (the check does not walk into those, but validation
    reads the last of each: aliases there could multiply its work without end)."""
    return (all(p.message.startswith(_DUPLICATE) for p in problems)
            and _plain_nodes(root, repeated_keys=True))


def compose_mapping(
    yaml_text: str, path: str, first_line: int, what: str
) -> yaml.MappingNode | list[Diagnostic]:
    """Compose YAML text that must be a mapping (front matter, site.yaml) into checked nodes."""
    root, problems = _compose(yaml_text, path, first_line, what)
    return problems if problems or root is None else root


def _compose(
    yaml_text: str, path: str, first_line: int, what: str
) -> tuple[yaml.MappingNode | None, list[Diagnostic]]:
    """The mapping's nodes (None when there is no mapping to read) and what is wrong."""
    lines = _EditorLines(yaml_text) if _has_odd_breaks(yaml_text) else None
    try:
        loader = _Loader(yaml_text)
        try:
            root = loader.get_single_node()
            odd = loader.odd
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        if lines is not None:
            exc.problem_mark, exc.context_mark = map(lines.mark, (exc.problem_mark,
                                                                  exc.context_mark))
        return None, [_yaml_error(exc, path, first_line)]
    except yaml.reader.ReaderError as exc:
        line = first_line + yaml_text[: exc.position].count("\n")
        return None, [
            Diagnostic(
                path,
                line,
                "",
                f"invalid YAML: the control character "
                f"#x{exc.character:04x} is not allowed; remove it",
            )
        ]
    except yaml.YAMLError as exc:
        return None, [Diagnostic(path, first_line, "", f"invalid YAML: {exc}")]
    except RecursionError:
        return None, [Diagnostic(path, first_line, "", f"{what} is nested too deeply")]
    if root is None:
        return None, [Diagnostic(path, max(first_line - 1, 1), "", f"{what} is empty")]
    if lines is not None:
        lines.fix(root)
    if not isinstance(root, yaml.MappingNode):
        return None, [
            Diagnostic(
                path,
                first_line + root.start_mark.line,
                "",
                f"{what} must be a mapping of fields, got {kind_of(root)}",
            )
        ]
    plain = _plain_nodes(root) if odd or _may_tag_or_alias(yaml_text) else _plain_keys(root)
    if plain:
        return root, []  # nothing _check_nodes would report, found at a fraction of its cost
    return root, _check_nodes(root, path, first_line, yaml_text)


# Characters YAML (and str.splitlines) take as line breaks but editors, grep and the
# diagnostics' readers do not: an excerpt pasted with a U+2028 moved every later line number.
_ODD_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


class _EditorLines:
    """Marks of a text with odd line breaks, moved to the lines and columns editors count."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [match.end() for match in re.finditer(r"\r\n|\r|\n", text)]

    def mark(self, mark: yaml.Mark | None) -> yaml.Mark | None:
        return None if mark is None else self.moved(mark)

    def moved(self, mark: yaml.Mark) -> yaml.Mark:
        line = bisect.bisect_right(self.starts, mark.index) - 1
        return yaml.Mark(mark.name, mark.index, line, mark.index - self.starts[line], None, 0)

    def fix(self, root: yaml.Node) -> None:
        """Every node's start mark, in place (each node once: aliases share nodes)."""
        seen: set[int] = set()
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            node.start_mark = self.moved(node.start_mark)
            if isinstance(node, yaml.MappingNode):
                stack.extend(part for pair in node.value for part in pair)
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)


def _has_odd_breaks(text: str) -> bool:
    """Searched for one by one: str's own search is fifteen times quicker than a regular
    expression's character class here, and every story of a cold build is searched."""
    return any(mark in text for mark in _ODD_BREAKS)


def _split(text: str, path: str) -> tuple[str, int, str, int] | Diagnostic:
    """Find the `---` fenced block at the top of the file."""
    text = text.removeprefix("\ufeff")
    # Lines as editors count them: str.splitlines also breaks at U+2028, U+0085, \v...
    lines = (_LINE.findall(text) if _has_odd_breaks(text)
             else text.splitlines(keepends=True))
    if not lines or lines[0].rstrip() != "---":
        return Diagnostic(
            path,
            1,
            "",
            "missing front matter: a story must start with a '---' "
            "line, then YAML fields, then another '---' line",
        )
    for index in range(1, len(lines)):
        if lines[index].rstrip() in _FENCES:
            yaml_text = "".join(lines[1:index])
            body = "".join(lines[index + 1 :])
            return yaml_text, 2, body, index + 2
    return Diagnostic(
        path, 1, "", "front matter is not closed: add a '---' line after the last field"
    )


def _yaml_error(exc: yaml.MarkedYAMLError, path: str, first_line: int) -> Diagnostic:
    """The parser's message at the most useful line.

    An unterminated quote is detected at the end of the file, but the curator needs the line
    where the string began: for scanner errors the context mark is that line.
    """
    problem_mark, context_mark = exc.problem_mark, exc.context_mark
    scanning = bool(
        exc.context and exc.context.startswith(("while scanning", "while parsing a flow"))
    )
    mark = context_mark if (scanning and context_mark) else (problem_mark or context_mark)
    line = first_line + mark.line if mark else first_line
    column = f" (column {mark.column + 1})" if mark else ""
    problem = exc.problem or exc.context or "cannot be parsed"
    context = f", {exc.context}" if exc.context and exc.problem else ""
    if (
        context_mark is not None
        and mark is context_mark
        and problem_mark is not None
        and problem_mark.line != context_mark.line
    ):
        context += (
            f" that starts here (the parser stopped on line {first_line + problem_mark.line})"
        )
    return Diagnostic(path, line, "", f"invalid YAML{column}: {problem}{context}")


def _check_nodes(
    root: yaml.Node, path: str, first_line: int, yaml_text: str | None = None
) -> list[Diagnostic]:
    """Reject what we never want in content: aliases, foreign tags, duplicate or odd keys.

    The composer shares one node object for every use of an anchor, so a node seen twice is
    an alias; stopping there also makes "billion laughs" documents cost nothing. That node
    starts where its anchor is, so the line of the first alias is found in `yaml_text`. Every
    node of every story passes here, so field paths stay tuples until a diagnostic needs one.
    """
    problems: list[Diagnostic] = []
    seen: set[int] = set()
    alias_reported = False
    stack: list[tuple[yaml.Node, FieldPath]] = [(root, ())]
    while stack:
        node, where = stack.pop()
        if id(node) in seen:
            if not alias_reported:  # one is enough: a bomb would repeat it a million times
                line = _first_alias_line(yaml_text) if yaml_text is not None else None
                line = node.start_mark.line if line is None else line
                problems.append(Diagnostic(
                    path, first_line + line, field_name(where), _ALIAS_PROBLEM))
                alias_reported = True
            continue
        seen.add(id(node))
        if node.tag not in _ALLOWED_TAGS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            problems.append(Diagnostic(path, first_line + node.start_mark.line,
                                       field_name(where), f"YAML tag {tag!r} is not allowed"))
            continue
        if isinstance(node, yaml.MappingNode):
            stack.extend(reversed(_mapping_children(node, where, path, first_line, problems)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*where, i)) for i, item in reversed(list(enumerate(node.value))))
    return problems


def _first_alias_line(yaml_text: str) -> int | None:
    """The 0-based line of the first `*name` in the text (scanned, never composed)."""
    lines = _EditorLines(yaml_text) if _has_odd_breaks(yaml_text) else None
    for token in yaml.scan(yaml_text, Loader=_Base):
        if isinstance(token, yaml.AliasToken):
            mark = lines.moved(token.start_mark) if lines is not None else token.start_mark
            return int(mark.line)
    return None


def _plain_nodes(root: yaml.Node, repeated_keys: bool = False) -> bool:
    """Whether `_check_nodes` would find nothing: no node seen twice (an alias), every tag
    allowed (which also rules out merge keys), every mapping's keys plain and distinct
    (or, with `repeated_keys`, plain and maybe repeated: every value is walked, those of a
    repeated key too). Every node of every story passes here, so no field paths are made:
    a document that fails is checked again by `_check_nodes`, which says what and where."""
    allowed, scalar, mapping = _ALLOWED_TAGS, yaml.ScalarNode, yaml.MappingNode
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node.tag not in allowed or id(node) in seen:
            return False
        seen.add(id(node))
        if type(node) is mapping:
            keys = set()
            for key, value in node.value:
                if type(key) is not scalar or key.tag not in allowed or id(key) in seen:
                    return False
                seen.add(id(key))
                keys.add(key.value)
                stack.append(value)
            if len(keys) != len(node.value) and not repeated_keys:
                return False
        elif type(node) is not scalar:  # a sequence
            stack.extend(node.value)
    return True


_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def _may_tag_or_alias(text: str) -> bool:
    """Whether a tag (`!`) or an alias (`*`) may start somewhere in `text`: anywhere but
    right after an ASCII letter or digit, after which a token never starts (the `!` of
    `photo!/x.jpg` or `Wow!` is text). Wider than YAML's rules on purpose: a false alarm
    only costs the full walk of `_plain_nodes`. Found with str.find, as these characters
    are rare: a regular expression would read every character in Python's regex engine."""
    for mark in "!*":
        at = text.find(mark)
        while at != -1:
            if at == 0 or text[at - 1] not in _WORD:
                return True
            at = text.find(mark, at + 1)
    return False


def _plain_keys(root: yaml.Node) -> bool:
    """`_plain_nodes` for a document whose text has no tag or alias (`_may_tag_or_alias`) and
    whose resolver gave no merge or value tag: then every node is distinct and every tag
    allowed, and only the keys are left to check: scalars, distinct in each mapping. Half
    the cost of the full walk, which every story of a cold build takes."""
    scalar, mapping = yaml.ScalarNode, yaml.MappingNode
    stack = [root]
    while stack:
        node = stack.pop()
        items = node.value
        if type(node) is mapping:
            try:  # a mapping or list as a key has a list as its value: unhashable
                if len({key.value for key, _ in items}) != len(items):
                    return False
            except TypeError:
                return False
            stack.extend([value for _, value in items if type(value) is not scalar])
        else:  # a sequence
            stack.extend([item for item in items if type(item) is not scalar])
    return True


FieldPath = tuple[str | int, ...]


def field_name(where: FieldPath) -> str:
    """("related", 3, "url") -> "related[3].url", as diagnostics name fields."""
    text = ""
    for step in where:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _mapping_children(
    node: yaml.MappingNode, where: FieldPath, path: str, first_line: int,
    problems: list[Diagnostic],
) -> list[tuple[yaml.Node, FieldPath]]:
    children: list[tuple[yaml.Node, FieldPath]] = []
    keys: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        if type(key_node) is not yaml.ScalarNode or key_node.tag.endswith(":merge"):
            what = "merge keys (<<)" if key_node.tag.endswith(":merge") else "complex keys"
            problems.append(Diagnostic(path, first_line + key_node.start_mark.line,
                                       field_name(where), f"{what} are not allowed"))
            continue
        name = str(key_node.value)
        if name in keys:
            first = first_line + keys[name].start_mark.line
            problems.append(Diagnostic(path, first_line + key_node.start_mark.line,
                                       field_name((*where, name)),
                                       f"{_DUPLICATE}(first given on line {first})"))
            continue
        keys[name] = key_node
        children.append((value_node, (*where, name)))
    return children


def kind_of(node: yaml.Node) -> str:
    """A human name for what a node holds, for 'expected X, got Y' messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{node.value!r}"
