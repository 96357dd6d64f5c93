"""WebRTC media: WHIP ingest from field units and WHEP viewing, forwarding encoded frames untouched.

``offers`` (pure SDP checks), ``frames`` (pure keyframe detection, per-viewer feeds, PLI pacing),
``telemetry_channel`` (the unit's data channel, answered like the telemetry WebSocket), ``passthrough``
(every aiortc internal, guarded) and ``sessions`` (the hub owning every peer connection).
Talkback and evidence recording arrive later with the media issue.
"""
