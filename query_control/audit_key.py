"""The centre's audit signing key: an Ed25519 private key in the data dir, readable by the server's user only.

Created on first use as ``<data_dir>/audit/signing-key.pem`` (PKCS#8 PEM, mode 0600, its directory 0700).
It is written to a temporary file and linked into place, so two processes starting together end up with
the same key (the second one's link fails and it reads the first one's). The private key is never logged
or printed; its public key (hex) is what a witness pins (``python -m command_center audit key``). Every
process of a centre must see the same file (a shared data volume), since any of them may become the signer.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_pem_private_key

KEY_DIR = "audit"
KEY_FILE = "signing-key.pem"


def key_path(data_dir: Path) -> Path:
    return data_dir / KEY_DIR / KEY_FILE


def load_key(data_dir: Path) -> Ed25519PrivateKey | None:
    """The existing key, or None when there is none yet."""
    path = key_path(data_dir)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    key = load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 key")
    return key


def load_or_create_key(data_dir: Path) -> Ed25519PrivateKey:
    existing = load_key(data_dir)
    if existing is not None:
        return existing
    folder = data_dir / KEY_DIR
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)  # mkdir's mode is reduced by the umask; an existing folder may be wider
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    temporary = folder / f".{KEY_FILE}.{secrets.token_hex(8)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        with contextlib.suppress(FileExistsError):  # another process created it meanwhile: theirs is the key
            os.link(temporary, key_path(data_dir))
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    loaded = load_key(data_dir)
    assert loaded is not None
    return loaded
