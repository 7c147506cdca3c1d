"""Signing evidence packs: Ed25519 keys (read, generated, their public PEM) and the check of a
pack's signature over the exact bytes of its ``manifest.json``. ``cryptography`` is imported
where a key is used, so reading or writing an unsigned pack does not need it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detection.errors import (
    InputFormatError,
    InputNotFoundError,
    InputReadError,
    OutputExistsError,
)
from tiles.files import atomic_path

#: The signature of ``manifest.json`` in a pack (base64), and the signer's public key (PEM).
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "signing_key.pub"


def _unreadable(exc: OSError) -> type[InputNotFoundError] | type[InputReadError]:
    """The error of a key file that cannot be read: not found, or another I/O error."""
    return InputNotFoundError if isinstance(exc, FileNotFoundError) else InputReadError


def load_private_key(path: Path) -> Any:
    """An Ed25519 private key from a PEM (PKCS 8) file, as ``openssl genpkey -algorithm ed25519``
    or ``minewatch alerts keygen`` write it. A passphrase is read from the environment variable
    ``MINEWATCH_SIGNING_PASSPHRASE``.

    Raises:
        InputNotFoundError: the file is missing.
        InputReadError: the file cannot be read.
        InputFormatError: the file is not PEM, is encrypted without the passphrase, or is not
            Ed25519.
    """
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _unreadable(exc)(
            f"signing key {str(path)!r}: {exc.strerror or exc}; expected an Ed25519 private "
            "key (PEM); create one with `minewatch alerts keygen KEY`"
        ) from exc
    secret = os.environ.get("MINEWATCH_SIGNING_PASSPHRASE")
    try:
        key = serialization.load_pem_private_key(data, password=secret.encode() if secret else None)
    except (ValueError, TypeError) as exc:
        raise InputFormatError(
            f"signing key {str(path)!r}: not a readable PEM private key ({exc}); expected an "
            "Ed25519 key, e.g. from `openssl genpkey -algorithm ed25519 -out key.pem` (a "
            "passphrase goes in MINEWATCH_SIGNING_PASSPHRASE)"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InputFormatError(
            f"signing key {str(path)!r} is a {type(key).__name__}; expected an Ed25519 key "
            "(`openssl genpkey -algorithm ed25519 -out key.pem`)"
        )
    return key


def load_public_key(path: Path) -> Any:
    """An Ed25519 public key from a PEM file (``openssl pkey -in key.pem -pubout``).

    Raises:
        InputNotFoundError: the file is missing.
        InputReadError: the file cannot be read.
        InputFormatError: the file is not a PEM public key, or not Ed25519.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _unreadable(exc)(
            f"public key {str(path)!r}: {exc.strerror or exc}; expected the signer's Ed25519 "
            "public key (PEM), e.g. the KEY.pub `minewatch alerts keygen KEY` wrote"
        ) from exc
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise InputFormatError(
            f"public key {str(path)!r}: not a PEM public key ({exc}); expected the Ed25519 "
            "public key of the signer (`openssl pkey -in key.pem -pubout -out key.pub`)"
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InputFormatError(
            f"public key {str(path)!r} is a {type(key).__name__}; "
            "expected Ed25519"
        )
    return key


def public_pem(key: Any) -> bytes:
    """The PEM (SubjectPublicKeyInfo) of a public key."""
    from cryptography.hazmat.primitives import serialization

    data: bytes = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def write_keypair(path: Path, *, overwrite: bool = False) -> Path:
    """Generate an Ed25519 key: ``path`` (private, PEM PKCS 8, mode 0600) and ``path.pub``.

    Returns:
        The public key's path.

    Raises:
        OutputExistsError: a file exists and ``overwrite`` is False.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = path.with_name(path.name + ".pub")
    for target in (path, pub):
        if target.exists() and not overwrite:
            raise OutputExistsError(f"{target} exists; pass --overwrite to replace it")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with atomic_path(path) as tmp:
        tmp.touch(mode=0o600)
        tmp.chmod(0o600)
        tmp.write_bytes(private)
    with atomic_path(pub) as tmp:
        tmp.write_bytes(public_pem(key.public_key()))
    return pub


def _check_signature(
    files: Mapping[str, bytes | None], body: bytes, public_key: Path | None, path: Path
) -> tuple[str, str | None]:
    """``valid``, ``invalid`` (bytes or signature altered) or ``wrong_key`` (signed, but not by
    the key the verifier gave), with the sha256 of the public key's PEM."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    try:
        signature = base64.b64decode((files.get(SIGNATURE) or b"").strip(), validate=True)
    except ValueError:
        return "invalid", None
    embedded = files.get(PUBLIC_KEY)
    if public_key is not None:
        key = load_public_key(public_key)
    elif embedded:
        try:
            key = serialization.load_pem_public_key(embedded)
        except ValueError:
            return "invalid", None
    else:
        return "invalid", None
    fingerprint = hashlib.sha256(public_pem(key)).hexdigest()
    try:
        key.verify(signature, body)
    except InvalidSignature:
        if public_key is not None and embedded and embedded != public_pem(key):
            return "wrong_key", fingerprint
        return "invalid", fingerprint
    return "valid", fingerprint
