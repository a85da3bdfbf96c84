"""Streamed artifacts at Download (docs/bytes.md), without a server: the planned header comes from
the stream reference, the bytes from an opener. Verified as they pass: payload checksums, the
manifest against the planned one, and for a packed download the whole file on the side, whose
error surfaces before the reader sees a clean end."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.engine.artifact_helpers import Keys, hello_module, session_keys
from updates.engine.artifact import (
    ArtifactError,
    ChecksumError,
    SignatureError,
    load_private_key,
    load_public_key,
    write_artifact,
)
from updates.engine.streaming import (
    StreamRef,
    read_planned,
    ref_path,
    streamed_payloads,
    write_ref,
)


class _Bytes:
    """An opener over bytes in memory; remembers whether the stream was kept (verified)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.kept = False
        self.closed = False

    def open(self, ref: StreamRef) -> _Bytes:
        self.file = io.BytesIO(self.data)
        self.size: int | None = len(self.data)
        return self

    def read(self, n: int = -1) -> bytes:
        return self.file.read(n)

    def verified(self) -> None:
        self.kept = True

    def close(self) -> None:
        self.closed = True


def _artifact(tmp_path: Path, name: str, payload: bytes) -> bytes:
    (tmp_path / f"{name}.bin").write_bytes(payload)
    out = tmp_path / f"{name}.mender"
    write_artifact(
        out, kind="module-image", name=name, device_types=["rtos"], payload_type="rtos",
        files=[tmp_path / f"{name}.bin"], compression="none",
    )  # fmt: skip
    return out.read_bytes()


def _planned(tmp_path: Path, data: bytes) -> Path:
    path = ref_path(tmp_path / "streams", "https://server.example", "a1")
    write_ref(path, StreamRef("https://server.example", "a1", "rtos-v3", len(data), data[: 1 << 16]))
    return path


def _drain(opener: _Bytes, ref: Path, *, unpacked: bool) -> dict[str, bytes]:
    """Read every payload to its end, as an interface reading its streams does."""
    planned = read_planned(ref, keys=())
    got = {}
    for payload in streamed_payloads(opener, ref, planned, unpacked=unpacked, keys=()):
        chunks = []
        while chunk := payload.read(65536):
            chunks.append(chunk)
        got[payload.name] = b"".join(chunks)
    return got


def test_the_planned_header_is_read_from_the_reference(tmp_path: Path) -> None:
    data = _artifact(tmp_path, "rtos-v3", b"fw" * 1000)
    info = read_planned(_planned(tmp_path, data), keys=())
    assert info.name == "rtos-v3" and info.device_types == ("rtos",)


@pytest.mark.parametrize("unpacked", [True, False])
def test_it_streams_the_payloads_or_the_whole_file_and_keeps_it_only_when_verified(
    tmp_path: Path, unpacked: bool
) -> None:
    data = _artifact(tmp_path, "rtos-v3", b"fw" * 100_000)
    opener = _Bytes(data)
    got = _drain(opener, _planned(tmp_path, data), unpacked=unpacked)
    assert got == ({"rtos-v3.bin": b"fw" * 100_000} if unpacked else {"artifact.mender": data})
    assert opener.kept and opener.closed


@pytest.mark.parametrize("unpacked", [True, False])
def test_a_corrupted_stream_fails_before_a_clean_end(tmp_path: Path, unpacked: bool) -> None:
    data = _artifact(tmp_path, "rtos-v3", b"A" * 200_000)
    bad = data.replace(b"A" * 64, b"B" * 64, 1)
    opener = _Bytes(bad)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        _drain(opener, _planned(tmp_path, data), unpacked=unpacked)
    assert not opener.kept and opener.closed


@pytest.mark.parametrize("unpacked", [True, False])
def test_another_artifact_than_the_planned_one_is_refused(tmp_path: Path, unpacked: bool) -> None:
    planned = _artifact(tmp_path, "rtos-v3", b"one" * 1000)
    other = _artifact(tmp_path, "rtos-v3", b"two" * 1000)
    with pytest.raises(ArtifactError, match="another artifact than the one planned"):
        _drain(_Bytes(other), _planned(tmp_path, planned), unpacked=unpacked)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return session_keys(tmp_path_factory)


def test_a_signed_stream_is_checked_at_planning_and_again_as_it_streams(tmp_path: Path, keys: Keys) -> None:
    path, _ = hello_module(tmp_path, signing_key=load_private_key(keys.ec_private))
    data = path.read_bytes()
    ref = _planned(tmp_path, data)
    trusted, other = [load_public_key(keys.ec_public)], [load_public_key(keys.rsa_public)]
    planned = read_planned(ref, keys=trusted)
    assert planned.signed and planned.signer_fingerprint is not None
    with pytest.raises(SignatureError):
        read_planned(ref, keys=other)  # another key: refused at planning
    streamed = streamed_payloads(_Bytes(data), ref, planned, unpacked=True, keys=other)
    with pytest.raises(SignatureError):
        next(streamed)  # and at Download, had the keys changed since
    (tmp_path / "unsigned").mkdir()
    unsigned, _ = hello_module(tmp_path / "unsigned")
    with pytest.raises(SignatureError, match="not signed"):
        read_planned(_planned(tmp_path / "unsigned", unsigned.read_bytes()), keys=trusted)
