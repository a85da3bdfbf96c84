"""The audit journal's hash chain, anchors and export archive — pure Python, no Django.

The database side (`audit.services`) and the offline verifier (`audit verify --export`)
share this module, so both check exactly the same thing (docs/audit.md has the format).

Canonical serialisation of an entry: the JSON object
``{"actor", "at", "data", "kind", "prev", "seq", "subject", "v"}`` with sorted keys, no
whitespace (separators ``,`` and ``:``), ASCII only (``\\uXXXX`` escapes), UTF-8 bytes. The
entry's hash is the hex SHA-256 of those bytes; ``prev`` is the previous entry's hash (64 zeros
for entry 1). One JSON line of an export is exactly these bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey as Ed25519PublicKey

GENESIS = "0" * 64
VERSION = 1
ANCHOR_TYPE = "update-orchestrator/journal-anchor/v1"
# The head row's signature, renewed at every append: its own type, so no anchor signature (kept
# in the database for good) can be copied onto a head rewound to that anchor's entry.
HEAD_TYPE = "update-orchestrator/journal-head/v1"
ARCHIVE_SIG = "archive.sig"
# The archive ends with the `archive.sig` member (512-byte header, 64-byte signature padded to
# 512) and the two zero blocks of a tar's end: its last TAIL bytes. Everything before is signed.
TAIL = 2048
SIG_PADDING = TAIL - 512 - 64  # after the signature: zeros only


# `json.dumps` with these options builds a new encoder per call (a third of a small entry's
# serialisation); the encoder keeps no state between calls, so one serves every thread.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical(value: object) -> bytes:
    return _CANONICAL.encode(value).encode()


def canonical_text(value: object) -> str:
    """`canonical` as text: what a writer both hashes (inside the entry) and stores (the column)."""
    return _CANONICAL.encode(value)


def entry_canonical(*, seq: int, prev: str, at: str, kind: str, actor: str, subject: str, data: str) -> bytes:
    """`canonical(entry_body(...))` from parts already serialised: `at` as `iso` wrote it, `actor`
    and `data` as `canonical_text`. The writer stores those texts in the row, so each entry's
    JSON is built once instead of twice (tests/audit/test_chain_unit.py pins the equality; the
    verifiers keep hashing `canonical(entry_body(...))`, so a difference would show as a break).
    The keys in sorted order, as `sort_keys` puts them: actor, at, data, kind, prev, seq, subject, v."""
    text = _json_str
    return (
        f'{{"actor":{actor},"at":{text(at)},"data":{data},"kind":{text(kind)},"prev":{text(prev)},'
        f'"seq":{int(seq)},"subject":{text(subject)},"v":{VERSION}}}'
    ).encode()


# The string encoder `json.dumps(..., ensure_ascii=True)` itself uses (C), quotes included.
_json_str = json.encoder.encode_basestring_ascii


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iso(moment: datetime) -> str:
    """UTC with microseconds, as both databases keep them: the time inside the hashed body."""
    # Django's aware times are in UTC already (timezone.now): no conversion for them.
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    if utc.year < 1000:  # strftime's %Y does not pad the year: keep its spelling, the hash has it
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The same text as strftime's, at a third of its cost (three per step entry): an aware UTC
    # time's isoformat ends in "+00:00", which becomes the "Z".
    return utc.isoformat(timespec="microseconds")[:-6] + "Z"


def entry_body(
    *, seq: int, prev: str, at: datetime, kind: str, actor: object, subject: str, data: object
) -> dict[str, object]:
    return {
        "v": VERSION,
        "seq": seq,
        "prev": prev,
        "at": iso(at),
        "kind": kind,
        "actor": actor,
        "subject": subject,
        "data": data,
    }


def describe(body: Mapping[str, Any]) -> str:
    """What an entry records, in a few words, for messages that name it."""
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    assert isinstance(data, dict)
    what = f"{body.get('kind')} {body.get('subject') or ''}".strip()
    if body.get("kind") == "step.finished":
        what += f" {data.get('component')} {data.get('state')} exit {data.get('exit_code')}"
    elif "status" in data:
        what += f" {data['status']}"
    actor = body.get("actor")
    if isinstance(actor, dict):
        what += f" by {actor.get('kind')}:{actor.get('name')}"
    return what


@dataclass(frozen=True)
class Break:
    """The first place where the chain does not hold."""

    seq: int
    at: str
    what: str
    problem: str
    row: str = ""  # a row that differs from entry `seq`: "step 42 (deployment 7, rtos.R456 ArtifactCommit)"

    def __str__(self) -> str:
        if self.row:
            return f"{self.row}: {self.problem}"
        where = f" ({self.at}, {self.what})" if self.at else ""
        return f"entry {self.seq}{where}: {self.problem}"


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    at: str
    key_fingerprint: str
    signature: str  # hex

    def message(self) -> bytes:
        return anchor_message(seq=self.seq, hash=self.hash, at=self.at, key_fingerprint=self.key_fingerprint)

    def as_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "key": self.key_fingerprint,
            "signature": self.signature,
        }


def anchor_message(*, seq: int, hash: str, at: str, key_fingerprint: str) -> bytes:
    """The exact bytes an anchor signs (also the `anchors/<seq>.json` file of an export)."""
    return canonical({"type": ANCHOR_TYPE, "seq": seq, "hash": hash, "at": at, "key": key_fingerprint})


def head_message(*, seq: int, hash: str, at: str, key_fingerprint: str) -> bytes:
    """The exact bytes the head row's signature signs (`at`: the last entry's time)."""
    return canonical({"type": HEAD_TYPE, "seq": seq, "hash": hash, "at": at, "key": key_fingerprint})


@dataclass(frozen=True)
class SignedHead:
    """The journal's head row: the last entry's number and hash, signed at every append."""

    seq: int
    hash: str
    at: str = ""
    key_fingerprint: str = ""
    signature: str = ""

    def message(self) -> bytes:
        return head_message(seq=self.seq, hash=self.hash, at=self.at, key_fingerprint=self.key_fingerprint)


@dataclass
class Verdict:
    """What a verification found: the first break (None when intact) and what it covered."""

    entries: int = 0
    first: int | None = None
    head_seq: int = 0
    head_hash: str = GENESIS
    head_at: str = ""
    anchors: int = 0
    last_anchor: int | None = None
    broken: Break | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def summary(self) -> str:
        if self.broken is not None:
            return f"journal BROKEN at {self.broken}"
        if self.entries == 0:
            return "journal intact: no entries yet"
        anchored = (
            f", {self.anchors} signed anchors (last at entry {self.last_anchor})" if self.anchors else ""
        )
        return (
            f"journal intact: entries {self.first}-{self.head_seq} ({self.entries}), "
            f"head {self.head_hash[:16]}… at {self.head_at}{anchored}"
        )

    def as_json(self) -> dict[str, object]:
        broken = self.broken
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "entries": self.entries,
            "first": self.first,
            "head": {"seq": self.head_seq, "hash": self.head_hash, "at": self.head_at},
            "anchors": self.anchors,
            "last_anchor": self.last_anchor,
            "broken": None
            if broken is None
            else {"seq": broken.seq, "at": broken.at, "what": broken.what, "problem": broken.problem},
        }


@dataclass
class ChainChecker:
    """Fed the entries in order (streaming: the whole journal never sits in memory).

    `start` is the entry number of the first entry fed; an export's slice starts anywhere, and
    its first `prev` is then taken on trust (the signed anchors after it vouch for it).
    """

    anchors: Mapping[int, Anchor] = field(default_factory=dict)
    public_key: Ed25519PublicKey | None = None
    start: int = 1
    verdict: Verdict = field(default_factory=Verdict)
    _expected_prev: str | None = None

    def feed(self, body: Mapping[str, Any], stored_hash: str | None = None) -> bool:
        """False once broken (the caller can stop feeding)."""
        v = self.verdict
        if v.broken is not None:
            return False
        digest = sha256_hex(canonical(body))
        seq = int(body.get("seq", -1))
        expected = self.start if v.first is None else v.head_seq + 1
        if seq != expected:
            return self._break(body, _gap(expected, seq, v.head_seq))
        if stored_hash is not None and stored_hash != digest:
            return self._break(body, "its contents do not match its recorded hash: the entry was edited")
        prev = GENESIS if seq == 1 else self._expected_prev
        if prev is not None and body.get("prev") != prev:
            return self._break(
                body,
                f"it does not follow entry {seq - 1}: the hash it names as previous is not entry "
                f"{seq - 1}'s (an entry was edited, removed or reordered)",
            )
        anchor = self.anchors.get(seq)
        if anchor is not None and anchor.hash != digest:
            return self._break(
                body,
                f"it does not match the anchor signed at {anchor.at}: the chain was rewritten up to here",
            )
        v.first = seq if v.first is None else v.first
        v.entries += 1
        v.head_seq, v.head_hash, v.head_at = seq, digest, str(body.get("at", ""))
        self._expected_prev = digest
        return True

    def _break(self, body: Mapping[str, Any], problem: str) -> bool:
        self.verdict.broken = Break(
            seq=int(body.get("seq", -1)), at=str(body.get("at", "")), what=describe(body), problem=problem
        )
        return False

    def finish(
        self, *, head_seq: int | None = None, head_hash: str | None = None, head: SignedHead | None = None
    ) -> Verdict:
        """The tail and the anchors: a chain cut short is internally consistent, only these see it.

        `head`: the signed head row. Without the key nobody can make its signature name another
        entry, so a tail cut off (and the head rewound) or rewritten shows here.
        """
        v = self.verdict
        if head is not None:
            head_seq, head_hash = head.seq, head.hash
        if v.broken is None and head_seq is not None and (head_seq, head_hash) != (v.head_seq, v.head_hash):
            v.broken = _tail_break(v, head_seq, "the journal's head row records entry", head_hash or "")
        if v.broken is None and head is not None and head.seq > 0:
            v.broken = self._head_signature_break(head)
        for anchor in sorted(self.anchors.values(), key=lambda a: a.seq):
            if v.broken is not None:
                break
            if self.public_key is not None and not verify_signature(
                self.public_key, anchor.message(), anchor.signature
            ):
                v.broken = Break(anchor.seq, anchor.at, "signed anchor", "the anchor's signature is invalid")
            elif anchor.seq > v.head_seq:
                v.broken = _tail_break(
                    v, anchor.seq, f"an anchor signed at {anchor.at} covers entry", anchor.hash
                )
            elif anchor.seq >= (v.first or 1):
                v.anchors += 1
                v.last_anchor = anchor.seq
        return v

    def _head_signature_break(self, head: SignedHead) -> Break | None:
        v = self.verdict
        if not head.signature:
            problem = "the journal's head is not signed (its signature was removed)"
        elif self.public_key is not None and not verify_signature(
            self.public_key, head.message(), head.signature
        ):
            problem = (
                "the head's signature does not cover this entry: the entries after it were removed "
                "and the head rewound, or the chain was rewritten, by someone without the signing key"
            )
        elif head.at != v.head_at:
            problem = f"the head was signed for an entry at {head.at}, not this one"
        else:
            return None
        return Break(seq=v.head_seq, at=v.head_at, what="the journal's head", problem=problem)


def _gap(expected: int, seq: int, last: int) -> str:
    if seq > expected:
        missing = f"entry {expected}" if seq == expected + 1 else f"entries {expected}-{seq - 1}"
        return f"{missing} missing before it (removed from the journal)"
    return f"out of order: entry {expected} was expected after entry {last} (rows reordered or renumbered)"


def _tail_break(v: Verdict, seq: int, source: str, digest: str) -> Break:
    missing = f"entry {v.head_seq + 1}" if seq == v.head_seq + 1 else f"entries {v.head_seq + 1}-{seq}"
    return Break(
        seq=v.head_seq + 1,
        at="",
        what="",
        problem=f"missing: the chain ends at entry {v.head_seq} but {source} {seq} "
        f"(hash {digest[:16]}…): {missing} removed from the end",
    )


# ----- rows tied to the chain ----------------------------------------------------------------------

# Entry kinds that record a deployment row's status, and the status a kind implies when its data
# does not name one (entries written before the data carried it).
DEPLOYMENT_STATUS_KINDS = {
    "deployment.created": "queued",
    "deployment.started": "running",
    "deployment.resumed": "running",
    "deployment.rollback": "running",
    "deployment.waiting": "waiting_approval",  # at a gate of the policy (docs/policy.md)
    "deployment.continued": "running",  # the gate was decided (or expired)
    "deployment.paused": "",
    "deployment.finished": "",
}
STEP_FIELDS = (
    "component",
    "state",
    "argv",
    "started_at",
    "ended_at",
    "exit_code",
    "timed_out",
    "answer",
    "error",
)
EMPTY_SHA256 = sha256_hex(b"")


def step_row_problem(row: Mapping[str, Any], body: Mapping[str, Any], *, pruned: bool) -> str | None:
    """What differs between a step row (times as `iso` strings) and the `step.finished` entry that
    sealed it, or None. `pruned`: an `audit.pruned` entry names the step, so empty output is expected."""
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    assert isinstance(data, dict)
    entry = f"journal entry {body.get('seq')}"
    if body.get("kind") != "step.finished" or data.get("step") != row["id"]:
        return f"its seal names {entry}, which records {describe(body)}, not this step"
    if body.get("subject") != f"deployment:{row['deployment_id']}":
        return f"deployment differs from {entry}"
    for name in STEP_FIELDS:
        if row.get(name) != data.get(name):
            return f"{name} differs from {entry}"
    for stream in ("stdout", "stderr"):
        text = str(row.get(stream) or "")
        if pruned and text == "":
            continue  # cleared by retention (the `audit.pruned` entry says so)
        if sha256_hex(text.encode()) != data.get(f"{stream}_sha256"):
            return f"{stream} differs from {entry} (its SHA-256 is not the recorded one)"
    return None


def step_unsealed_problem(row: Mapping[str, Any]) -> str | None:
    """A step without a seal is a call still running: anything it says about an end is unproven."""
    if row.get("ended_at") or row.get("exit_code") is not None or row.get("error") or row.get("answer"):
        return "it records an end but no journal entry seals it"
    if row.get("stdout") or row.get("stderr") or row.get("timed_out"):
        return "it records output but no journal entry seals it"
    return None


def deployment_row_problem(
    row: Mapping[str, Any], body: Mapping[str, Any], created: Mapping[str, Any] | None
) -> str | None:
    """What differs between a deployment row and the entry that sealed its status (and its
    `deployment.created` entry: manifest, kind, who asked, a forced run's reason), or None."""
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    assert isinstance(data, dict)
    entry = f"journal entry {body.get('seq')}"
    kind = str(body.get("kind"))
    if kind not in DEPLOYMENT_STATUS_KINDS or body.get("subject") != f"deployment:{row['id']}":
        return f"its seal names {entry}, which records {describe(body)}, not this deployment's status"
    if row["status"] != (data.get("status") or DEPLOYMENT_STATUS_KINDS[kind]):
        return f"status differs from {entry}"
    if kind in ("deployment.paused", "deployment.finished"):
        for name in ("reason", "components"):
            if row[name] != data.get(name):
                return f"{name} differs from {entry}"
    if created is None:
        return "its deployment.created entry is missing from the journal"
    recorded = created.get("data") if isinstance(created.get("data"), dict) else {}
    assert isinstance(recorded, dict)
    manifest = recorded.get("manifest") if isinstance(recorded.get("manifest"), dict) else {}
    assert isinstance(manifest, dict)
    forced = recorded.get("forced") if isinstance(recorded.get("forced"), dict) else {}
    assert isinstance(forced, dict)
    expected = {
        "manifest_id": manifest.get("id"),
        "kind": recorded.get("kind"),
        "forced_reason": forced.get("reason", ""),
    }
    for name, value in expected.items():
        if row[name] != value:
            return f"{name} differs from journal entry {created.get('seq')}"
    if _who(created.get("actor")) not in (None, _who(row.get("actor"))):  # who asked
        return f"actor differs from journal entry {created.get('seq')}"
    return None


def _who(actor: object) -> tuple[object, object] | None:
    """An actor's kind and name (how it was reached, `via`, is not who it is)."""
    return (actor.get("kind"), actor.get("name")) if isinstance(actor, Mapping) else None


def in_ranges(pk: int, ranges: Iterable[Sequence[int]]) -> bool:
    return any(first <= pk <= last for first, last in ranges)


# ----- keys and signatures ----------------------------------------------------------------------


def key_fingerprint(public: Ed25519PublicKey) -> str:
    """sha256 of the DER SubjectPublicKeyInfo — what `openssl pkey -pubin -outform DER | sha256sum` prints."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return sha256_hex(der)


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def verify_signature(public: Ed25519PublicKey, message: bytes, signature_hex: str) -> bool:
    try:
        public.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign(private: Ed25519PrivateKey, message: bytes) -> str:
    return private.sign(message).hex()


# ----- the export archive -------------------------------------------------------------------------


def archive_write(path: Path, members: Iterable[tuple[str, bytes]], private: Ed25519PrivateKey) -> None:
    """A plain ustar archive whose every byte before the last member is signed by that member.

    Deterministic headers (mtime 0, root, 0644) and no record padding, so the signed part is
    exactly `head -c -2048 FILE` and the tail is fixed but for the 64 signature bytes.
    """
    out = io.BytesIO()
    for name, data in members:
        out.write(_member(name, data))
    signature = private.sign(out.getvalue())
    out.write(_member(ARCHIVE_SIG, signature))
    out.write(b"\0" * 1024)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(out.getvalue())
    tmp.replace(path)


def _member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "root", "root"
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


class ArchiveError(Exception):
    pass


@dataclass(frozen=True)
class Archive:
    members: dict[str, bytes]
    public_key: Ed25519PublicKey


def archive_read(data: bytes, *, pinned: Ed25519PublicKey | None = None) -> Archive:
    """Check the archive's signature and exact layout; any changed byte raises ArchiveError."""
    if len(data) < TAIL + 512:
        raise ArchiveError("too short to be an audit export")
    signed, tail = data[:-TAIL], data[-TAIL:]
    signature = tail[512:576]
    if tail != _member(ARCHIVE_SIG, signature) + b"\0" * 1024:
        raise ArchiveError("the archive's last member (archive.sig) or its end blocks were altered")
    try:
        with tarfile.open(fileobj=io.BytesIO(signed + b"\0" * 1024), mode="r:") as tar:
            members = {m.name: _read_member(tar, m) for m in tar.getmembers()}
    except (tarfile.TarError, KeyError) as exc:
        raise ArchiveError(f"not a readable archive: {exc}") from exc
    if "public-key.pem" not in members:
        raise ArchiveError("the archive has no public-key.pem")
    try:
        key = load_public_pem(members["public-key.pem"])
    except ValueError as exc:
        raise ArchiveError(f"public-key.pem: {exc}") from exc
    if pinned is not None and key_fingerprint(pinned) != key_fingerprint(key):
        raise ArchiveError(
            f"signed with key {key_fingerprint(key)[:16]}…, not the expected {key_fingerprint(pinned)[:16]}…"
        )
    if not verify_signature(key, signed, signature.hex()):
        raise ArchiveError("the archive's signature does not match its contents (a byte was changed)")
    if b"".join(_member(n, d) for n, d in members.items()) != signed:
        raise ArchiveError("the archive's layout was altered")
    return Archive(members=members, public_key=key)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)
    if fh is None:
        raise ArchiveError(f"{member.name}: not a regular file")
    return fh.read()


def archive_verify(archive: Archive, *, published: Iterable[Anchor] = ()) -> Verdict:
    """The chain of an export's journal.jsonl against the anchors it carries (and, winning over
    those, anchors published earlier)."""
    anchors = {a.seq: a for a in anchors_from_jsonl(archive.members.get("anchors.jsonl", b""))}
    anchors.update((a.seq, a) for a in published)
    lines = archive.members.get("journal.jsonl", b"").splitlines()
    bodies = list(_bodies(lines))
    start = int(bodies[0].get("seq", 1)) if bodies else 1
    checker = ChainChecker(anchors=anchors, public_key=archive.public_key, start=start)
    for body in bodies:
        if not checker.feed(body):
            break
    return checker.finish()


ANCHOR_LOG_PREFIX = "journal anchor "  # audit.services logs every anchor as this and its JSON


def anchors_from_jsonl(data: bytes) -> Iterator[Anchor]:
    """anchors.jsonl of an export (what an auditor keeps, "publishes", to check later exports), or
    the appliance's log lines (text or JSON format, from journald or a syslog server): every line
    holding an anchor counts, every other line is skipped."""
    for raw in data.splitlines():
        item = _anchor_item(raw.decode("utf-8", "replace").strip())
        if item is None:
            continue
        yield Anchor(
            seq=int(item["seq"]),
            hash=str(item["hash"]),
            at=str(item["at"]),
            key_fingerprint=str(item["key"]),
            signature=str(item["signature"]),
        )


def _anchor_item(text: str) -> dict[str, Any] | None:
    if text.startswith("{"):
        item = json.loads(text)
        if not isinstance(item, dict):
            return None
        if "signature" in item:
            return item  # a line of anchors.jsonl
        text = str(item.get("message", ""))  # a JSON log line
    start = text.find(ANCHOR_LOG_PREFIX)
    if start < 0:
        return None
    found = json.loads(text[start + len(ANCHOR_LOG_PREFIX) :])
    return found if isinstance(found, dict) else None


def _bodies(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        body = json.loads(line)
        if canonical(body) != line:
            # Not our serialisation: re-encoding would hash other bytes than the line's own.
            body = {**body, "_noncanonical": True}
        yield body
