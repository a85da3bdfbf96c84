"""Bundle intake: the three forms, one pass into the store, every problem, hostile archives."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from tests.engine.artifact_helpers import MENDER_ARTIFACT, Surgeon, session_keys
from updates.engine.artifact import load_public_key, write_artifact
from updates.engine.bundle import BundleLimits, Intake, ingest
from updates.engine.store import ArtifactStore

MANIFEST = b"""api_version: mender/v1
kind: manifest
name: sys-v2
system_types_compatible: [system-core]
component_types:
  gateway:
    artifact_path: artifacts/gateway-v2.mender
    update_strategy: {order: 10}
"""
TOPOLOGY = b"""api_version: mender/v1
kind: topology
system_type: system-core
components:
  - {component_type: gateway, interface: gateway, interface_args: [G13]}
"""


def _artifact(tmp_path: Path, name: str = "gateway-v2", payload: bytes = b"fw\n", **kw: object) -> bytes:
    (tmp_path / "p.img").write_bytes(payload)
    out = tmp_path / f"{name}.mender"
    write_artifact(
        out,
        kind="module-image",
        name=name,
        device_types=["gateway"],
        payload_type="gateway",
        files=[tmp_path / "p.img"],
        **kw,  # type: ignore[arg-type]
    )
    return out.read_bytes()


def _member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = len(data), kind, link
    return info, data


def _tar(*members: tuple[tarfile.TarInfo, bytes], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _ingest(tmp_path: Path, data: bytes, **kw: object) -> tuple[Intake, ArtifactStore]:
    """The upload as a file on disk (a .tar there is read through byte windows), checked
    against the same bytes as a stream (tarfile's stream mode): the same intake."""
    streamed = ingest(io.BytesIO(data), ArtifactStore(tmp_path / "store-streamed"), **kw)  # type: ignore[arg-type]
    store = ArtifactStore(tmp_path / "store")
    (tmp_path / "upload").write_bytes(b"junk" + data)
    with open(tmp_path / "upload", "rb") as upload:
        upload.read(4)  # ingest starts where the file is
        intake = ingest(upload, store, **kw)  # type: ignore[arg-type]
    assert _summary(intake) == _summary(streamed)
    return intake, store


def _summary(intake: Intake) -> tuple[object, ...]:
    stored = [(a.member, a.stored.sha256, a.stored.size, a.info) for a in intake.artifacts]
    # A stopped stream's digest covers what was read before the stop; a file's, all of it.
    whole = () if any("intake stopped" in p for p in intake.problems) else (intake.sha256, intake.size)
    # Where a cut stream is noticed differs (the stream reads ahead), not which member it names.
    problems = [p.split(":")[0] for p in intake.problems]
    return intake.form, whole, intake.manifest, intake.topology, stored, problems


def test_it_stores_the_artifacts_of_a_tar_bundle_and_keeps_its_manifest(tmp_path: Path) -> None:
    art = _artifact(tmp_path)
    intake, store = _ingest(
        tmp_path, _tar(_member("manifest.yaml", MANIFEST), _member("artifacts/gateway-v2.mender", art))
    )
    assert intake.problems == [] and intake.form == "tar"
    assert intake.manifest == MANIFEST and intake.manifest_member == "manifest.yaml"
    [stored] = intake.artifacts
    assert stored.member == "artifacts/gateway-v2.mender" and stored.info.name == "gateway-v2"
    assert store.path(stored.stored.sha256).read_bytes() == art


def test_it_reads_tar_gz_bundles_with_a_topology(tmp_path: Path) -> None:
    art = _artifact(tmp_path)
    data = _tar(
        _member("./topology.yaml", TOPOLOGY),
        _member("./m.yml", MANIFEST),
        _member("./artifacts/gateway-v2.mender", art),
        gz=True,
    )
    intake, _ = _ingest(tmp_path, data)
    assert intake.problems == [] and intake.form == "tar.gz"
    assert intake.topology == TOPOLOGY and intake.manifest_member == "m.yml"


def test_it_hashes_the_whole_upload(tmp_path: Path) -> None:
    import hashlib

    data = _tar(
        _member("manifest.yaml", MANIFEST), _member("artifacts/gateway-v2.mender", _artifact(tmp_path))
    )
    intake, _ = _ingest(tmp_path, data)
    assert intake.sha256 == hashlib.sha256(data).hexdigest() and intake.size == len(data)


def test_it_stores_an_artifact_carried_by_two_bundles_once(tmp_path: Path) -> None:
    art = _artifact(tmp_path)
    first, store = _ingest(
        tmp_path, _tar(_member("manifest.yaml", MANIFEST), _member("artifacts/gateway-v2.mender", art))
    )
    second = ingest(io.BytesIO(_tar(_member("other.yaml", MANIFEST), _member("a/b.mender", art))), store)
    assert first.artifacts[0].stored.sha256 == second.artifacts[0].stored.sha256
    assert first.artifacts[0].stored.new and not second.artifacts[0].stored.new
    assert len(store.entries()) == 1


def test_it_reports_every_problem_not_only_the_first(tmp_path: Path) -> None:
    good = _artifact(tmp_path)
    corrupt = (
        Surgeon.load_bytes(good)
        .replace("data/0000.tar.gz", b"junk", fix_manifest=False)
        .save(tmp_path / "bad.mender")
        .read_bytes()
    )
    data = _tar(
        _member("../escape.yaml", MANIFEST),
        _member("link.mender", kind=tarfile.SYMTYPE, link="/etc/passwd"),
        _member("dev", kind=tarfile.CHRTYPE),
        _member("artifacts/bad.mender", corrupt),
        _member("notes.txt", b"hi"),
        _member("manifest.yaml", MANIFEST),
        _member("manifest.yaml", MANIFEST),
    )
    intake, store = _ingest(tmp_path, data)
    text = "\n".join(intake.problems)
    assert "../escape.yaml: outside the bundle root" in text
    assert "link.mender: links are not allowed" in text
    assert "dev: device files and FIFOs are not allowed" in text
    assert "artifacts/bad.mender: data/0000.tar.gz: corrupt" in text
    assert "notes.txt: unexpected member" in text
    assert "manifest.yaml: duplicate member name" in text
    assert store.entries() == []  # the corrupt artifact never got a name


@pytest.mark.parametrize("name", ["/abs.yaml", "a/../../x.mender", "a\\b.mender", "a//b.mender"])
def test_it_refuses_member_names_that_leave_the_bundle_root(tmp_path: Path, name: str) -> None:
    intake, _ = _ingest(tmp_path, _tar(_member(name, b"x"), _member("manifest.yaml", MANIFEST)))
    assert any(
        p.startswith(name) and ("outside the bundle root" in p or "unsafe" in p) for p in intake.problems
    )


def test_it_refuses_hard_links(tmp_path: Path) -> None:
    intake, _ = _ingest(
        tmp_path,
        _tar(
            _member("manifest.yaml", MANIFEST),
            _member("x.mender", kind=tarfile.LNKTYPE, link="manifest.yaml"),
        ),
    )
    assert "x.mender: links are not allowed ('manifest.yaml')" in intake.problems[0].replace("-> ", "")


def test_it_stops_at_an_oversize_member_before_reading_it(tmp_path: Path) -> None:
    limits = BundleLimits(max_member_bytes=1000)
    intake, _ = _ingest(tmp_path, _tar(_member("big.mender", b"x" * 5000)), limits=limits)
    assert intake.problems == ["big.mender: 5000 bytes exceed the member cap of 1000 (intake stopped here)"]


def test_it_stops_a_decompression_bomb(tmp_path: Path) -> None:
    bomb = gzip.compress(_tar(_member("zeros.mender", bytes(8 << 20))), 9)
    intake, _ = _ingest(tmp_path, bomb, limits=BundleLimits(ratio_floor=1 << 20, max_ratio=50))
    assert "decompression ratio above 50:1" in intake.problems[-1] and "bomb" in intake.problems[-1]


def test_it_stops_at_too_many_members(tmp_path: Path) -> None:
    members = [_member(f"{i}.yaml", b"kind: x\n") for i in range(5)]
    intake, _ = _ingest(tmp_path, _tar(*members), limits=BundleLimits(max_members=3))
    assert intake.problems[-1] == "more than 3 members (intake stopped here)"


def test_it_reports_a_truncated_archive(tmp_path: Path) -> None:
    data = _tar(
        _member("manifest.yaml", MANIFEST), _member("artifacts/gateway-v2.mender", _artifact(tmp_path))
    )
    intake, store = _ingest(tmp_path, data[:3000])
    assert intake.problems and store.entries() == []


def test_it_refuses_a_bundle_without_a_manifest(tmp_path: Path) -> None:
    intake, _ = _ingest(tmp_path, _tar(_member("topology.yaml", TOPOLOGY)))
    assert intake.problems == [
        "bundle: holds no manifest (a YAML file with kind: manifest or kind: update_manifest)"
    ]


def test_it_takes_a_lone_manifest(tmp_path: Path) -> None:
    intake, _ = _ingest(tmp_path, MANIFEST)
    assert intake.form == "manifest" and intake.manifest == MANIFEST and intake.problems == []


def test_it_takes_a_manifest_artifact_made_by_mender_artifact(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "manifest.yaml").write_bytes(MANIFEST)
    out = tmp_path / "m.mender"
    subprocess.run(
        [
            MENDER_ARTIFACT,
            "write",
            "module-image",
            "-T",
            "mender-orchestrator-manifest",
            "--software-filesystem",
            "data-partition",
            "-n",
            "sys-v2",
            "-t",
            "system-core",
            "-f",
            str(tmp_path / "manifest.yaml"),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    intake, store = _ingest(tmp_path, out.read_bytes())
    assert intake.form == "manifest-artifact" and intake.problems == []
    assert intake.manifest == MANIFEST and intake.manifest_member == "manifest.yaml"
    assert intake.manifest_artifact is not None and store.has(intake.manifest_artifact.stored.sha256)


def test_it_refuses_an_artifact_that_is_not_a_manifest_artifact(tmp_path: Path) -> None:
    intake, _ = _ingest(tmp_path, _artifact(tmp_path))
    assert intake.problems == [
        "manifest artifact: gateway-v2 is a single-component artifact (payload type 'gateway'), "
        "not a manifest artifact ('mender-orchestrator-manifest'): upload it in a bundle, a .tar or "
        ".tar.gz with a manifest that names it"
    ]


def test_it_says_a_cut_artifact_is_truncated(tmp_path: Path) -> None:
    whole = _artifact(tmp_path)
    content = len(whole.rstrip(b"\0"))  # the rest is the tar's zero padding
    for cut in (content - 10, 1600):
        intake, _ = _ingest(tmp_path, whole[:cut])
        assert len(intake.problems) == 1
        assert intake.problems[0].startswith("manifest artifact: the file is truncated, upload it whole: "), (
            cut
        )


def test_it_requires_signatures_when_keys_are_given_and_records_the_signer(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from updates.engine.artifact import load_private_key

    keys = session_keys(tmp_path_factory)
    signed = _artifact(tmp_path, signing_key=load_private_key(keys.ec_private))
    unsigned = _artifact(tmp_path, name="other")
    data = _tar(
        _member("manifest.yaml", MANIFEST),
        _member("artifacts/gateway-v2.mender", signed),
        _member("u.mender", unsigned),
    )
    intake, _ = _ingest(tmp_path, data, keys=[load_public_key(keys.ec_public)])
    assert intake.problems == ["u.mender: manifest.sig: artifact is not signed but a signature is required"]
    assert intake.artifacts[0].info.signer_fingerprint and intake.artifacts[0].info.signed


def test_it_names_an_upload_that_is_no_bundle_form_by_its_own_name(tmp_path: Path) -> None:
    intake, _ = _ingest(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, name="photo.mender")
    assert intake.form == "unknown" and intake.manifest is None
    assert intake.problems == [
        "photo.mender: not a bundle: neither a tar archive, a gzip file, a .mender artifact nor a YAML "
        "manifest (it starts with the bytes 89 50 4e 47 0d 0a 1a 0a)"
    ]
    assert intake.size == 8 + 256 * 8


def test_a_lone_manifest_keeps_its_own_name(tmp_path: Path) -> None:
    intake, _ = _ingest(tmp_path, MANIFEST, name="site-v2.yaml")
    assert (intake.form, intake.manifest_member, intake.problems) == ("manifest", "site-v2.yaml", [])
    intake, _ = _ingest(tmp_path / "odd", MANIFEST, name="../x.yaml")
    assert intake.manifest_member == "manifest.yaml"
