"""The GB/T 28181 protocol cores without a loop: SIP parsing, Digest, MANSCDP bodies, the throttle.

Untrusted input is fuzzed with hypothesis: the parsers raise their own error and nothing else.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gb28181 import digest, manscdp, sip
from gb28181.throttle import FailureThrottle

DEVICE = "34020000001320000001"
REGISTER = (
    "REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
    "v: SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK1\r\n"
    f"From: <sip:{DEVICE}@3402000000>;tag=abc\r\n"
    f"To: <sip:{DEVICE}@3402000000>\r\n"
    "Call-ID: 1@10.0.0.5\r\n"
    "CSeq: 1 REGISTER\r\n"
    "Contact: <sip:34020000001320000001@10.0.0.5:5060>\r\n"
    "Expires: 3600\r\n"
    "Content-Length: 0\r\n\r\n"
).encode()


def test_register_parses_with_compact_headers() -> None:
    msg = sip.parse(REGISTER, max_bytes=4096)
    assert msg.method == "REGISTER"
    assert msg.from_user == DEVICE
    assert (
        msg.get(
            "Via",
        )
        == "SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK1"
    )
    assert msg.cseq == (1, "REGISTER")


def test_response_copies_the_transaction_and_tags_to() -> None:
    reply = sip.response(sip.parse(REGISTER, max_bytes=4096), 401, extra=[("WWW-Authenticate", "Digest x")])
    again = sip.parse(reply.serialise(), max_bytes=4096)
    assert again.status == 401 and again.reason == "Unauthorized"
    assert again.get("call-id") == "1@10.0.0.5" and again.cseq == (1, "REGISTER")
    assert sip.tag_of(again.get("to") or "") is not None
    assert again.get("www-authenticate") == "Digest x"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"hello", 400),
        (b"REGISTER sip:x SIP/2.0\r\n\r\n", 400),  # no Via, From, ...
        (REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: one REGISTER"), 400),
        (REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: 1 MESSAGE"), 400),
        (REGISTER.replace(b"Content-Length: 0", b"Content-Length: 99"), 400),
        (REGISTER + b"x" * 5000, 413),
    ],
)
def test_bad_messages_get_their_status(data: bytes, status: int) -> None:
    with pytest.raises(sip.SipParseError) as caught:
        sip.parse(data, max_bytes=4096)
    assert caught.value.status == status


def test_a_refusal_keeps_the_headers_needed_to_answer_it() -> None:
    with pytest.raises(sip.SipParseError) as caught:
        sip.parse(REGISTER + b"x" * 5000, max_bytes=4096)
    assert caught.value.partial is not None and caught.value.partial.call_id == "1@10.0.0.5"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_sip_parser_raises_only_its_own_error(data: bytes) -> None:
    with contextlib.suppress(sip.SipParseError):
        sip.parse(data, max_bytes=1024)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Via", "From", "To", "Call-ID", "CSeq", "l", "X:y", ":", " folded"]), max_size=12),
       st.text(max_size=40))  # fmt: skip
def test_sip_parser_on_header_soup(names: list[str], value: str) -> None:
    text = "MESSAGE sip:a@b SIP/2.0\r\n" + "".join(f"{n}: {value}\r\n" for n in names) + "\r\nbody"
    with contextlib.suppress(sip.SipParseError):
        sip.parse(text.encode("utf-8", "surrogatepass"), max_bytes=4096)


def test_stream_framer_cuts_by_content_length_and_bounds_its_buffer() -> None:
    framer = sip.StreamFramer(4096)
    body = b"<Notify/>"
    message = REGISTER.replace(b"Content-Length: 0", b"Content-Length: 9") + body
    assert framer.feed(b"\r\n" + message[:50]) == []
    assert framer.feed(message[50:] + message) == [message, message]
    with pytest.raises(sip.SipParseError) as caught:
        sip.StreamFramer(2048).feed(b"A" * 3000)
    assert caught.value.status == 413


def test_digest_round_trip_and_wrong_password() -> None:
    realm = "3402000000"
    nonces = digest.Nonces(60, key=b"k" * 32)
    nonce = nonces.issue(1000.0, "10.0.0.5")
    stored = digest.ha1(DEVICE, realm, "secret1")
    params = {"username": DEVICE, "realm": realm, "nonce": nonce, "uri": "sip:34020000002000000001@3402000000",
              "qop": "auth", "nc": "00000001", "cnonce": "c0ffee"}  # fmt: skip
    params["response"] = digest.expected_response(params, method="REGISTER", stored_ha1=stored)
    header = "Digest " + ", ".join(f'{k}="{v}"' if k != "nc" else f"{k}={v}" for k, v in params.items())
    parsed = digest.parse_credentials(header)
    assert parsed is not None and digest.verify(parsed, method="REGISTER", stored_ha1=stored)
    assert not digest.verify(parsed, method="REGISTER", stored_ha1=digest.ha1(DEVICE, realm, "guess"))
    assert nonces.check(nonce, 1030.0, "10.0.0.5") == "ok"
    assert nonces.check(nonce, 1061.0, "10.0.0.5") == "stale"
    assert nonces.check(nonce, 1030.0, "10.0.0.6") == "bad"  # replayed from elsewhere
    assert nonces.check("zz" * 9, 1030.0, "10.0.0.5") == "bad"


def test_digest_without_qop_as_older_devices_send_it() -> None:
    stored = digest.ha1(DEVICE, "3402000000", "secret1")
    params = {"username": DEVICE, "realm": "3402000000", "nonce": "abc", "uri": "sip:x@y", "algorithm": "MD5"}
    params["response"] = digest.md5_hex(f"{stored}:abc:{digest.md5_hex('REGISTER:sip:x@y')}")  # RFC 2069
    assert digest.verify(params, method="REGISTER", stored_ha1=stored)
    assert not digest.verify({**params, "algorithm": "SHA-256"}, method="REGISTER", stored_ha1=stored)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_digest_header_parser_never_raises(text: str) -> None:
    digest.parse_credentials("Digest " + text)


def test_gb2312_catalog_is_decoded_and_parsed() -> None:
    body = (
        '<?xml version="1.0" encoding="GB2312"?>\r\n<Response><CmdType>Catalog</CmdType><SN>7</SN>'
        f'<DeviceID>{DEVICE}</DeviceID><SumNum>1</SumNum><DeviceList Num="1"><Item>'
        "<DeviceID>34020000001310000001</DeviceID><Name>执法记录仪一号</Name><Status>ON</Status></Item>"
        "</DeviceList></Response>"
    ).encode("gb2312")
    doc = manscdp.parse(body)
    assert (doc.root, doc.cmd_type, doc.sn, doc.sum_num) == ("Response", "Catalog", "7", 1)
    channels = [(item["DeviceID"], item["Name"], item["Status"]) for item in doc.items]
    assert channels == [("34020000001310000001", "执法记录仪一号", "ON")]


def test_mobile_position_becomes_a_telemetry_message_with_a_time_seq() -> None:
    body = (
        f"<Notify><CmdType>MobilePosition</CmdType><SN>3</SN><DeviceID>{DEVICE}</DeviceID>"
        "<Time>2026-12-03T20:00:00</Time><Longitude>126.64</Longitude><Latitude>45.75</Latitude>"
        "<Speed>36</Speed><Direction>370</Direction><Altitude>150</Altitude></Notify>"
    ).encode()
    message = manscdp.position_message(manscdp.parse(body))
    noon_utc = int(datetime(2026, 12, 3, 12, tzinfo=UTC).timestamp() * 1000)  # China time is UTC+8
    assert message["fix_time_ms"] == message["seq"] == noon_utc
    assert (message["lat"], message["lon"], message["speed_mps"], message["heading_deg"]) == (45.75, 126.64, 10.0, 10.0)


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b"<Query><CmdType>&b;</CmdType></Query>",  # entity expansion ("billion laughs")
        b'<!DOCTYPE q [<!ENTITY x SYSTEM "file:///etc/passwd">]><Query><CmdType>&x;</CmdType></Query>',
        b"<Query><SN>1</SN></Query>",  # no CmdType
        b"<Query><CmdType>Keepalive</CmdType>",  # truncated
        b"",
    ],
)
def test_unsafe_or_broken_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(manscdp.ManscdpError):
        manscdp.parse(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1024))
def test_manscdp_parser_raises_only_its_own_error(data: bytes) -> None:
    try:
        doc = manscdp.parse(data)
        manscdp.position_message(doc)
    except manscdp.ManscdpError:
        pass


def test_throttle_counts_failures_per_address_in_a_window() -> None:
    throttle = FailureThrottle(3, window=60)
    for second in range(3):
        assert not throttle.blocked("10.0.0.1", float(second))
        throttle.failed("10.0.0.1", float(second))
    assert throttle.blocked("10.0.0.1", 10.0)
    assert not throttle.blocked("10.0.0.2", 10.0)
    assert throttle.retry_after("10.0.0.1", 10.0) == 51
    assert not throttle.blocked("10.0.0.1", 61.0)
