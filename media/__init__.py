"""WebRTC media: WHIP ingest, WHEP viewing, talkback and evidence recording.

Not built yet: arrives with the media issue.
"""
