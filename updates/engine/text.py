"""Safe text: what an archive, manifest, artifact header or HTTP header names, made printable once
where it enters (issue 22, docs/security.md).

Python keeps undecodable bytes of a file name as lone surrogates (`surrogateescape`), and JSON or
YAML `\\ud800` escapes make them too; such a string cannot be encoded as UTF-8, so a page, a log
line or a database row holding one fails. Each surrogate becomes a visible escape instead: the
byte 0xff read from a tar name is `\\xff`, a lone `\\ud800` is `\\ud800`, so the name stays
recognisable in a problem message.
"""

from __future__ import annotations

from typing import Any


def safe_text(text: str) -> str:
    if text.isascii() or not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return "".join(_escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as surrogateescape keeps it
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return f"\\u{code:04x}"
    return char


def safe_json(value: Any) -> Any:
    """`value` (JSON-shaped: dicts, lists, strings, scalars) with every string made safe text.
    Iterative: a deeply nested value must not blow the stack here."""
    if isinstance(value, str):
        return safe_text(value)
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        item, parent, key = stack.pop()
        if isinstance(item, dict):
            copy: Any = {}
            parent[key] = copy
            for k, v in item.items():
                safe_key = safe_text(k) if isinstance(k, str) else k
                copy[safe_key] = None  # keeps the key order; the value is filled in when popped
                stack.append((v, copy, safe_key))
        elif isinstance(item, list):
            copy = [None] * len(item)
            parent[key] = copy
            stack.extend((v, copy, i) for i, v in enumerate(item))
        else:
            parent[key] = safe_text(item) if isinstance(item, str) else item
    return root[0]
