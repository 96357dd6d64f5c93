"""Telemetry over a unit's WebRTC data channel: the same answers as the telemetry WebSocket.

A unit streaming media opens a reliable, ordered data channel labelled ``telemetry`` in its WHIP offer
and sends the WebSocket's messages on it; each is answered by ``field_units.messages.answer``, the
WebSocket's own handler, so validation, dedupe, limits and replies cannot drift apart.
"""

from __future__ import annotations

from field_units.messages import MAX_BATCH, MAX_MESSAGE, Answer, Ingest, answer, error

LABEL = "telemetry"

__all__ = ["LABEL", "MAX_BATCH", "MAX_MESSAGE", "Answer", "Ingest", "answer", "error"]
