"""MANSCDP XML bodies (GB/T 28181 Annex A): decode, parse safely, build the platform's queries. No I/O.

Devices declare ``encoding="GB2312"`` (and send GBK or GB18030 names), which the stdlib parser refuses
("multi-byte encodings are not supported"): bytes are decoded first (GB18030 is a superset of GB2312 and
GBK) and the declaration dropped. A body with a document type declaration is refused before parsing: the
DTD is the only place an entity can be declared, so without one an entity bomb or an external entity cannot
exist (what defusedxml's ``forbid_dtd`` guarantees), and the stdlib's C parser reads the rest. defusedxml
itself builds the tree in pure Python: about three quarters of a MobilePosition's parsing time, at 2,000
devices a tenth of the server (bench.gb28181). ``parse`` raises only ``ManscdpError``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8))  # GB/T 28181 times carry no zone: devices keep China Standard Time
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9_-]+)["']""", re.IGNORECASE)
MAX_ITEMS = 1_000  # catalog items in one body


class ManscdpError(Exception):
    """A body that is not a MANSCDP document we accept."""


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed body: the root (Query, Response, Notify, Control), its CmdType, SN, DeviceID and leaves."""

    root: str
    cmd_type: str
    sn: str
    device_id: str
    fields: dict[str, str] = field(default_factory=dict)  # direct children with text
    items: list[dict[str, str]] = field(default_factory=list)  # DeviceList/Item (Catalog)
    sum_num: int | None = None


def decode(body: bytes) -> str:
    """The body as text: its declared charset (GB2312/GBK/GB18030 read as GB18030), else UTF-8, else GB18030."""
    head = body[:200]
    declared = _ENCODING.search(head)
    name = declared.group(1).decode().lower() if declared else "utf-8"
    text: str
    if name in ("gb2312", "gbk", "gb18030", "gb_2312-80", "cp936"):
        text = body.decode("gb18030", errors="replace")
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body.decode("gb18030", errors="replace")  # declared UTF-8 but written by a GBK device
    return _DECLARATION.sub("", text.lstrip("\ufeff"), count=1)


def parse(body: bytes) -> Document:
    text = decode(body)
    if "<!DOCTYPE" in text or "<!ENTITY" in text:  # XML keywords are case-sensitive: no other spelling parses
        raise ManscdpError("a document type declaration: refused (MANSCDP bodies carry none)")
    try:
        root = ET.fromstring(text)
    except (ET.ParseError, ValueError) as exc:
        raise ManscdpError(f"not well-formed MANSCDP XML: {exc}") from None
    cmd_type = _text(root.find("CmdType"))
    if not cmd_type:
        raise ManscdpError(f"<{root.tag}> has no CmdType")
    fields = {child.tag: _text(child) for child in root if len(child) == 0}
    items: list[dict[str, str]] = []
    device_list = root.find("DeviceList")
    if device_list is not None:
        for item in device_list.findall("Item"):
            if len(items) >= MAX_ITEMS:
                raise ManscdpError(f"more than {MAX_ITEMS} catalog items in one body")
            items.append({child.tag: _text(child) for child in item if len(child) == 0})
    sum_num = fields.get("SumNum", "")
    return Document(
        root=root.tag,
        cmd_type=cmd_type,
        sn=fields.get("SN", ""),
        device_id=fields.get("DeviceID", ""),
        fields=fields,
        items=items,
        sum_num=int(sum_num) if sum_num.isdigit() and len(sum_num) < 7 else None,
    )


def _text(element: ET.Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def parse_time_ms(text: str) -> int:
    """A GB time (``2024-05-01T12:00:00`` or with a space or fraction; China time unless it names a zone)."""
    value = text.strip().replace(" ", "T")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ManscdpError(f"Time: {text[:40]!r} is not a date and time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=CHINA)
    return int(parsed.timestamp() * 1000)


def position_message(doc: Document) -> dict[str, object]:
    """A MobilePosition (or an Alarm with a position) as a telemetry message for the tracker's validation.

    The seq is derived from the fix time (milliseconds): GB positions carry no per-unit sequence number,
    and the time is what makes a resent fix the same fix, so a resend is stored once.
    """
    fields = doc.fields
    fix_ms = parse_time_ms(fields.get("Time") or fields.get("AlarmTime") or "")
    message: dict[str, object] = {
        "seq": fix_ms,
        "fix_time_ms": fix_ms,
        "lat": _number(fields, "Latitude"),
        "lon": _number(fields, "Longitude"),
    }
    if (speed := _number(fields, "Speed", required=False)) is not None:
        message["speed_mps"] = round(speed / 3.6, 3)  # GB reports km/h
    if (direction := _number(fields, "Direction", required=False)) is not None:
        message["heading_deg"] = direction % 360.0
    if (altitude := _number(fields, "Altitude", required=False)) is not None:
        message["altitude_m"] = altitude
    return message


def _number(fields: dict[str, str], name: str, *, required: bool = True) -> float | None:
    text = fields.get(name, "")
    if not text:
        if required:
            raise ManscdpError(f"{name}: missing")
        return None
    try:
        return float(text)
    except ValueError:
        raise ManscdpError(f"{name}: {text[:20]!r} is not a number") from None


def _document(root: str, cmd_type: str, sn: int, device_id: str, extra: str = "") -> bytes:
    text = (
        '<?xml version="1.0" encoding="GB2312"?>\r\n'
        f"<{root}>\r\n<CmdType>{cmd_type}</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{device_id}</DeviceID>\r\n"
        f"{extra}</{root}>\r\n"
    )
    return text.encode("gb18030")


def catalog_query(sn: int, device_id: str) -> bytes:
    return _document("Query", "Catalog", sn, device_id)


def mobile_position_query(sn: int, device_id: str, interval_seconds: int) -> bytes:
    return _document("Query", "MobilePosition", sn, device_id, f"<Interval>{interval_seconds}</Interval>\r\n")


def response_ok(cmd_type: str, sn: str, device_id: str) -> bytes:
    """The platform's answer to a device's notification that expects one (e.g. Alarm)."""
    return _document("Response", cmd_type, int(sn) if sn.isdigit() and len(sn) < 10 else 0, device_id,
                     "<Result>OK</Result>\r\n")  # fmt: skip


def keyframe_request(sn: int, device_id: str) -> bytes:
    """DeviceControl asking a channel for a keyframe now (GB/T 28181-2016 A.2.3, ``IFameCmd`` as spelt there)."""
    return _document("Control", "DeviceControl", sn, device_id, "<IFameCmd>Send</IFameCmd>\r\n")


def broadcast_notify(sn: int, source_id: str, target_id: str) -> bytes:
    """Notify Broadcast (语音广播, GB/T 28181-2016 §9.12, A.2.5): the device is to INVITE the platform for the
    audio it will play, ``source_id`` the platform, ``target_id`` the device (no DeviceID element here)."""
    text = (
        '<?xml version="1.0" encoding="GB2312"?>\r\n'
        f"<Notify>\r\n<CmdType>Broadcast</CmdType>\r\n<SN>{sn}</SN>\r\n<SourceID>{source_id}</SourceID>\r\n"
        f"<TargetID>{target_id}</TargetID>\r\n</Notify>\r\n"
    )
    return text.encode("gb18030")
