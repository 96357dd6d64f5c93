"""Who speaks, read from encoded Opus audio without decoding it: the size of each packet.

Opus sends a few bytes for silence (digital silence, or DTX comfort noise, RFC 6716 §2.1.9; with DTX the
sender may send nothing at all), and tens to hundreds of bytes for a voice. So a packet past
``VOICE_BYTES`` is voice. The indicator is debounced like a browser's: it turns on after ``ON_MS`` of
near-continuous voice and off after ``OFF_MS`` without any, so a breath does not end a turn.

The better signal, when the sender gives it, is the RFC 6464 audio level
(``urn:ietf:params:rtp-hdrext:ssrc-audio-level``, −dBov in each RTP header): aiortc offers that extension in
its answers and parses it, and Chromium sends it when offered; ``media.passthrough.on_audio_level`` reads it
off each packet. A source that never sent a level is judged by its packet sizes.

Pure: ``SpeakingProtocol`` takes "voice or not" and times and answers changes; the driver
(``media.rooms``) feeds it and ticks it with the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

VOICE_BYTES = 20  # an Opus packet this large or larger carries sound (silence: 1–8 bytes at any bitrate)
VOICE_LEVEL = 50  # RFC 6464 level (0 loudest … 127 silent, in −dBov) at or under which a packet is voice
ON_MS = 200.0  # voice this long starts a turn
OFF_MS = 800.0  # silence this long ends it
GAP_MS = 120.0  # a gap between voice packets longer than this restarts the ON_MS count


@dataclass(frozen=True, slots=True)
class Turn:
    """A speaking turn that ended: when it started and how long it lasted (ms of the driver's clock)."""

    started_ms: float
    duration_ms: float


def voice_by_size(size: int) -> bool:
    return size >= VOICE_BYTES


def voice_by_level(level: int) -> bool:
    return level <= VOICE_LEVEL


class SpeakingProtocol:
    """One participant's speaking state, debounced. ``packet`` and ``tick`` return the new state when it
    changes (True: began speaking, False: stopped), else None; ``ended`` is the last turn that finished."""

    def __init__(self) -> None:
        self.speaking = False
        self._voice_since: float | None = None  # start of the current run of voice packets
        self._last_voice: float | None = None
        self._turn_started = 0.0
        self.ended: Turn | None = None

    def packet(self, voice: bool, now_ms: float) -> bool | None:
        if not voice:
            return self.tick(now_ms)
        if self._last_voice is None or now_ms - self._last_voice > GAP_MS:
            self._voice_since = now_ms
        self._last_voice = now_ms
        if not self.speaking and self._voice_since is not None and now_ms - self._voice_since >= ON_MS:
            self.speaking = True
            self._turn_started = self._voice_since
            return True
        return None

    def tick(self, now_ms: float) -> bool | None:
        """Time passes (a silent packet, or the driver's timer: with DTX nothing may arrive at all)."""
        if self.speaking and self._last_voice is not None and now_ms - self._last_voice >= OFF_MS:
            self.speaking = False
            self.ended = Turn(self._turn_started, self._last_voice - self._turn_started)
            self._voice_since = None
            return False
        return None

    def stop(self, now_ms: float) -> bool | None:
        """The source ended or was muted: a turn under way ends now."""
        if not self.speaking:
            self._voice_since = self._last_voice = None
            return None
        self.speaking = False
        end = self._last_voice if self._last_voice is not None else now_ms
        self.ended = Turn(self._turn_started, end - self._turn_started)
        self._voice_since = self._last_voice = None
        return False
