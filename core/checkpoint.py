"""Signed checkpoints of the audit chain: a centre's word, under its Ed25519 key, that entry ``seq`` had ``head``.

The hash chain alone cannot tell a chain that was cut short, or edited and re-hashed from the edit on, from an
honest one. A checkpoint held somewhere the database's writer does not control (an append-only file on another
volume, the upper court's centre) can: the chain must still reach the checkpoint's ``seq`` and have the same
hash there. Ed25519 (RFC 8032) signs the canonical JSON (``core.hashchain.canonical_json``) of every field but
``sig``; keys and signatures travel as lowercase hex. One line of JSON per checkpoint::

    {"v": 1, "court": "HLJ01", "seq": 120, "count": 120, "head": "<64 hex>", "at_ms": 1764…, "key": "<64 hex>",
     "sig": "<128 hex>"}

Pure: values in, values out; reading and writing files and keys is elsewhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.hashchain import canonical_json

VERSION = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX128 = re.compile(r"^[0-9a-f]{128}$")
_FIELDS = ("v", "court", "seq", "count", "head", "at_ms", "key", "sig")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    court: str  # the court whose centre keeps this chain (the signer, as the upper centre pins it)
    seq: int  # the last entry covered
    count: int  # entries covered: seq, since the chain is numbered 1, 2, … without gaps
    head: str  # hash of entry ``seq``
    at_ms: int
    key: str  # the signer's public key, hex
    sig: str  # Ed25519 signature of ``signed_bytes()``, hex
    v: int = VERSION

    def signed_bytes(self) -> bytes:
        body = asdict(self)
        del body["sig"]
        return canonical_json(body)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_line(self) -> str:
        """One JSON line (the witness file format), newline included."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def sign(key: Ed25519PrivateKey, *, court: str, seq: int, head: str, at_ms: int) -> Checkpoint:
    unsigned = Checkpoint(court, seq, seq, head, at_ms, public_key_hex(key), "")
    return Checkpoint(court, seq, seq, head, at_ms, unsigned.key, key.sign(unsigned.signed_bytes()).hex())


def signature_valid(checkpoint: Checkpoint, public_key: str) -> bool:
    """Whether ``checkpoint`` was signed by the key ``public_key`` (hex); False for a malformed key too."""
    if not isinstance(checkpoint.sig, str) or not _HEX64.match(public_key) or not _HEX128.match(checkpoint.sig):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
            bytes.fromhex(checkpoint.sig), checkpoint.signed_bytes()
        )
    except (InvalidSignature, ValueError, TypeError):  # TypeError: a stored field of another type (SQLite)
        return False
    return True


def parse(value: object) -> Checkpoint:
    """A checkpoint from decoded JSON; ValueError naming the first bad field (input is untrusted)."""
    if not isinstance(value, dict):
        raise ValueError("a checkpoint is a JSON object")
    missing = [f for f in _FIELDS if f not in value]
    if missing:
        raise ValueError(f"missing field {missing[0]!r}")
    extra = sorted(set(value) - set(_FIELDS))
    if extra:
        raise ValueError(f"unknown field {extra[0]!r}")
    if value["v"] != VERSION or isinstance(value["v"], bool):
        raise ValueError(f"v: unsupported version {value['v']!r} (expected {VERSION})")
    for name in ("seq", "count", "at_ms"):
        number = value[name]
        if not isinstance(number, int) or isinstance(number, bool) or number < (1 if name != "at_ms" else 0):
            raise ValueError(f"{name}: expected a positive integer, got {number!r}")
    if value["count"] != value["seq"]:
        raise ValueError(f"count: {value['count']} entries cannot end at seq {value['seq']}")
    if not isinstance(value["court"], str) or not 0 < len(value["court"]) <= 64:
        raise ValueError("court: expected a court id of 1 to 64 characters")
    for name, pattern, size in (("head", _HEX64, 64), ("key", _HEX64, 64), ("sig", _HEX128, 128)):
        if not isinstance(value[name], str) or not pattern.match(value[name]):
            raise ValueError(f"{name}: expected {size} lowercase hex digits")
    return Checkpoint(value["court"], value["seq"], value["count"], value["head"], value["at_ms"], value["key"],
                      value["sig"], value["v"])  # fmt: skip


def parse_line(line: str) -> Checkpoint:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    return parse(value)
