"""The audit log's hash chain: each entry's hash covers its content and the hash before it.

``hash = sha256(prev_hash + canonical JSON of the entry)``; the first entry's ``prev_hash`` is 64 zeros.
Changing, removing or reordering any entry breaks every hash after it, so ``verify`` finds the first
entry that was tampered with. Canonical JSON: keys sorted, no spaces, UTF-8 (not ASCII-escaped).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64


def canonical_json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def chain_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(entry)).hexdigest()
