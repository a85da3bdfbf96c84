"""The streaming reader's API: header first, payload streams, finish(), extraction, limits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.artifact_helpers import HELLO, Keys, Member, Surgeon, hello_module, session_keys, sha
from updates.engine.artifact import (
    ArtifactReader,
    ChecksumError,
    LimitError,
    Limits,
    PayloadMismatchError,
    SignatureError,
    load_private_key,
    load_public_key,
    read_artifact,
    write_artifact,
)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return session_keys(tmp_path_factory)


def _two_files(tmp_path: Path) -> Path:
    (tmp_path / "a.bin").write_bytes(b"a" * 200_000)
    (tmp_path / "b.bin").write_bytes(b"b" * 10)
    path = tmp_path / "two.mender"
    write_artifact(
        path,
        kind="module-image",
        name="two",
        device_types=["d"],
        payload_type="directory",
        files=[tmp_path / "a.bin", tmp_path / "b.bin"],
    )
    return path


def test_it_streams_payloads_from_a_pipe(tmp_path: Path) -> None:
    path = _two_files(tmp_path)
    with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as cat:
        assert cat.stdout is not None
        reader = ArtifactReader(cat.stdout)
        assert reader.read_header().files[0].size == 0
        seen = {stream.name: stream.read() for stream in reader.payloads()}
        info = reader.finish()
    assert seen == {"a.bin": b"a" * 200_000, "b.bin": b"b" * 10}
    assert [(f.name, f.size) for f in info.files] == [("a.bin", 200_000), ("b.bin", 10)]


def test_it_drains_and_verifies_payloads_the_consumer_skips(tmp_path: Path) -> None:
    path = _two_files(tmp_path)
    with open(path, "rb") as handle:
        reader = ArtifactReader(handle)
        reader.read_header()
        first = next(iter(reader.payloads()))
        assert first.read(5) == b"aaaaa"
        assert reader.finish().files[1].size == 10


def test_it_raises_checksum_error_on_the_last_byte(tmp_path: Path) -> None:
    path, _ = hello_module(tmp_path)
    bad = Surgeon.load(path).set_data([Member("hello.txt", b"HELLO WORLD\n")]).save(tmp_path / "bad.mender")
    with open(bad, "rb") as handle:
        reader = ArtifactReader(handle)
        reader.read_header()
        stream = next(iter(reader.payloads()))
        assert stream.read(11) == b"HELLO WORLD"
        with pytest.raises(ChecksumError, match=r"data/0000\.tar\.gz: hello\.txt: checksum mismatch"):
            stream.read(1)


def test_it_requires_read_header_before_payloads(tmp_path: Path) -> None:
    path, _ = hello_module(tmp_path)
    with open(path, "rb") as handle, pytest.raises(RuntimeError):
        ArtifactReader(handle).payloads()


def test_it_requires_a_signature_on_request(tmp_path: Path) -> None:
    path, _ = hello_module(tmp_path)
    with open(path, "rb") as handle, pytest.raises(SignatureError, match="not signed"):
        ArtifactReader(handle, require_signature=True).read_header()


def test_it_reports_signed_artifacts_without_checking_when_no_keys(tmp_path: Path, keys: Keys) -> None:
    path, written = hello_module(tmp_path, signing_key=load_private_key(keys.ec_private))
    info = read_artifact(path)
    assert info.signed and info.signer_fingerprint is None
    verified = read_artifact(path, keys=[load_public_key(keys.rsa_public), load_public_key(keys.ec_public)])
    assert verified.signer_fingerprint == written.signer_fingerprint


def test_it_extracts_only_verified_files_and_cleans_up_on_failure(tmp_path: Path) -> None:
    path = _two_files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    info = read_artifact(path, extract_to=out)
    assert sorted(p.name for p in out.iterdir()) == ["a.bin", "b.bin"]
    assert (out / "a.bin").read_bytes() == b"a" * 200_000 and info.files[0].sha256 == sha(b"a" * 200_000)
    bad = Surgeon.load(path)
    bad.fix("data/0000/b.bin", b"not b")
    bad_path = bad.save(tmp_path / "bad.mender")
    (tmp_path / "out2").mkdir()
    with pytest.raises(ChecksumError, match=r"b\.bin"):
        read_artifact(bad_path, extract_to=tmp_path / "out2")
    assert list((tmp_path / "out2").iterdir()) == []


def test_it_refuses_to_overwrite_existing_files_when_extracting(tmp_path: Path) -> None:
    path, _ = hello_module(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "hello.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        read_artifact(path, extract_to=tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["hello.txt"]
    assert (tmp_path / "out" / "hello.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("limits", "text"),
    [
        (Limits(max_payload_files=1), "lines exceed the cap"),
        (Limits(max_payload_bytes=100), "payload exceeds"),
        (Limits(max_manifest_bytes=50), "manifest"),
        (Limits(max_header_members=1), "more than 1 members"),
        (Limits(max_json_depth=1), "nested deeper"),
    ],
)
def test_it_enforces_configured_limits(tmp_path: Path, limits: Limits, text: str) -> None:
    path = _two_files(tmp_path)
    with pytest.raises(LimitError, match=text):
        read_artifact(path, limits=limits)


def test_it_reads_an_empty_payload_artifact_with_and_without_a_data_member(tmp_path: Path) -> None:
    path, _ = hello_module(tmp_path)
    surgeon = Surgeon.load(path)
    members = surgeon.header()
    members[0].data = (
        b'{"payloads":[{"type":null}],"artifact_provides":{"artifact_name":"boot"},'
        b'"artifact_depends":{"device_type":["d"]}}'
    )
    members[-1].data = b'{"type":null}'
    surgeon.set_header(members).set_data([])
    manifest = surgeon.get("manifest")
    manifest.data = b"".join(line + b"\n" for line in manifest.data.splitlines() if b"data/" not in line)
    info = read_artifact(surgeon.save(tmp_path / "boot.mender"))
    assert (info.payload_type, info.files, info.name) == (None, (), "boot")
    surgeon.members.pop()
    assert read_artifact(surgeon.save(tmp_path / "boot2.mender")).payload_type is None


def test_it_rejects_payload_files_in_an_empty_payload_artifact(tmp_path: Path) -> None:
    path, _ = hello_module(tmp_path)
    surgeon = Surgeon.load(path)
    members = surgeon.header()
    members[0].data = members[0].data.replace(b'"single-file"', b"null")
    members[-1].data = b'{"type":null}'
    with pytest.raises(PayloadMismatchError, match="empty-payload"):
        read_artifact(surgeon.set_header(members).save(tmp_path / "bad.mender"))


def test_it_writes_what_it_reports(tmp_path: Path) -> None:
    path, written = hello_module(tmp_path, meta_data={"a": [1, 2]}, group="g", clears_provides=["x.*"])
    assert read_artifact(path) == written
    assert written.files[0].size == len(HELLO)
    assert written.all_provides() == {
        "rootfs-image.single-file.version": "app-1.0",
        "artifact_name": "app-1.0",
        "artifact_group": "g",
    }


def test_it_caps_a_zstd_header_bomb_while_streaming(tmp_path: Path) -> None:
    import zstandard

    from tests.engine.artifact_helpers import tar_bytes

    path, _ = hello_module(tmp_path, compression="zstd_default")
    bomb = zstandard.ZstdCompressor(level=19).compress(tar_bytes([Member("header-info", bytes(64 << 20))]))
    assert len(bomb) < 64 << 10
    Surgeon.load(path).replace("header.tar.zst", bomb).save(path)
    with pytest.raises(LimitError, match=r"header\.tar\.zst: decompressed header exceeds the cap"):
        read_artifact(path)


def test_it_caps_zstd_payload_bytes(tmp_path: Path) -> None:
    path, _ = hello_module(tmp_path, compression="zstd_best")
    with pytest.raises(LimitError, match="payload exceeds"):
        read_artifact(path, limits=Limits(max_payload_bytes=len(HELLO) - 1))


def test_a_write_that_fails_while_extracting_is_raised_and_leaves_no_file(tmp_path: Path) -> None:
    """Extraction writes on a second thread (overlapped with hashing); a write error there must
    still reach the caller, and the half-written file must go. The file-size limit makes the
    kernel refuse the bytes after 1 MiB (EFBIG), in a child so the limit stays there."""
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 16384)  # 4 MiB
    path = tmp_path / "big.mender"
    write_artifact(
        path,
        kind="module-image",
        name="big",
        device_types=["d"],
        payload_type="single-file",
        files=[tmp_path / "big.bin"],
        compression="none",
    )
    (tmp_path / "out").mkdir()
    child = (
        "import resource, signal, sys; from pathlib import Path;"
        "from updates.engine.artifact import read_artifact;"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20));"
        "read_artifact(sys.argv[1], extract_to=Path(sys.argv[2]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, str(path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode != 0 and "File too large" in done.stderr
    assert list((tmp_path / "out").iterdir()) == []
