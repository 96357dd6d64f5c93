"""The media of consultation rooms (执行会商): a selective forwarding unit (SFU) inside this process, built on
the unit media hub (``media.sessions.MediaHub``) rather than beside it.

Each present member publishes once (audio, and video if they have a camera); the hub holds that source as
if it were a unit's, keyed ``room:<room_id>:<user_id>`` (``participant_key``) and owned by the person (caps
count it, revocation ends it). Every other member views it with one receive-only peer connection per
participant, exactly as a unit is viewed over WHEP: the encoded frames go untouched to each viewer's bounded
feed (``media.passthrough``); nothing is mixed, decoded or transcoded. The room's unit is viewed on its own
WHEP route.

What the room adds to the hub:

* mute: the host's mute silences the participant's audio at the source (``Publisher.silenced``): no viewer
  and no recording receives it, at once; unmute restores it;
* who speaks: each forwarded audio packet feeds a ``media.speaking.SpeakingProtocol`` (RFC 6464 level when
  the sender sends it, else the Opus packet size); each turn that ends is audited once (``room.speaking``);
* live state: on each change (publishing, mute, presence, speaking, recording on or off) the members' media
  state and whether the room is recorded are published on the bus topic ``room:<room_id>``, which screens
  subscribe to (``command_center.screens``);
* recording: while the host records the room, each participant's source is recorded as its own series of
  Matroska segments, hashed into the audit chain like a unit's (``recording verify`` checks them).

One task (``run``) ticks the speaking detectors (with DTX a silent sender sends nothing), notices sources
that ended (connection lost, replaced, revoked), publishes the rooms whose state changed, coalesced, and
forgets a room once its last source here has ended (unless it is recorded), so rooms do not pile up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from consultations.models import Room
from core.ids import UnitId, UserId
from event_bus.port import EventBus
from media import passthrough
from media.peers import AnySession, Publisher, WebRtcLink
from media.sessions import Answered, MediaHub, SessionId, Viewer
from media.speaking import SpeakingProtocol, voice_by_level, voice_by_size
from persistence.models import Unit, UnitKind

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1  # how often speaking detectors are ticked and changed rooms published
MAX_PENDING_TURNS = 1_000  # speaking turns waiting to be audited; past this the oldest is dropped (logged)
SPEAKING_ACTION = "room.speaking"


def participant_key(room_id: str, user_id: UserId) -> UnitId:
    """The hub's key for a room participant's source: a colon is never in a unit id (``api.schemas.Identifier``),
    so no unit can take a participant's place."""
    return UnitId(f"room:{room_id}:{user_id}")


def room_topic(room_id: str) -> str:
    return f"room:{room_id}"


class Members(Protocol):
    """What the room media reads of the store: the members and their names."""

    async def room_members(self, room_id: str) -> list[Any]: ...

    async def get_user(self, user_id: UserId) -> Any: ...


class Auditor(Protocol):
    async def record(
        self, action: str, actor_id: UserId | None, *, reason: str = "", details: dict[str, Any] | None = None
    ) -> object: ...


@dataclass(eq=False)
class _Participant:
    user_id: UserId
    key: UnitId
    speaking: SpeakingProtocol = field(default_factory=SpeakingProtocol)
    levels: bool = False  # the source sends RFC 6464 levels: sizes are not used then
    muted: bool = False
    latest: Publisher | None = None  # the newest source (it may wait to take over from the previous one)


@dataclass(eq=False)
class _RoomState:
    room: Room
    participants: dict[UserId, _Participant] = field(default_factory=dict)
    recording: bool = False
    last_sent: Any = None  # the media state last published (only changes are published)
    opening: int = 0  # publishes being answered (the room is not idle meanwhile)


class RoomMedia:
    """The SFU of every consultation room on this process (module docstring)."""

    def __init__(
        self,
        hub: MediaHub,
        bus: EventBus,
        store: Members,
        audit: Auditor,
        *,
        clock_ms: Callable[[], float] = lambda: time.monotonic() * 1000,
    ) -> None:
        self._hub = hub
        self._bus = bus
        self._store = store
        self._audit = audit
        self._clock_ms = clock_ms
        self._rooms: dict[str, _RoomState] = {}
        self._dirty: set[str] = set()
        self._turns: list[tuple[Room, UserId, float, float]] = []  # (room, user, started, duration ms)

    # Sources and views ----------------------------------------------------------------------------

    async def publish(self, room: Room, viewer: Viewer, name: str, offer_sdp: str, *, muted: bool) -> Answered:
        """Answer a present member's offer: their source in the room (a second one replaces the first)."""
        state = self._state(room)
        participant = state.participants.get(viewer.user_id)
        if participant is None:
            participant = state.participants[viewer.user_id] = _Participant(
                viewer.user_id, participant_key(room.id, viewer.user_id)
            )
        participant.muted = muted
        unit = Unit(participant.key, name, UnitKind.HANDHELD, room.court_id, None, datetime.now(UTC))
        state.opening += 1
        try:
            answered = await self._hub.publish(unit, offer_sdp, owner=viewer, participant=True)
        finally:
            state.opening -= 1
        source = self._hub.find(answered.id)
        if isinstance(source, Publisher):
            self._wire(room.id, participant, source)
            if state.recording and self._hub.publisher(participant.key) is source:
                self._hub.start_recording(participant.key, reason=f"room {room.id} is recorded")
        self.changed(room.id)
        return answered

    async def view(self, room: Room, viewer: Viewer, user_id: UserId, offer_sdp: str) -> Answered:
        """Answer a present member's receive-only offer for one participant's source (404 if none)."""
        return await self._hub.view(viewer, participant_key(room.id, user_id), offer_sdp)

    def owned_session(self, room_id: str, session_id: SessionId, user_id: UserId) -> AnySession | None:
        """The caller's own source or view in this room, or None (the route answers 404 either way)."""
        session = self._hub.find(session_id)
        if session is None or session.owner is None or session.owner.user_id != user_id:
            return None
        return session if session.unit_id.startswith(f"room:{room_id}:") else None

    async def end_session(self, room_id: str, session: AnySession) -> None:
        await self._hub.end_where(lambda s: s is session, "ended by the participant")
        self.changed(room_id)

    async def end_member(self, room_id: str, user_id: UserId, reason: str) -> int:
        """End a member's source and views in the room (they left, were removed, the room closed)."""
        prefix, key = f"room:{room_id}:", participant_key(room_id, user_id)
        ended = await self._hub.end_where(
            lambda s: s.unit_id == key or (s.owner is not None and s.owner.user_id == user_id
                                            and s.unit_id.startswith(prefix)), reason,
        )  # fmt: skip
        self.changed(room_id)
        return ended

    async def end_room(self, room_id: str, reason: str) -> int:
        prefix = f"room:{room_id}:"
        ended = await self._hub.end_where(lambda s: s.unit_id.startswith(prefix), reason)
        self._rooms.pop(room_id, None)
        self.changed(room_id)
        return ended

    # Mute and recording ---------------------------------------------------------------------------

    def mute(self, room: Room, user_id: UserId, *, muted: bool) -> None:
        """Stop (or restore) forwarding and recording the participant's audio, now."""
        participant = self._state(room).participants.get(user_id)
        if participant is not None:
            participant.muted = muted
            for source in self._sources(participant):
                if muted:
                    source.silenced.add("audio")
                else:
                    source.silenced.discard("audio")
            if muted:
                self._speaking_stopped(room.id, participant)
        self.changed(room.id)

    def recording(self, room_id: str) -> bool:
        state = self._rooms.get(room_id)
        return state is not None and state.recording

    async def record(self, room: Room, on: bool) -> list[str]:
        """Start or stop recording every participant's source; returns the participants' keys recorded."""
        state = self._state(room)
        state.recording = on
        self.changed(room.id)  # every member's page shows 录制中 (or no longer) from the room's event
        keys = [p.key for p in state.participants.values() if self._hub.publisher(p.key) is not None]
        for key in keys:
            if on:
                self._hub.start_recording(key, reason=f"room {room.id} is recorded")
            else:
                await self._hub.stop_recording(key)
        return [str(key) for key in keys]

    async def audit_recording(self, room: Room, by: UserId, on: bool, keys: list[str]) -> None:
        await self._audit.record("room.recording", by, reason=room.title,
                                 details={"room_id": room.id, "court_id": room.court_id, "on": on,
                                          "streams": keys})  # fmt: skip

    # Live state -----------------------------------------------------------------------------------

    def media_state(self, room_id: str, user_id: UserId) -> dict[str, Any]:
        """``{publishing: [kinds], speaking}`` of one member, as screens and ``GET /api/rooms/{id}`` show it."""
        state = self._rooms.get(room_id)
        participant = None if state is None else state.participants.get(user_id)
        if participant is None:
            return {"publishing": [], "speaking": False}
        source = self._hub.publisher(participant.key)
        kinds = [] if source is None else sorted(source.media)
        return {"publishing": kinds, "speaking": participant.speaking.speaking and source is not None}

    async def members_view(self, room_id: str) -> list[dict[str, Any]]:
        """Each member: ``{user_id, name, present, muted, publishing, speaking}``."""
        members = await self._store.room_members(room_id)
        view = []
        for member in members:
            user = await self._store.get_user(member.user_id)
            view.append({"user_id": member.user_id, "name": user.display_name, "present": member.present,
                         "muted": member.muted} | self.media_state(room_id, member.user_id))  # fmt: skip
        return view

    def changed(self, room_id: str) -> None:
        """Something of the room changed: its members' state is published on the next tick."""
        self._dirty.add(room_id)

    async def run(self) -> None:
        """Tick speaking detectors, notice ended sources, audit ended turns, publish changed rooms."""
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except Exception:
                log.exception("rooms media: tick failed; next time")

    async def tick(self) -> None:
        now = self._clock_ms()
        for room_id, state in list(self._rooms.items()):
            for participant in state.participants.values():
                if participant.speaking.tick(now) is not None:
                    self._turn_ended(state.room, participant)
                    self._dirty.add(room_id)
                if self._hub.publisher(participant.key) is None and participant.speaking.speaking:
                    self._speaking_stopped(room_id, participant)
            snapshot = {p.user_id: self.media_state(room_id, p.user_id) for p in state.participants.values()}
            if snapshot != state.last_sent:
                state.last_sent = snapshot
                self._dirty.add(room_id)
        dirty, self._dirty = self._dirty, set()
        for room_id in dirty:
            await self._bus.publish(room_topic(room_id), {"room_id": room_id, "recording": self.recording(room_id),
                                                          "members": await self.members_view(room_id)})  # fmt: skip
        for room_id, state in list(self._rooms.items()):
            if self._idle(state) and room_id not in self._dirty:
                del self._rooms[room_id]  # its last session ended (its final state is published): forget it
        while self._turns:  # each turn leaves the queue once audited (the audit log away: kept for next time)
            pending = self._turns[0]
            room, user_id, _started, duration = pending
            await self._audit.record(SPEAKING_ACTION, user_id, reason=room.title,
                                     details={"room_id": room.id, "court_id": room.court_id, "user_id": user_id,
                                              "duration_ms": round(duration)})  # fmt: skip
            if self._turns and self._turns[0] is pending:
                self._turns.pop(0)

    # Internals ------------------------------------------------------------------------------------

    def _state(self, room: Room) -> _RoomState:
        state = self._rooms.get(room.id)
        if state is None:
            state = self._rooms[room.id] = _RoomState(room)
        return state

    def held(self) -> frozenset[str]:
        """The rooms whose state this process holds: those with a source here, being published or recorded."""
        return frozenset(self._rooms)

    def _idle(self, state: _RoomState) -> bool:
        """No source of the room left here (nor being answered) and not recorded: nothing to keep. A recorded
        room keeps its state so a member who publishes again is recorded (``end_room`` or stopping frees it)."""
        if state.opening or state.recording:
            return False
        for participant in state.participants.values():
            if self._hub.publisher(participant.key) is not None:
                return False
            if participant.latest is not None and self._hub.find(participant.latest.id) is not None:
                return False
        return True

    def _sources(self, participant: _Participant) -> list[Publisher]:
        """The participant's current source and a newer one waiting to take over, if any."""
        sources: list[Publisher] = []
        for source in (self._hub.publisher(participant.key), participant.latest):
            if source is not None and source not in sources:
                sources.append(source)
        return sources

    def _wire(self, room_id: str, participant: _Participant, source: Publisher) -> None:
        """The new source: muted as the member is, and its audio feeding the speaking detector."""
        participant.latest = source
        if participant.muted:
            source.silenced.add("audio")

        def heard(kind: str, data: bytes, _now: float) -> None:
            if kind == "audio" and not participant.levels:
                self._heard(room_id, participant, voice_by_size(len(data)))

        def level(value: int) -> None:
            if "audio" in source.silenced:
                return
            participant.levels = True
            self._heard(room_id, participant, voice_by_level(value))

        source.listener = heard
        if isinstance(source.link, WebRtcLink) and (receiver := source.link.receivers.get("audio")) is not None:
            passthrough.on_audio_level(receiver, level)

    def _heard(self, room_id: str, participant: _Participant, voice: bool) -> None:
        change = participant.speaking.packet(voice, self._clock_ms())
        if change is not None:
            if change is False:
                state = self._rooms.get(room_id)
                if state is not None:
                    self._turn_ended(state.room, participant)
            self._dirty.add(room_id)

    def _speaking_stopped(self, room_id: str, participant: _Participant) -> None:
        if participant.speaking.stop(self._clock_ms()) is False:
            state = self._rooms.get(room_id)
            if state is not None:
                self._turn_ended(state.room, participant)
            self._dirty.add(room_id)

    def _turn_ended(self, room: Room, participant: _Participant) -> None:
        turn = participant.speaking.ended
        if turn is None:
            return
        participant.speaking.ended = None
        if len(self._turns) >= MAX_PENDING_TURNS:
            log.warning("rooms media: speaking turns pile up unaudited; the oldest is dropped")
            self._turns.pop(0)
        self._turns.append((room, participant.user_id, turn.started_ms, turn.duration_ms))
