"""The appliance's Ed25519 signing key: made on first use, kept private in the data store."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from updates.engine.fsutil import private_dir_mode, private_file_mode

KEY_NAME = "journal-signing-key.pem"


def key_path() -> Path:
    return Path(settings.DATASTORE_DIR) / "audit" / KEY_NAME


@functools.cache
def _load_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def signing_key() -> Ed25519PrivateKey:
    """The appliance's Ed25519 key (0600 in the data store, 0640 in a shared one), created on first use.

    Created beside its final name and hard-linked into place: two processes creating it at once
    both end up with the one that won, never with a half-written file.
    """
    path = key_path()
    if not path.exists():
        _key_create(path)
    return _load_key(path)


def _key_create(path: Path) -> None:
    path.parent.mkdir(mode=private_dir_mode(path.parent.parent), parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    # 0640 in the shared data store of a production install: the web server (the service user)
    # signs journal anchors with the key the root worker may have created (fsutil.group_shared).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, private_file_mode(path.parent))
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won the race: use its key
    finally:
        tmp.unlink()


# ----- retention --------------------------------------------------------------------------------
