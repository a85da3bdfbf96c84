"""PAX and GNU long-name/long-link headers are capped before tarfile reads them (issue 12): a
hostile 1 GiB extended header is refused after its 512-byte header block, not read into memory."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.engine.artifact_helpers import Member, Surgeon, hello_module, tar_bytes
from updates.engine.artifact import ArtifactReader, LimitError, read_artifact
from updates.engine.bundle import ingest
from updates.engine.store import ArtifactStore

GIB = 1 << 30


class Endless:
    """A header block announcing `size` bytes, then zeros for as long as anyone reads."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = 1 << 20 if n is None or n < 0 else n
        data = self.head[:n] + bytes(max(0, n - len(self.head)))
        self.head = self.head[n:]
        self.read_bytes += len(data)
        return data


def block(kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo("././@LongLink" if kind != tarfile.XHDTYPE else "././@PaxHeader")
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (tarfile.XHDTYPE, "PAX extended header of 1073741824 bytes exceeds the header cap"),
        (tarfile.XGLTYPE, "PAX extended header of 1073741824 bytes exceeds the header cap"),
        (tarfile.GNUTYPE_LONGNAME, "GNU long-name header of 1073741824 bytes exceeds the member-name cap"),
        (tarfile.GNUTYPE_LONGLINK, "GNU long-link header of 1073741824 bytes exceeds the member-name cap"),
    ],
)
def test_the_artifact_reader_refuses_a_huge_tar_metadata_header_unread(kind: bytes, message: str) -> None:
    source = Endless(block(kind, GIB))
    with pytest.raises(LimitError, match=message) as caught:
        ArtifactReader(source).read_header()  # type: ignore[arg-type]
    assert caught.value.member == "version"
    assert source.read_bytes < 1 << 20


def test_it_counts_a_long_name_against_the_cap_inside_the_data_tar(tmp_path: Path) -> None:
    path, _ = hello_module(tmp_path)
    data = Surgeon.load(path)
    long_name = "a" * 5000
    data.get("data/0000.tar.gz").data = tar_bytes([Member(long_name, b"x")], ".gz")  # a PAX path record
    data.save(path)
    with pytest.raises(LimitError, match="member name longer than 4096 bytes"):
        read_artifact(path)


def test_bundle_ingest_refuses_a_huge_pax_header_unread(tmp_path: Path) -> None:
    yaml = b"kind: manifest\n"
    info = tarfile.TarInfo("manifest.yaml")
    info.size = len(yaml)
    head = info.tobuf(format=tarfile.USTAR_FORMAT) + yaml.ljust(512, b"\0")  # one member, no end yet
    source = Endless(head + block(tarfile.XHDTYPE, GIB))
    intake = ingest(source, ArtifactStore(tmp_path / "store"))  # type: ignore[arg-type]
    assert intake.problems[-1] == (
        "the member after 'manifest.yaml': PAX extended header of 1073741824 bytes exceeds the header cap "
        "of 65536 (intake stopped here)"
    )
    assert source.read_bytes < 1 << 20


def test_bundle_ingest_refuses_a_long_name_beyond_its_cap_unread(tmp_path: Path) -> None:
    source = Endless(block(tarfile.GNUTYPE_LONGNAME, GIB))
    intake = ingest(source, ArtifactStore(tmp_path / "store"))  # type: ignore[arg-type]
    assert (
        "GNU long-name header of 1073741824 bytes exceeds the member-name cap of 1024" in intake.problems[-1]
    )
    assert source.read_bytes < 1 << 20


def test_pax_headers_of_a_normal_tar_pass(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.yaml")
        info.pax_headers = {"comment": "x" * 1000}
        info.size = 0
        tar.addfile(info)
    intake = ingest(io.BytesIO(buffer.getvalue()), ArtifactStore(tmp_path / "store"))
    assert not any("PAX" in p for p in intake.problems)
