"""The witness route (上下一体): an upper court's centre keeps the signed audit checkpoints of its lower courts.

A lower centre's database writer can rewrite that centre's chain and even re-sign checkpoints with its key, but
cannot change what the upper centre already holds. The route takes no token: the checkpoint's Ed25519 signature
by the public key pinned for its court (``audit.lower_courts``) is the authentication, so no password is shared
between centres. Checkpoints are appended; one that forks (same seq, another head) or goes backwards (older
than one held) is refused with 409 and kept out, so the upper centre keeps the first story it was told.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints

from command_center.api.registry import Registry, body, json_response
from command_center.api.schemas import Strict
from command_center.keys import SETTINGS, STORE
from core.checkpoint import Checkpoint, signature_valid
from core.errors import CheckpointBackwards, CheckpointFork, Unauthenticated, ValidationFailed

log = logging.getLogger(__name__)

api = Registry()

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class CheckpointIn(Strict):
    """A signed checkpoint (docs/protocols.md, "Audit checkpoints")."""

    v: Literal[1]
    court: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    seq: int = Field(ge=1, le=2**62)
    count: int = Field(ge=1, le=2**62)
    head: Hex64
    at_ms: int = Field(ge=0, le=2**62)
    key: Hex64
    sig: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]


class WitnessOut(BaseModel):
    court: str
    seq: int
    new: bool = Field(description="false when this very checkpoint was held already")


@api.route(
    "POST",
    "/api/audit/witness",
    summary="Keep a lower court's signed audit checkpoint (authenticated by its pinned Ed25519 key)",
    tag="audit",
    access=None,
    body=CheckpointIn,
    response=WitnessOut,
    errors=(Unauthenticated, CheckpointFork, CheckpointBackwards),
)
async def witness_checkpoint(request: web.Request) -> web.StreamResponse:
    sent = body(request, CheckpointIn)
    if sent.count != sent.seq:
        raise ValidationFailed(f"count: {sent.count} entries cannot end at seq {sent.seq} (the chain has no gaps)")
    checkpoint = Checkpoint(sent.court, sent.seq, sent.count, sent.head, sent.at_ms, sent.key, sent.sig, sent.v)
    pinned = request.app[SETTINGS].audit.lower_courts.get(sent.court)
    if pinned is None:
        raise Unauthenticated(f"no key is pinned for court {sent.court} (audit.lower_courts)")
    if sent.key != pinned:
        raise Unauthenticated(f"checkpoint is signed by key {sent.key}, but court {sent.court} is pinned to {pinned}")
    if not signature_valid(checkpoint, pinned):
        raise Unauthenticated(f"the signature does not verify under the key pinned for court {sent.court}")
    try:
        new = await request.app[STORE].witness_checkpoint(checkpoint, received_ms=int(time.time() * 1000))
    except (CheckpointFork, CheckpointBackwards) as exc:  # the lower centre's chain was rewritten: say so here too
        log.warning("audit witness: refused court %s checkpoint %d: %s", sent.court, sent.seq, exc.message)
        raise
    return json_response(WitnessOut(court=sent.court, seq=sent.seq, new=new))
