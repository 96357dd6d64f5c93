"""MPEG-2 program stream (ISO/IEC 13818-1 §2.5) as GB/T 28181 devices send it, cut into encoded frames. Pure.

A device sends one PS pack per picture: pack header, on keyframes a system header and a program stream
map (PSM, which names each stream's codec: 0x1B H.264, 0x24 H.265, 0x90 G.711A, 0x91 G.711μ per GB/T 28181
Annex C), then PES packets. A picture larger than a PES packet (64 KiB) spans several PES packets, only the
first carrying a PTS. ``PsDemuxer.feed`` takes the PS bytes in the order they arrived and returns each frame
whose end is known: the next PES of its stream with a PTS begins a new frame, and ``flush`` (called on the
RTP marker bit, which marks a frame's last packet) ends the frame being gathered.

Untrusted input: garbage between packets is skipped to the next start code, a PES whose header lies is
dropped with its partial frame, and nothing is buffered past ``max_buffer`` bytes. MPEG-1 system streams
(what FFmpeg's ``mpeg`` muxer writes, with no PSM) are read too; a stream without a PSM entry is taken by
its id: 0xE0–0xEF as H.264, 0xC0–0xDF as G.711A. A stream the PSM gives a type not taken here (G.722.1,
G.729, SVAC audio…) or of the other kind (an audio id with a video type) is dropped and counted
(``unknown``, ``unhandled``), the other streams going on. A pack header inside a video PES (impossible in
H.264/H.265, whose NAL headers never start 0xBA) ends a PES cut short by a truncated pack, so the next
picture is not lost with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PACK = 0xBA
SYSTEM_HEADER = 0xBB
PSM = 0xBC
END = 0xB9
PADDING = 0xBE
PRIVATE_2 = 0xBF
#: Stream types of a PSM (ISO/IEC 13818-1 Table 2-34; GB/T 28181-2016 Annex C for the G.7xx audio).
STREAM_TYPES = {0x1B: "video/H264", 0x24: "video/H265", 0x90: "audio/PCMA", 0x91: "audio/PCMU", 0x0F: "audio/AAC"}
DEFAULT_MAX_BUFFER = 2 * 1024 * 1024  # above any one picture a body camera sends
PTS_WRAP = 1 << 33


class PsError(ValueError):
    """Bytes that are not a program stream where one was expected."""


@dataclass(frozen=True, slots=True)
class EsFrame:
    """One encoded frame: an H.264/H.265 access unit (Annex B) or a piece of audio; ``pts`` in 90 kHz."""

    stream_id: int
    mime: str
    data: bytes
    pts: int


@dataclass(slots=True)
class _Gathering:
    mime: str
    pts: int
    parts: list[bytes] = field(default_factory=list)


class PsDemuxer:
    def __init__(self, *, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        self._buffer = bytearray()
        self._max = max_buffer
        self._types: dict[int, str] = {}  # stream id -> mime, from the PSM
        self.unknown: dict[int, int] = {}  # stream id -> stream type the PSM gave it that is not taken here
        self._frames: dict[int, _Gathering] = {}
        self.skipped = 0  # bytes of garbage skipped or dropped
        self.errors = 0  # packets refused (a lying length, a broken PES header)
        self.last_error = ""
        self.unhandled = 0  # PES packets of a stream whose PSM type is unknown or not of its kind: dropped

    @property
    def stream_types(self) -> dict[int, str]:
        return dict(self._types)

    def feed(self, data: bytes) -> list[EsFrame]:
        """Take the next bytes of the stream; the frames completed by them."""
        self._buffer += data
        out: list[EsFrame] = []
        position = 0
        buffer = self._buffer
        while True:
            start = buffer.find(b"\x00\x00\x01", position)
            if start < 0:
                keep = max(position, len(buffer) - 3)  # a start code may be split across feeds
                self.skipped += keep - position
                position = keep
                break
            if start > position:
                self.skipped += start - position
                position = start
            if len(buffer) < position + 4:
                break
            code = buffer[position + 3]
            size = self._packet_size(buffer, position, code)
            if size is not None and size > 0 and code >= 0xE0:
                # 00 00 01 BA cannot occur inside H.264/H.265 (it would be a NAL header with the forbidden
                # bit set): a pack header within a video PES means that PES was cut short (a truncated pack).
                cut = buffer.find(b"\x00\x00\x01\xba", position + 4, min(position + size, len(buffer)))
                if cut >= 0:
                    self._refuse(f"PES of stream 0x{code:02X} cut short by a pack header")
                    self._frames.pop(code, None)
                    self.skipped += cut - position
                    position = cut
                    continue
            if size is None or position + size > len(buffer):  # not all of it here yet
                break
            if size < 0:  # not a packet we can read: step over the start code and look again
                self._refuse(f"unreadable packet 0x{code:02X}")
                position += 3
                continue
            packet = bytes(buffer[position : position + size])
            position += size
            self._packet(code, packet, out)
        del buffer[:position]
        if len(buffer) > self._max:
            self._refuse(f"{len(buffer)} bytes without a complete packet")
            self.skipped += len(buffer)
            buffer.clear()
            self._frames.clear()
        return out

    def flush(self) -> list[EsFrame]:
        """The frames being gathered are complete (the RTP marker bit of their last packet was seen)."""
        out = [self._finish(stream_id) for stream_id in list(self._frames)]
        return [frame for frame in out if frame is not None]

    def lose(self) -> None:
        """Bytes were lost (an RTP sequence gap): drop what is partly gathered, resynchronise on the next pack."""
        self.skipped += len(self._buffer)
        self._buffer.clear()
        self._frames.clear()

    def _refuse(self, why: str) -> None:
        self.errors += 1
        self.last_error = why

    @staticmethod
    def _packet_size(buffer: bytearray, at: int, code: int) -> int | None:
        """The packet's length from its header: None when more bytes are needed, -1 when it is no packet."""
        available = len(buffer) - at
        if code == END:
            return 4
        if code == PACK:
            if available < 5:
                return None
            if buffer[at + 4] >> 6 == 0b01:  # MPEG-2: 14 bytes and stuffing
                if available < 14:
                    return None
                return 14 + (buffer[at + 13] & 0x07)
            if buffer[at + 4] >> 4 == 0b0010:  # MPEG-1: 12 bytes
                return 12
            return -1
        if code < 0xB9:  # a video elementary start code outside PES: no packet here
            return -1
        if available < 6:
            return None
        return 6 + int.from_bytes(buffer[at + 4 : at + 6], "big")

    def _packet(self, code: int, packet: bytes, out: list[EsFrame]) -> None:
        if code in (PACK, END, SYSTEM_HEADER, PADDING, PRIVATE_2):
            return
        if code == PSM:
            self._map(packet)
            return
        payload_start, pts = self._pes_header(packet)
        if payload_start < 0:
            self._refuse(f"broken PES header of stream 0x{code:02X}")
            self._frames.pop(code, None)
            return
        if code in self.unknown:
            self.unhandled += 1
            self.skipped += len(packet)
            return
        mime = self._types.get(code) or _default_mime(code)
        if mime is None:
            return
        payload = packet[payload_start:]
        gathering = self._frames.get(code)
        if pts is not None and gathering is not None and (mime.startswith("audio/") or pts != gathering.pts):
            finished = self._finish(code)
            if finished is not None:
                out.append(finished)
            gathering = None
        if gathering is None:
            if pts is None:  # the rest of a frame whose beginning was lost: useless
                self.skipped += len(payload)
                return
            gathering = self._frames[code] = _Gathering(mime, pts)
        gathering.parts.append(payload)

    def _finish(self, stream_id: int) -> EsFrame | None:
        gathering = self._frames.pop(stream_id, None)
        if gathering is None or not gathering.parts:
            return None
        data = b"".join(gathering.parts)
        return EsFrame(stream_id, gathering.mime, data, gathering.pts) if data else None

    def _map(self, packet: bytes) -> None:
        """A program stream map (ISO/IEC 13818-1 §2.5.4): which codec each stream id carries."""
        if len(packet) < 16:
            self._refuse("PSM too short")
            return
        info_length = int.from_bytes(packet[8:10], "big")
        at = 10 + info_length
        if at + 2 > len(packet):
            self._refuse("PSM info longer than the map")
            return
        map_length = int.from_bytes(packet[at : at + 2], "big")
        at += 2
        end = min(at + map_length, len(packet) - 4)  # the last 4 bytes are a CRC
        types: dict[int, str] = {}
        unknown: dict[int, int] = {}
        while at + 4 <= end:
            stream_type, stream_id = packet[at], packet[at + 1]
            es_info = int.from_bytes(packet[at + 2 : at + 4], "big")
            mime = STREAM_TYPES.get(stream_type)
            if mime is not None and mime.startswith(_kind_of(stream_id)):
                types[stream_id] = mime
            elif _kind_of(stream_id):  # G.722.1, G.729, SVAC…, or a type of the other kind: not taken
                unknown[stream_id] = stream_type
            at += 4 + es_info
        self._types = types
        self.unknown = unknown

    @staticmethod
    def _pes_header(packet: bytes) -> tuple[int, int | None]:
        """Where the payload starts and the PTS (or None); (-1, None) when the header is broken."""
        if len(packet) < 9:
            return -1, None
        if packet[6] >> 6 == 0b10:  # MPEG-2 PES header
            header_length = packet[8]
            start = 9 + header_length
            if start > len(packet):
                return -1, None
            if packet[7] & 0x80:
                if header_length < 5:
                    return -1, None
                return start, _pts(packet, 9)
            return start, None
        at = 6  # MPEG-1 PES header: stuffing, optional STD buffer size, then PTS/DTS or 0x0F
        while at < len(packet) and packet[at] == 0xFF and at < 6 + 16:
            at += 1
        if at < len(packet) and packet[at] >> 6 == 0b01:
            at += 2
        if at >= len(packet):
            return -1, None
        marker = packet[at] >> 4
        if marker == 0b0010:
            return (at + 5, _pts(packet, at)) if at + 5 <= len(packet) else (-1, None)
        if marker == 0b0011:
            return (at + 10, _pts(packet, at)) if at + 10 <= len(packet) else (-1, None)
        if packet[at] == 0x0F:
            return at + 1, None
        return -1, None


def _pts(packet: bytes, at: int) -> int:
    b = packet[at : at + 5]
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def _kind_of(stream_id: int) -> str:
    """``video/`` or ``audio/`` by the PES stream id's range (ISO/IEC 13818-1 Table 2-22); "" for others."""
    if 0xE0 <= stream_id <= 0xEF:
        return "video/"
    if 0xC0 <= stream_id <= 0xDF:
        return "audio/"
    return ""


def _default_mime(stream_id: int) -> str | None:
    if 0xE0 <= stream_id <= 0xEF:
        return "video/H264"
    if 0xC0 <= stream_id <= 0xDF:
        return "audio/PCMA"
    return None


# writing: the device side (the simulator and the tests' sender) -----------------------------------------


def pack_header(scr: int, mux_rate: int = 0x3FFF) -> bytes:
    """An MPEG-2 pack header (§2.5.3.3) with SCR ``scr`` (90 kHz) and no stuffing."""
    scr &= PTS_WRAP - 1
    b = bytearray(14)
    b[0:4] = b"\x00\x00\x01\xba"
    b[4] = 0x40 | ((scr >> 27) & 0x38) | 0x04 | ((scr >> 28) & 0x03)
    b[5] = (scr >> 20) & 0xFF
    b[6] = ((scr >> 12) & 0xF8) | 0x04 | ((scr >> 13) & 0x03)
    b[7] = (scr >> 5) & 0xFF
    b[8] = ((scr << 3) & 0xF8) | 0x04  # SCR extension 0
    b[9] = 0x01
    b[10] = (mux_rate >> 14) & 0xFF
    b[11] = (mux_rate >> 6) & 0xFF
    b[12] = ((mux_rate << 2) & 0xFC) | 0x03
    b[13] = 0xF8  # reserved, no stuffing
    return bytes(b)


def system_header(streams: dict[int, int]) -> bytes:
    """A system header (§2.5.3.5) naming each stream id."""
    body = bytearray(b"\x80\x00\x01\x04\xe1\xff")  # rate bound, audio bound 1, video bound 1
    for stream_id in streams:
        body += bytes([stream_id, 0xE0 if stream_id >= 0xE0 else 0xC0, 0x00 if stream_id >= 0xE0 else 0x20])
    return b"\x00\x00\x01\xbb" + len(body).to_bytes(2, "big") + bytes(body)


def program_stream_map(streams: dict[int, int]) -> bytes:
    """A PSM (§2.5.4) giving each stream id (key) its stream type (value); CRC left zero, as devices do."""
    entries = b"".join(bytes([stream_type, stream_id, 0, 0]) for stream_id, stream_type in streams.items())
    body = b"\xe0\xff" + b"\x00\x00" + len(entries).to_bytes(2, "big") + entries + b"\x00\x00\x00\x00"
    return b"\x00\x00\x01\xbc" + len(body).to_bytes(2, "big") + body


def pes_packets(stream_id: int, data: bytes, pts: int, *, chunk: int = 65_000) -> bytes:
    """``data`` in MPEG-2 PES packets (§2.4.3.6) of at most ``chunk`` payload bytes; the PTS on the first."""
    out = bytearray()
    for offset in range(0, max(len(data), 1), chunk):
        piece = data[offset : offset + chunk]
        if offset == 0:
            p = pts & (PTS_WRAP - 1)
            header = bytes([0x80, 0x80, 5, 0x21 | ((p >> 29) & 0x0E), (p >> 22) & 0xFF, ((p >> 14) & 0xFE) | 1,
                            (p >> 7) & 0xFF, ((p << 1) & 0xFE) | 1])  # fmt: skip
        else:
            header = bytes([0x80, 0x00, 0])
        out += b"\x00\x00\x01" + bytes([stream_id]) + (len(header) + len(piece)).to_bytes(2, "big") + header + piece
    return bytes(out)


def ps_frame(stream_id: int, data: bytes, pts: int, *, streams: dict[int, int] | None = None) -> bytes:
    """One pack carrying one frame as a GB/T 28181 device sends it: with system header and PSM when
    ``streams`` (stream id → stream type) is given (on keyframes)."""
    head = pack_header(pts)
    if streams:
        head += system_header(streams) + program_stream_map(streams)
    return head + pes_packets(stream_id, data, pts)
