"""audit/chain.py on its own (pure Python): the canonical bytes, the chain checker, anchors and
the signed export archive. The database side is tested in tests/integration/test_audit.py."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from audit.chain import (
    GENESIS,
    TAIL,
    Anchor,
    ArchiveError,
    ChainChecker,
    Ed25519PrivateKey,
    anchor_message,
    anchors_from_jsonl,
    archive_read,
    archive_verify,
    archive_write,
    canonical,
    canonical_text,
    entry_body,
    entry_canonical,
    iso,
    key_fingerprint,
    public_pem,
    sha256_hex,
    sign,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def chain(n: int) -> list[dict[str, object]]:
    """n entries, each naming the previous one's hash."""
    bodies: list[dict[str, object]] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        body = entry_body(
            seq=seq,
            prev=prev,
            at=T0 + timedelta(seconds=seq),
            kind="deployment.finished",
            actor={"kind": "cli", "name": "root"},
            subject=f"deployment:{seq}",
            data={"status": "succeeded"},
        )
        bodies.append(body)
        prev = sha256_hex(canonical(body))
    return bodies


def digest(body: dict[str, object]) -> str:
    return sha256_hex(canonical(body))


def anchor(private: Ed25519PrivateKey, body: dict[str, object]) -> Anchor:
    fp = key_fingerprint(private.public_key())
    at = "2024-05-01T13:00:00.000000Z"
    seq = int(str(body["seq"]))
    message = anchor_message(seq=seq, hash=digest(body), at=at, key_fingerprint=fp)
    return Anchor(seq=seq, hash=digest(body), at=at, key_fingerprint=fp, signature=sign(private, message))


def check(bodies: list[dict[str, object]], **kwargs: object) -> ChainChecker:
    checker = ChainChecker(**kwargs)  # type: ignore[arg-type]
    for body in bodies:
        if not checker.feed(body):
            break
    return checker


def test_the_canonical_encoding_is_sorted_compact_ascii_json() -> None:
    assert canonical({"b": 1, "a": "é ✓", "c": [1, {"z": None, "y": True}]}) == (
        b'{"a":"\\u00e9 \\u2713","b":1,"c":[1,{"y":true,"z":null}]}'
    )


def test_an_entry_body_has_the_documented_fields_and_microsecond_utc_time() -> None:
    body = entry_body(
        seq=7, prev=GENESIS, at=T0.astimezone(), kind="k", actor=None, subject="s", data={"x": 1}
    )
    assert sorted(body) == ["actor", "at", "data", "kind", "prev", "seq", "subject", "v"]
    assert body["at"] == "2024-05-01T12:00:00.123456Z"
    assert body["v"] == 1
    assert digest(body) == hashlib.sha256(canonical(body)).hexdigest()


@pytest.mark.parametrize(
    ("actor", "subject", "data"),
    [
        ({"kind": "system", "name": "orchestrator"}, "deployment:12", {"step": 3, "argv": ["a", "b"]}),
        (None, "", {}),
        ({"kind": "user", "name": 'é"\\ \u2028'}, "s \u00e9\n\t", {"z": [1.5, None, True], "a": {"y": "✓"}}),
        ({"kind": "cli", "name": "root", "via": "cli"}, "x", {"10": 1, "9": 2, "": "\x00"}),
    ],
)
def test_the_writers_entry_bytes_are_the_canonical_entry_body(
    actor: object, subject: str, data: dict[str, object]
) -> None:
    """The writer builds an entry's bytes from the JSON it also stores; the verifiers hash
    canonical(entry_body(...)) from the row. Both must be the same bytes, or every entry breaks."""
    at = T0 + timedelta(microseconds=-123456)  # no fraction: still six digits
    expected = canonical(
        entry_body(
            seq=42, prev="ab" * 32, at=at, kind="step.finished", actor=actor, subject=subject, data=data
        )
    )
    built = entry_canonical(
        seq=42,
        prev="ab" * 32,
        at=iso(at),
        kind="step.finished",
        actor=canonical_text(actor),
        subject=subject,
        data=canonical_text(data),
    )
    assert built == expected
    assert json.loads(canonical_text(data)) == data  # the stored column reads back as written


@pytest.mark.parametrize(
    "moment",
    [
        T0,
        T0.replace(microsecond=0),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 1, 2, 3, 4, tzinfo=UTC).astimezone(),  # a local time: UTC in the text
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # strftime's own spelling of an unpadded year
    ],
)
def test_iso_is_microsecond_utc_as_strftime_spells_it(moment: datetime) -> None:
    assert iso(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_an_intact_chain_verifies_and_names_its_head() -> None:
    bodies = chain(5)
    checker = check(bodies)
    verdict = checker.finish(head_seq=5, head_hash=digest(bodies[-1]))
    assert verdict.ok
    assert (verdict.first, verdict.head_seq, verdict.entries) == (1, 5, 5)
    assert verdict.head_hash == digest(bodies[-1])
    assert verdict.summary().startswith("journal intact: entries 1-5 (5)")
    assert ChainChecker().finish().summary() == "journal intact: no entries yet"


def test_an_edited_entry_breaks_the_chain_at_the_next_one() -> None:
    bodies = chain(4)
    bodies[1] = {**bodies[1], "data": {"status": "failed"}}
    verdict = check(bodies).finish()
    assert verdict.broken is not None
    assert verdict.broken.seq == 3
    assert "does not follow entry 2" in verdict.broken.problem
    assert verdict.as_json()["ok"] is False


def test_an_edited_entry_with_a_stored_hash_breaks_at_itself() -> None:
    bodies = chain(3)
    checker = ChainChecker()
    assert checker.feed(bodies[0], digest(bodies[0]))
    assert not checker.feed({**bodies[1], "kind": "other"}, digest(bodies[1]))
    assert checker.verdict.broken is not None
    assert checker.verdict.broken.seq == 2
    assert "was edited" in checker.verdict.broken.problem
    assert not checker.feed(bodies[2])  # broken stays broken


def test_a_removed_entry_is_a_gap() -> None:
    bodies = chain(5)
    verdict = check(bodies[:2] + bodies[4:]).finish()
    assert verdict.broken is not None
    assert verdict.broken.seq == 5
    assert "entries 3-4 missing before it" in verdict.broken.problem


def test_reordered_entries_are_out_of_order() -> None:
    bodies = chain(3)
    verdict = check([bodies[0], bodies[2], bodies[1]]).finish()
    assert verdict.broken is not None
    assert verdict.broken.problem.startswith("entry 2 missing before it")
    verdict = check([bodies[0], bodies[1], bodies[1]]).finish()
    assert verdict.broken is not None
    assert "out of order: entry 3 was expected after entry 2" in verdict.broken.problem


def test_a_cut_tail_is_seen_only_through_the_head_row() -> None:
    bodies = chain(5)
    assert check(bodies[:3]).finish().ok
    verdict = check(bodies[:3]).finish(head_seq=5, head_hash=digest(bodies[4]))
    assert verdict.broken is not None
    assert "the chain ends at entry 3" in verdict.broken.problem
    assert "entries 4-5 removed from the end" in verdict.broken.problem


def test_anchors_hold_an_intact_chain_and_catch_a_rewritten_one() -> None:
    private = Ed25519PrivateKey.generate()
    bodies = chain(4)
    anchors = {2: anchor(private, bodies[1])}
    verdict = check(bodies, anchors=anchors, public_key=private.public_key()).finish()
    assert verdict.ok
    assert (verdict.anchors, verdict.last_anchor) == (1, 2)

    rewritten = chain(4)
    rewritten[1] = {**rewritten[1], "data": {"status": "rewritten"}}
    # Consistent again from entry 2 on: only the anchor knows.
    for i in range(2, 4):
        rewritten[i] = {**rewritten[i], "prev": digest(rewritten[i - 1])}
    assert check(rewritten).finish().ok
    verdict = check(rewritten, anchors=anchors, public_key=private.public_key()).finish()
    assert verdict.broken is not None
    assert verdict.broken.seq == 2
    assert "does not match the anchor" in verdict.broken.problem


def test_an_anchor_with_a_wrong_signature_is_refused() -> None:
    private, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    bodies = chain(3)
    forged = anchor(other, bodies[2])
    verdict = check(bodies, anchors={3: forged}, public_key=private.public_key()).finish()
    assert verdict.broken is not None
    assert verdict.broken.problem == "the anchor's signature is invalid"
    garbage = Anchor(3, forged.hash, forged.at, forged.key_fingerprint, "zz")
    assert not check(bodies, anchors={3: garbage}, public_key=private.public_key()).finish().ok


def test_an_anchor_beyond_the_head_means_entries_were_removed_from_the_end() -> None:
    private = Ed25519PrivateKey.generate()
    bodies = chain(4)
    verdict = check(
        bodies[:2], anchors={4: anchor(private, bodies[3])}, public_key=private.public_key()
    ).finish()
    assert verdict.broken is not None
    assert "covers entry 4" in verdict.broken.problem


def test_a_slice_starting_later_takes_its_first_prev_on_trust() -> None:
    bodies = chain(6)
    verdict = check(bodies[3:], start=4).finish()
    assert verdict.ok
    assert (verdict.first, verdict.head_seq) == (4, 6)


def export(tmp_path: Path, private: Ed25519PrivateKey, bodies: list[dict[str, object]]) -> Path:
    anchors = [anchor(private, bodies[-1])]
    members = [
        ("public-key.pem", public_pem(private.public_key())),
        ("journal.jsonl", b"".join(canonical(b) + b"\n" for b in bodies)),
        ("anchors.jsonl", b"".join(canonical(a.as_json()) + b"\n" for a in anchors)),
    ]
    path = tmp_path / "export.tar"
    archive_write(path, members, private)
    return path


def test_an_archive_round_trips_and_its_chain_verifies(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    bodies = chain(3)
    path = export(tmp_path, private, bodies)
    data = path.read_bytes()
    assert not path.with_name("export.tar.part").exists()
    # A plain tar any tool reads, with deterministic headers.
    with tarfile.open(path) as tar:
        assert tar.getnames() == ["public-key.pem", "journal.jsonl", "anchors.jsonl", "archive.sig"]
        assert {m.mtime for m in tar.getmembers()} == {0}
    archive = archive_read(data, pinned=private.public_key())
    assert set(archive.members) == {"public-key.pem", "journal.jsonl", "anchors.jsonl"}
    assert key_fingerprint(archive.public_key) == key_fingerprint(private.public_key())
    verdict = archive_verify(archive)
    assert verdict.ok
    assert (verdict.entries, verdict.anchors) == (3, 1)
    assert [a.seq for a in anchors_from_jsonl(archive.members["anchors.jsonl"])] == [3]


@pytest.mark.parametrize("offset", [100, 700, -TAIL + 520, -10])
def test_a_flipped_byte_anywhere_fails_the_archive(tmp_path: Path, offset: int) -> None:
    private = Ed25519PrivateKey.generate()
    data = bytearray(export(tmp_path, private, chain(2)).read_bytes())
    data[offset] ^= 0x01
    with pytest.raises(ArchiveError):
        archive_read(bytes(data))


def test_an_archive_signed_by_another_key_is_refused_when_pinned(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    data = export(tmp_path, private, chain(2)).read_bytes()
    with pytest.raises(ArchiveError, match="not the expected"):
        archive_read(data, pinned=Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ArchiveError, match="too short"):
        archive_read(data[:1000])


def test_a_re_signed_archive_with_an_edited_journal_fails_its_chain(tmp_path: Path) -> None:
    """Whoever holds a key can sign anything: the chain and the published anchors still judge it."""
    private = Ed25519PrivateKey.generate()
    bodies = chain(3)
    honest = archive_read(export(tmp_path, private, bodies).read_bytes())
    published = list(anchors_from_jsonl(honest.members["anchors.jsonl"]))
    edited = [bodies[0], {**bodies[1], "data": {"status": "failed"}}, bodies[2]]
    forger = Ed25519PrivateKey.generate()
    (tmp_path / "forged").mkdir()
    forged = archive_read(export(tmp_path / "forged", forger, edited).read_bytes())
    verdict = archive_verify(forged, published=published)
    assert not verdict.ok


def test_a_noncanonical_journal_line_does_not_verify(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    bodies = chain(2)
    pretty = b"".join(json.dumps(b, indent=1).replace("\n", "").encode() + b"\n" for b in bodies)
    members = [("public-key.pem", public_pem(private.public_key())), ("journal.jsonl", pretty)]
    archive_write(tmp_path / "x.tar", members, private)
    verdict = archive_verify(archive_read((tmp_path / "x.tar").read_bytes()))
    assert not verdict.ok


def test_an_archive_without_a_public_key_is_refused(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    archive_write(tmp_path / "x.tar", [("journal.jsonl", b"")], private)
    with pytest.raises(ArchiveError, match=r"no public-key\.pem"):
        archive_read((tmp_path / "x.tar").read_bytes())
    with tarfile.open(fileobj=io.BytesIO((tmp_path / "x.tar").read_bytes())) as tar:
        assert tar.getnames() == ["journal.jsonl", "archive.sig"]
