"""docs/protocol.md §8.8-§8.17: each malformed artifact is rejected with its own error class and a
message naming the member. mender-artifact 3.9 is run on the same file as a cross-check; the two
documented divergences (format "other", a newline appended to a signed manifest) are asserted.
"""

from __future__ import annotations

import base64
import gzip
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.engine.artifact_helpers import (
    Keys,
    Member,
    Surgeon,
    hello_module,
    member_offsets,
    mender_artifact,
    session_keys,
    sha,
    tar_bytes,
)
from updates.engine.artifact import (
    ArtifactError,
    ChecksumError,
    FormatError,
    HeaderError,
    LimitError,
    ManifestError,
    PayloadMismatchError,
    SignatureError,
    TruncatedError,
    UnsafeMemberError,
    VersionError,
    load_private_key,
    load_public_key,
    read_artifact,
)

Build = Callable[[Surgeon], Surgeon]


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return session_keys(tmp_path_factory)


def _version(doc: dict[str, object]) -> Build:
    return lambda s: s.replace("version", json.dumps(doc, separators=(",", ":")).encode())


def _payload(members: list[Member], *, listed: tuple[str, ...] = ()) -> Build:
    def build(s: Surgeon) -> Surgeon:
        for name in listed:
            s.fix(f"data/0000/{name}", b"x")
        return s.set_data(members)

    return build


def _rename_outer(old: str, new: str) -> Build:
    def build(s: Surgeon) -> Surgeon:
        s.get(old).name = new
        return s

    return build


def _reorder(*names: str) -> Build:
    def build(s: Surgeon) -> Surgeon:
        s.members = [s.get(name) for name in names]
        return s

    return build


def _header_info(edit: Callable[[dict[str, object]], None]) -> Build:
    def build(s: Surgeon) -> Surgeon:
        doc = json.loads(next(m for m in s.header() if m.name == "header-info").data)
        edit(doc)
        return s.edit_header("header-info", json.dumps(doc).encode())

    return build


def _type_info(kind: object) -> Build:
    return lambda s: s.edit_header("headers/0000/type-info", json.dumps({"type": kind}).encode())


def _script(name: str) -> Build:
    def build(s: Surgeon) -> Surgeon:
        members = s.header()
        members.insert(1, Member(name, b"#!/bin/sh\n", mode=0o755))
        return s.set_header(members)

    return build


def _zero_header_sha(s: Surgeon) -> Surgeon:
    s.get("manifest").data = s.get("manifest").data.replace(
        sha(s.get("header.tar.gz").data).encode(), b"0" * 64
    )
    return s


def _header_bomb(s: Surgeon) -> Surgeon:
    bomb = tar_bytes([Member("header-info", b"\0" * (50 << 20))])
    return s.replace("header.tar.gz", gzip.compress(bomb, mtime=0))


def _huge_manifest(s: Surgeon) -> Surgeon:
    s.get("manifest").data += b"".join(f"{'a' * 64}  data/0000/f{i}\n".encode() for i in range(100_000))
    return s


def _insert(index: int, member: Member) -> Build:
    def build(s: Surgeon) -> Surgeon:
        s.members.insert(index, member)
        return s

    return build


def _ghost(s: Surgeon) -> Surgeon:
    s.fix("data/0000/ghost.bin", b"boo")
    return s


def _dup_header(s: Surgeon) -> Surgeon:
    s.members.insert(3, Member("header.tar.gz", s.get("header.tar.gz").data))
    return s


HELLO_DATA = [Member("hello.txt", b"hello world\n")]
# (id, build, error class, text the message must contain, does mender-artifact 3.9 accept it?)
CASES: list[tuple[str, Build, type[ArtifactError], str, bool]] = [
    (
        "8-payload-checksum",
        _payload([Member("hello.txt", b"HELLO WORLD\n")]),
        ChecksumError,
        "data/0000.tar.gz: hello.txt: checksum mismatch",
        False,
    ),
    ("9-header-checksum", _zero_header_sha, ChecksumError, "header.tar.gz", False),
    (
        "10-version-2",
        _version({"format": "mender", "version": 2}),
        VersionError,
        "version: unsupported",
        False,
    ),
    (
        "10-version-4",
        _version({"format": "mender", "version": 4}),
        VersionError,
        "version: unsupported",
        False,
    ),
    # Divergence: mender-artifact 3.9 does not check the format field; the C++ client does, so do we.
    ("10-format-other", _version({"format": "other", "version": 3}), VersionError, "format 'other'", True),
    (
        "10-version-unlisted-change",
        lambda s: s.replace("version", b'{"format":"mender", "version":3}', fix_manifest=False),
        ChecksumError,
        "version: checksum mismatch",
        False,
    ),
    (
        "11-payload-dotdot",
        _payload([Member("../../etc/evil", b"x")], listed=("../../etc/evil",)),
        UnsafeMemberError,
        "manifest: unsafe member name '../../etc/evil'",
        False,
    ),
    (
        "11-payload-absolute",
        _payload([Member("/etc/evil", b"x")], listed=("/etc/evil",)),
        UnsafeMemberError,
        "'/etc/evil'",
        False,
    ),
    (
        "11-payload-subdir",
        _payload([Member("sub/evil", b"x")], listed=("sub/evil",)),
        UnsafeMemberError,
        "'sub/evil'",
        False,
    ),
    (
        "11-payload-dotdot-unlisted",
        _payload([*HELLO_DATA, Member("../evil", b"x")]),
        UnsafeMemberError,
        "data/0000.tar.gz: ../evil",
        False,
    ),
    (
        "11-script-traversal",
        _script("scripts/../../../tmp/ArtifactInstall_Enter_00_x"),
        UnsafeMemberError,
        "header.tar.gz: scripts/../../../tmp/ArtifactInstall_Enter_00_x",
        False,
    ),
    # The next three: mender-artifact 3.9 accepts them; the C++ client's parser (which we follow) does not.
    ("11-script-bad-name", _script("scripts/Sync_Enter_00"), UnsafeMemberError, "invalid state script", True),
    (
        "11-outer-traversal",
        _rename_outer("data/0000.tar.gz", "data/../../evil.tar.gz"),
        UnsafeMemberError,
        "data/../../evil.tar.gz",
        False,
    ),
    (
        "11-symlink",
        _payload([Member("hello.txt", type=tarfile.SYMTYPE, linkname="/etc/shadow")]),
        UnsafeMemberError,
        "data/0000.tar.gz: hello.txt: not a regular file (symlink)",
        False,
    ),
    (
        "11-hardlink",
        _payload([Member("hello.txt", type=tarfile.LNKTYPE, linkname="/etc/shadow")]),
        UnsafeMemberError,
        "hello.txt: not a regular file (hard link)",
        False,
    ),
    (
        "11-device",
        _payload([Member("hello.txt", type=tarfile.CHRTYPE)]),
        UnsafeMemberError,
        "hello.txt: not a regular file",
        False,
    ),
    (
        "11-fifo",
        _payload([Member("hello.txt", type=tarfile.FIFOTYPE)]),
        UnsafeMemberError,
        "hello.txt: not a regular file",
        False,
    ),
    (
        "13-header-first",
        _reorder("header.tar.gz", "version", "manifest", "data/0000.tar.gz"),
        FormatError,
        "header.tar.gz: expected 'version'",
        False,
    ),
    (
        "13-data-before-header",
        _reorder("version", "manifest", "data/0000.tar.gz", "header.tar.gz"),
        FormatError,
        "data/0000.tar.gz: expected header.tar",
        False,
    ),
    (
        "13-manifest-missing",
        _reorder("version", "header.tar.gz", "data/0000.tar.gz"),
        FormatError,
        "header.tar.gz: expected 'manifest'",
        False,
    ),
    (
        "13-junk-after-header",
        _insert(3, Member("junk", b"x")),
        FormatError,
        "junk: unexpected member",
        False,
    ),
    ("13-duplicate-header", _dup_header, FormatError, "header.tar.gz: unexpected member", False),
    (
        "13-manifest-augment",
        _insert(2, Member("manifest-augment", b"")),
        FormatError,
        "manifest-augment",
        False,
    ),
    ("14-manifest-ghost", _ghost, PayloadMismatchError, "data/0000/ghost.bin: listed in the manifest", False),
    (
        "14-payload-unlisted",
        _payload([*HELLO_DATA, Member("extra.bin", b"x")]),
        PayloadMismatchError,
        "data/0000.tar.gz: extra.bin: payload file not listed",
        False,
    ),
    (
        "16-empty-device-type",
        _header_info(lambda d: d["artifact_depends"].update(device_type=[])),  # type: ignore[attr-defined]
        HeaderError,
        "header-info: device_type",
        False,
    ),
    (
        "16-no-device-type",
        _header_info(lambda d: d["artifact_depends"].pop("device_type")),  # type: ignore[attr-defined]
        HeaderError,
        "header-info: device_type",
        False,
    ),
    (
        "16-two-payloads",
        _header_info(lambda d: d.update(payloads=[{"type": "a"}, {"type": "a"}])),
        HeaderError,
        "header-info: payloads",
        True,
    ),
    (
        "16-empty-type",
        _header_info(lambda d: d.update(payloads=[{"type": ""}])),
        HeaderError,
        "header-info: invalid payload type",
        False,
    ),
    (
        "16-type-mismatch",
        _type_info("other-module"),
        HeaderError,
        "headers/0000/type-info: type 'other-module'",
        True,
    ),
    (
        "16-bad-json",
        lambda s: s.edit_header("header-info", b"{nope"),
        HeaderError,
        "header-info: invalid JSON",
        False,
    ),
    (
        "16-manifest-blank-line",
        lambda s: s.replace("manifest", s.get("manifest").data + b"\n", fix_manifest=False),
        ManifestError,
        "manifest: line 4: malformed",
        True,
    ),
    ("17-header-bomb", _header_bomb, LimitError, "header.tar.gz: decompressed header exceeds", False),
    ("17-huge-manifest", _huge_manifest, LimitError, "manifest:", False),
]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return hello_module(tmp_path)[0]


@pytest.mark.parametrize(
    ("build", "error", "text", "ma_accepts"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_it_rejects_malformed_artifacts(
    base: Path, tmp_path: Path, build: Build, error: type[ArtifactError], text: str, ma_accepts: bool
) -> None:
    bad = build(Surgeon.load(base)).save(tmp_path / "bad.mender")
    (tmp_path / "out").mkdir()
    with pytest.raises(error) as caught:
        read_artifact(bad, extract_to=tmp_path / "out")
    assert text in str(caught.value)
    assert caught.value.member and str(caught.value).startswith(caught.value.member)
    assert (mender_artifact("validate", bad).returncode == 0) is ma_accepts
    assert list((tmp_path / "out").iterdir()) == []


def test_it_tolerates_unknown_header_info_keys_unlike_mender_artifact(base: Path, tmp_path: Path) -> None:
    # Policy (docs/protocol.md §8.16): the C++ client ignores extra keys, so we read them; we never write them.
    bad = _header_info(lambda d: d.update(extra=1))(Surgeon.load(base)).save(tmp_path / "bad.mender")
    assert read_artifact(bad).name == "app-1.0"
    assert mender_artifact("validate", bad).returncode != 0


@pytest.mark.parametrize(
    ("where", "error"),
    [("header", TruncatedError), ("data", TruncatedError), ("before-data", PayloadMismatchError)],
)
def test_it_rejects_truncated_artifacts(
    base: Path, tmp_path: Path, where: str, error: type[ArtifactError]
) -> None:
    offsets = member_offsets(base)
    header, data = offsets["header.tar.gz"], offsets["data/0000.tar.gz"]
    cut = {"header": header[1] + 100, "data": data[1] + 40, "before-data": data[0]}[where]
    bad = tmp_path / "cut.mender"
    bad.write_bytes(base.read_bytes()[:cut])
    with pytest.raises(error):
        read_artifact(bad)
    assert mender_artifact("validate", bad).returncode != 0


def _signed(base: Path, keys: Keys, tmp_path: Path) -> Surgeon:
    signed = tmp_path / "signed.mender"
    assert mender_artifact("sign", base, "-k", keys.rsa_private, "-o", signed).returncode == 0
    return Surgeon.load(signed)


def test_it_rejects_a_newline_appended_to_a_signed_manifest(base: Path, keys: Keys, tmp_path: Path) -> None:
    # Divergence: mender-artifact re-serialises the manifest before verifying and accepts this.
    surgeon = _signed(base, keys, tmp_path)
    bad = surgeon.replace("manifest", surgeon.get("manifest").data + b"\n", fix_manifest=False)
    path = bad.save(tmp_path / "bad.mender")
    with pytest.raises(SignatureError, match=r"manifest\.sig: signature"):
        read_artifact(path, keys=[load_public_key(keys.rsa_public)])
    assert mender_artifact("validate", path, "-k", keys.rsa_public).returncode == 0


def test_it_rejects_a_signature_that_is_not_base64(base: Path, keys: Keys, tmp_path: Path) -> None:
    path = (
        _signed(base, keys, tmp_path).replace("manifest.sig", b"!!notbase64!!").save(tmp_path / "bad.mender")
    )
    with pytest.raises(SignatureError, match=r"manifest\.sig: signature is not valid base64"):
        read_artifact(path, keys=[load_public_key(keys.rsa_public)])
    assert mender_artifact("validate", path, "-k", keys.rsa_public).returncode != 0


def test_it_rejects_a_p384_signature(base: Path, keys: Keys, tmp_path: Path) -> None:
    surgeon = Surgeon.load(base)
    p384 = serialization.load_pem_private_key(keys.p384_private.read_bytes(), password=None)
    assert isinstance(p384, ec.EllipticCurvePrivateKey)
    sig = base64.b64encode(p384.sign(surgeon.get("manifest").data, ec.ECDSA(hashes.SHA256())))
    surgeon.members.insert(2, Member("manifest.sig", sig))
    path = surgeon.save(tmp_path / "p384.mender")
    with pytest.raises(SignatureError, match="does not verify"):
        read_artifact(path, keys=[load_public_key(keys.ec_public)])
    with pytest.raises(SignatureError, match="only P-256"):
        load_public_key(keys.p384_public)
    with pytest.raises(SignatureError, match="only P-256"):
        load_private_key(keys.p384_private)


def test_it_rejects_unsigned_and_wrongly_signed_artifacts_when_keys_are_given(
    base: Path, keys: Keys, tmp_path: Path
) -> None:
    with pytest.raises(SignatureError, match=r"manifest\.sig: artifact is not signed"):
        read_artifact(base, keys=[load_public_key(keys.rsa_public)])
    signed = _signed(base, keys, tmp_path).save(tmp_path / "signed.mender")
    for wrong in (keys.other_rsa_public, keys.ec_public):
        with pytest.raises(SignatureError, match="does not verify"):
            read_artifact(signed, keys=[load_public_key(wrong)])
    assert mender_artifact("validate", base, "-k", keys.rsa_public).returncode != 0


def test_it_rejects_gzip_data_under_a_zstd_name_clearly(base: Path, tmp_path: Path) -> None:
    surgeon = Surgeon.load(base)
    surgeon.get("data/0000.tar.gz").name = "data/0000.tar.zst"
    with pytest.raises(FormatError, match=r"data/0000.tar.zst: corrupt data: .*zstd"):
        read_artifact(surgeon.save(tmp_path / "z.mender"))


@pytest.mark.parametrize("data", [b"\x00garbage" * 200, b"kind: manifest\n", b""])
def test_it_says_what_it_expected_of_a_file_that_is_no_artifact(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "renamed.mender"
    path.write_bytes(data)
    with pytest.raises(FormatError) as caught:
        read_artifact(path)
    assert str(caught.value).startswith(
        "not a Mender artifact: expected a tar archive whose first member is 'version' ("
    )
