"""YAML loading that keeps line numbers and refuses what PyYAML would silently accept.

PyYAML's ``safe_load`` forgets where each value came from and keeps the last of two duplicate keys.
Operators must be told *which line* of a manifest is wrong, and a duplicated key is nearly always a
copy-paste slip, so we compose the node graph with ``SafeLoader`` and build our own tree from it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TypeAlias

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from updates.engine.text import safe_text

MAX_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 64

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))

Scalar: TypeAlias = str | int | float | bool | datetime.date | None
# Values of mappings are the child nodes; a mapping's key order is the document order.
YValue: TypeAlias = Scalar | dict[str, "YNode"] | list["YNode"]


@dataclass(frozen=True)
class YNode:
    """A loaded value plus the 1-based line it is reported at.

    For a mapping value that is the line of its *key*: "order: x" and "rtos:\\n  ..." are both best
    reported where the key is written, not where a nested block happens to start.
    """

    value: YValue
    line: int

    @property
    def mapping(self) -> dict[str, YNode] | None:
        return self.value if isinstance(self.value, dict) else None

    @property
    def sequence(self) -> list[YNode] | None:
        return self.value if isinstance(self.value, list) else None


@dataclass(frozen=True)
class YamlIssue:
    line: int | None
    field: str
    message: str


class YamlError(Exception):
    """The document could not be turned into a tree; ``issues`` says where and why."""

    def __init__(self, issues: list[YamlIssue]) -> None:
        super().__init__("\n".join(f"{i.line}: {i.field}: {i.message}" for i in issues))
        self.issues = issues


DOCUMENT = "(document)"


def load(data: bytes, *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> YNode:
    """Parse one YAML document into a :class:`YNode` tree or raise :class:`YamlError`."""
    if len(data) > max_bytes:
        raise YamlError([YamlIssue(None, DOCUMENT, f"document is larger than {max_bytes} bytes")])
    text = _decode(data)
    try:
        # libyaml first: a 60-component topology took 40 ms in PyYAML's pure-Python parser
        # (read twice: for the depth, then the nodes) and takes 2 ms in C, with the same nodes
        # and lines. Whatever it refuses is read again in Python, for PyYAML's own messages.
        _check_printable(text)
        _check_depth(text, _FAST)
        root = _compose(text, _FAST)
    except YamlError:
        _check_depth(text, yaml.SafeLoader)
        root = _compose(text, yaml.SafeLoader)
    builder = _Builder(max_nodes)
    tree = builder.build(root, root.start_mark.line + 1, "", 0)
    if builder.issues:
        raise YamlError(builder.issues)
    return tree


def _decode(data: bytes) -> str:
    # Decoding ourselves lets us point at the line of a bad byte; PyYAML only reports an offset.
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlError([YamlIssue(line, DOCUMENT, "file is not valid UTF-8")])


# PyYAML's loader on libyaml where it was built with it, else the pure-Python one.
_FAST: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_printable(text: str) -> None:
    """The pure-Python reader's check of the characters (libyaml's differs slightly), so both
    loaders refuse the same documents."""
    try:
        yaml.reader.Reader(text)
    except yaml.YAMLError as exc:
        raise YamlError([_reader_issue(text, exc)])


def _check_depth(text: str, loader: type[yaml.SafeLoader]) -> None:
    # PyYAML's composer recurses once per nesting level, so `[[[[...` can blow the interpreter stack;
    # the event parser is iterative, which lets us refuse such input with a line number first.
    depth = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else None
                    raise YamlError([YamlIssue(line, DOCUMENT, f"nesting deeper than {MAX_DEPTH} levels")])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        raise YamlError([_syntax_issue(exc)])
    except yaml.YAMLError as exc:
        raise YamlError([_reader_issue(text, exc)])


def _compose(text: str, loader: type[yaml.SafeLoader]) -> Node:
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        raise YamlError([_syntax_issue(exc)])
    except yaml.YAMLError as exc:  # ReaderError: a non-printable character
        raise YamlError([_reader_issue(text, exc)])
    if node is None:
        raise YamlError([YamlIssue(1, DOCUMENT, "the document is empty")])
    return node


def _syntax_issue(exc: yaml.MarkedYAMLError) -> YamlIssue:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    where = f"line {line}, column {mark.column + 1}" if mark else "unknown position"
    message = f"YAML syntax error at {where}: {exc.problem or exc.context}"
    if exc.context and exc.context_mark and exc.problem:
        message += f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
    if exc.problem and ("expected <block end>" in exc.problem or "expected ':'" in exc.problem):
        message += "; check the indentation: sibling keys and list items must start in the same column"
    return YamlIssue(line, DOCUMENT, message)


def _reader_issue(text: str, exc: yaml.YAMLError) -> YamlIssue:
    position = getattr(exc, "position", None)
    line = text[:position].count("\n") + 1 if isinstance(position, int) else None
    return YamlIssue(line, DOCUMENT, f"unreadable YAML: {str(exc).splitlines()[0]}")


class _Builder:
    """Turns composed nodes into YNodes, counting expanded nodes so alias bombs stop early."""

    def __init__(self, max_nodes: int) -> None:
        self.max_nodes = max_nodes
        self.count = 0
        self.issues: list[YamlIssue] = []
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: Node, line: int, path: str, depth: int) -> YNode:
        self.count += 1
        if self.count > self.max_nodes or depth > MAX_DEPTH:
            # The path of a runaway alias grows without bound; its start is enough to find it.
            raise YamlError([YamlIssue(line, path[:80] or DOCUMENT, self._too_big_message(depth))])
        if isinstance(node, MappingNode):
            return YNode(self._mapping(node, path, depth), line)
        if isinstance(node, SequenceNode):
            return YNode(self._sequence(node, path, depth), line)
        return YNode(self._scalar(node, line, path), line)

    def _too_big_message(self, depth: int) -> str:
        if depth > MAX_DEPTH:
            return f"nesting deeper than {MAX_DEPTH} levels (recursive alias?)"
        return f"document expands to more than {self.max_nodes} nodes (alias bomb?)"

    def _mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, YNode]:
        self._check_tag(node, _TAG + "map", path)
        result: dict[str, YNode] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None:
                continue
            line = key_node.start_mark.line + 1
            child = _join(path, key)
            if key in result:
                first = result[key].line
                self.issues.append(YamlIssue(line, child, f"duplicate key (first defined at line {first})"))
                continue
            result[key] = self.build(value_node, line, child, depth + 1)
        return result

    def _key(self, node: Node, path: str) -> str | None:
        line = node.start_mark.line + 1
        if not isinstance(node, ScalarNode):
            self.issues.append(YamlIssue(line, path or DOCUMENT, "mapping keys must be plain strings"))
            return None
        if node.tag == _TAG + "merge":
            self.issues.append(YamlIssue(line, _join(path, "<<"), "merge keys ('<<') are not supported"))
            return None
        # Keys are names, never numbers or booleans: `yes:` means the text "yes" to a manifest author.
        return safe_text(str(node.value))  # a `"\ud800"` escape must not reach a page or a row

    def _sequence(self, node: SequenceNode, path: str, depth: int) -> list[YNode]:
        self._check_tag(node, _TAG + "seq", path)
        return [
            self.build(item, item.start_mark.line + 1, f"{path}[{i}]", depth + 1)
            for i, item in enumerate(node.value)
        ]

    def _scalar(self, node: Node, line: int, path: str) -> Scalar:
        if node.tag not in _SCALAR_TAGS:
            self.issues.append(YamlIssue(line, path or DOCUMENT, f"unsupported YAML tag {node.tag!r}"))
            return None
        try:
            value: Scalar = self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError, LookupError):
            # e.g. `!!int abc` or an impossible date: PyYAML raises plain Python errors for those.
            self.issues.append(YamlIssue(line, path or DOCUMENT, f"invalid {node.tag} value {node.value!r}"))
            return None
        return safe_text(value) if isinstance(value, str) else value

    def _check_tag(self, node: Node, expected: str, path: str) -> None:
        if node.tag != expected:
            line = node.start_mark.line + 1
            self.issues.append(YamlIssue(line, path or DOCUMENT, f"unsupported YAML tag {node.tag!r}"))


def _join(path: str, key: str) -> str:
    shown = key or '""'  # an empty key must still show up in the field path
    return f"{path}.{shown}" if path else shown
