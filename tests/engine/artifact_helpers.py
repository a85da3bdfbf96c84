"""Shared helpers for the artifact tests: keys, mender-artifact runs, and tar surgery."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from updates.engine.artifact import ArtifactInfo, write_artifact

MENDER_ARTIFACT = "/usr/bin/mender-artifact"
HELLO = b"hello world\n"


@dataclass(frozen=True)
class Keys:
    rsa_private: Path
    rsa_public: Path
    ec_private: Path
    ec_public: Path
    other_rsa_public: Path
    p384_private: Path
    p384_public: Path
    rsa_pkcs1_public: Path


def _private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#1 / SEC1: the only private formats mender-artifact 3.9 accepts.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def make_keys(directory: Path) -> Keys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    files = {
        "rsa_private": _private_pem(rsa_key),
        "rsa_public": _public_pem(rsa_key),
        "ec_private": _private_pem(ec_key),
        "ec_public": _public_pem(ec_key),
        "other_rsa_public": _public_pem(other),
        "p384_private": _private_pem(p384),
        "p384_public": _public_pem(p384),
        "rsa_pkcs1_public": rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
    }
    for name, pem in files.items():
        (directory / f"{name}.pem").write_bytes(pem)
    return Keys(**{name: directory / f"{name}.pem" for name in files})


_KEYS: list[Keys] = []


def session_keys(factory: pytest.TempPathFactory) -> Keys:
    """Generate the test keys once per (xdist worker) process; RSA-3072 generation is slow."""
    if not _KEYS:
        _KEYS.append(make_keys(factory.mktemp("keys")))
    return _KEYS[0]


def mender_artifact(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MENDER_ARTIFACT, *map(str, args)], capture_output=True, text=True, timeout=60)


def hello_module(directory: Path, name: str = "app.mender", **options: object) -> tuple[Path, ArtifactInfo]:
    """The docs/protocol.md §8.2 minimal module-image, written by our writer."""
    payload = directory / "hello.txt"
    payload.write_bytes(HELLO)
    path = directory / name
    settings: dict[str, object] = {
        "kind": "module-image",
        "name": "app-1.0",
        "device_types": ["qemux86-64"],
        "files": [payload],
        "payload_type": "single-file",
    }
    settings.update(options)
    return path, write_artifact(path, **settings)  # type: ignore[arg-type]


# -- tar surgery ------------------------------------------------------------------------------


@dataclass
class Member:
    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    mode: int = 0o644


def untar(data: bytes) -> list[Member]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return [_member(tar, info) for info in tar.getmembers()]


def _member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> Member:
    handle = tar.extractfile(info) if info.isreg() else None
    return Member(info.name, handle.read() if handle else b"", info.type, info.linkname, info.mode)


def tar_bytes(members: list[Member], compression: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type, info.linkname, info.mode = member.type, member.linkname, member.mode
            info.size = len(member.data) if member.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(member.data) if info.size else None)
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0) if compression == ".gz" else raw


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def set_manifest_line(manifest: bytes, name: str, digest: str) -> bytes:
    """Set (or add) the manifest line for `name`, keeping the canonical form."""
    pattern = re.compile(rb"^[0-9a-f]{64}  " + re.escape(name.encode()) + rb"\n", re.M)
    line = f"{digest}  {name}\n".encode()
    return pattern.sub(line, manifest) if pattern.search(manifest) else line + manifest


@dataclass
class Surgeon:
    """Edit an artifact member by member, optionally keeping the manifest consistent."""

    members: list[Member] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Surgeon:
        return cls.load_bytes(path.read_bytes())

    @classmethod
    def load_bytes(cls, data: bytes) -> Surgeon:
        return cls(untar(data))

    def get(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def replace(self, name: str, data: bytes, *, fix_manifest: bool = True) -> Surgeon:
        self.get(name).data = data
        if fix_manifest:
            self.fix(name, data)
        return self

    def fix(self, manifest_name: str, data: bytes) -> None:
        manifest = self.get("manifest")
        manifest.data = set_manifest_line(manifest.data, manifest_name, sha(data))

    def header(self) -> list[Member]:
        return untar(self.get("header.tar.gz").data)

    def set_header(self, members: list[Member], *, fix_manifest: bool = True) -> Surgeon:
        return self.replace("header.tar.gz", tar_bytes(members, ".gz"), fix_manifest=fix_manifest)

    def edit_header(self, name: str, data: bytes) -> Surgeon:
        members = self.header()
        next(m for m in members if m.name == name).data = data
        return self.set_header(members)

    def set_data(self, members: list[Member]) -> Surgeon:
        self.get("data/0000.tar.gz").data = tar_bytes(members, ".gz")
        return self

    def save(self, path: Path) -> Path:
        path.write_bytes(tar_bytes(self.members))
        return path


def member_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """Outer member name -> (offset of its tar header, offset of its data)."""
    with tarfile.open(path) as tar:
        return {info.name: (info.offset, info.offset_data) for info in tar.getmembers()}
