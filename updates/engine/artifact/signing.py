"""Manifest signatures: RSA PKCS#1 v1.5 / ECDSA P-256, both over SHA-256 of the raw manifest bytes."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .errors import SignatureError

PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

SIG_MEMBER = "manifest.sig"
_EC_RAW_LEN = 64
_EC_DER_LENS = range(70, 73)


def _check_curve(key: PublicKey | PrivateKey, path: Path) -> None:
    # mender-artifact and the client only speak P-256; a P-384 key would sign artifacts nobody accepts.
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and not isinstance(
        key.curve, ec.SECP256R1
    ):
        raise SignatureError(f"unsupported EC curve {key.curve.name} (only P-256)", str(path))


def _read_pem(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read key: {exc.strerror}", str(path))


def load_public_key(path: Path) -> PublicKey:
    try:
        key = serialization.load_pem_public_key(_read_pem(path))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"not a PEM SubjectPublicKeyInfo key: {exc}", str(path))
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise SignatureError(f"unsupported key type {type(key).__name__}", str(path))
    _check_curve(key, path)
    return key


def load_private_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read_pem(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"not an unencrypted PEM private key: {exc}", str(path))
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SignatureError(f"unsupported key type {type(key).__name__}", str(path))
    _check_curve(key, path)
    return key


def key_fingerprint(key: PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def sign_manifest(key: PrivateKey, manifest: bytes) -> bytes:
    """Return the base64 text of `manifest.sig` (ECDSA as raw r||s, like mender-artifact)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return base64.b64encode(key.sign(manifest, padding.PKCS1v15(), hashes.SHA256()))
    if not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError(f"unsupported EC curve {key.curve.name} (only P-256)", SIG_MEMBER)
    r, s = utils.decode_dss_signature(key.sign(manifest, ec.ECDSA(hashes.SHA256())))
    return base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def decode_signature(text: bytes) -> bytes:
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("signature is not valid base64", SIG_MEMBER)


def _ec_der(sig: bytes) -> bytes | None:
    if len(sig) == _EC_RAW_LEN:
        return utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    return sig if len(sig) in _EC_DER_LENS else None


def _verifies(key: PublicKey, sig: bytes, manifest: bytes) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, manifest, padding.PKCS1v15(), hashes.SHA256())
            return True
        der = _ec_der(sig)
        if der is None or not isinstance(key.curve, ec.SECP256R1):
            return False
        key.verify(der, manifest, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_manifest(sig_text: bytes, manifest: bytes, keys: Sequence[PublicKey]) -> PublicKey:
    """Return the first key that verifies the raw manifest bytes; SignatureError when none does."""
    sig = decode_signature(sig_text)
    for key in keys:
        if _verifies(key, sig, manifest):
            return key
    reason = f"signature ({len(sig)} bytes) does not verify with any of {len(keys)} key(s)"
    raise SignatureError(reason, SIG_MEMBER)
