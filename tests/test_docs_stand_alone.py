"""The repository stands alone: nothing cites documents outside it, and every citation of our own
contracts (`docs/<file>.md §N`) points at a file that has a heading numbered N."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Written in pieces so that this file does not match itself.
OUTSIDE = re.compile(
    "|".join(
        (
            re.escape("../" + "shared"),
            re.escape("DESIGN" + ".md"),
            "DESIGN" + r" §",
            "reference" + r" §",
            "reference" + r"[/ ]mender",
        )
    ),
    re.IGNORECASE,
)
CITATION = re.compile(r"docs/([\w.-]+\.md)((?:(?:,\s*|\s+and\s+|-|\u2013)?\s*§\d+(?:\.\d+)*)+)")
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)


def _tracked_texts() -> dict[str, str]:
    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True, check=True
    ).stdout.split("\0")
    texts = {}
    for name in filter(None, names):
        path = ROOT / name
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # screenshots and other binaries
            continue
    return texts


def _headings(doc: str) -> set[str]:
    return set(HEADING.findall((ROOT / "docs" / doc).read_text(encoding="utf-8")))


def test_it_cites_no_document_outside_the_repository() -> None:
    found = [
        f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)}"
        for name, text in _tracked_texts().items()
        for match in OUTSIDE.finditer(text)
    ]
    assert found == []


def test_every_docs_citation_has_a_numbered_heading() -> None:
    broken = []
    cited = 0
    for name, text in _tracked_texts().items():
        for match in CITATION.finditer(text):
            doc = match.group(1)
            where = f"{name}:{text.count(chr(10), 0, match.start()) + 1}"
            if not (ROOT / "docs" / doc).is_file():
                broken.append(f"{where}: docs/{doc} does not exist")
                continue
            headings = _headings(doc)
            for number in SECTION.findall(match.group(2)):
                cited += 1
                if number not in headings:
                    broken.append(f"{where}: docs/{doc} has no heading numbered {number}")
    assert broken == []
    assert cited > 0  # the pattern still finds the citations
