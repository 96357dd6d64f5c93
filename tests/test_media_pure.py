"""The pure parts of the media work, without a loop: SDP offer checks, keyframes, feeds, pacing."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import AppError
from media.frames import Feed, KeyframeRequests, is_keyframe, nal_units
from media.ice_servers import link_headers, turn_credential
from media.offers import (
    OfferError,
    check_transport,
    parse_offer,
    plan_publish,
    plan_view,
    prefer_dtls_server,
    rtcp_mux_only,
)
from media.trickle import PreconditionFailed, PreconditionRequired, check_if_match, parse_fragment

HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"


def section(kind: str, mid: str, codecs: str, rtpmaps: list[str], direction: str = "sendonly") -> str:
    lines = [f"m={kind} 9 UDP/TLS/RTP/SAVPF {codecs}", "c=IN IP4 0.0.0.0", f"a=mid:{mid}", f"a={direction}",
             "a=setup:actpass", *rtpmaps]  # fmt: skip
    return "\r\n".join(lines) + "\r\n"


VP8 = section("video", "0", "96 97", ["a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96"])
H264 = section("video", "0", "102 96", ["a=rtpmap:102 H264/90000",
               "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
               "a=rtpmap:96 VP8/90000"])  # fmt: skip
MODE0_H264 = section("video", "0", "102", ["a=rtpmap:102 H264/90000",
                     "a=fmtp:102 packetization-mode=0;profile-level-id=42e01f"])  # fmt: skip
OPUS = section("audio", "1", "111", ["a=rtpmap:111 opus/48000/2"])
PCMU = section("audio", "1", "0", ["a=rtpmap:0 PCMU/8000"])
DATA = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=sctp-port:5000\r\n"


def test_a_unit_offer_gets_its_first_forwardable_codec_per_kind() -> None:
    assert plan_publish(parse_offer(HEAD + VP8 + OPUS + DATA)) == {"video": "video/VP8", "audio": "audio/opus"}
    assert plan_publish(parse_offer(HEAD + H264)) == {"video": "video/H264"}
    assert plan_publish(parse_offer((HEAD + VP8).replace("\r\n", "\n"))) == {"video": "video/VP8"}


@pytest.mark.parametrize(
    ("offer", "malformed", "reason"),
    [
        ("", True, "first line"),
        ("hello", True, "first line"),
        ("v=0\r\nthis is not sdp\r\n", True, "line 2"),
        ("v=0\r\nm=video nine RTP 96\r\n", True, "media line"),
        (HEAD + DATA, False, "no audio or video"),
        (HEAD, False, "no audio or video"),
        (HEAD + PCMU, False, "no supported audio codec offered (PCMU); send Opus"),
        (HEAD + section("video", "0", "98", ["a=rtpmap:98 VP9/90000"]), False, "send VP8 or H.264"),
        (HEAD + MODE0_H264, False, "no supported video codec"),
        (HEAD + section("video", "0", "96", ["a=rtpmap:96 VP8/90000"], "recvonly"), False, "does not send"),
        (HEAD + VP8 + VP8.replace("a=mid:0", "a=mid:3"), False, "more than one video"),
    ],
)
def test_unusable_unit_offers_are_refused_with_the_reason(offer: str, malformed: bool, reason: str) -> None:
    with pytest.raises(OfferError) as caught:
        plan_publish(parse_offer(offer))
    assert caught.value.malformed is malformed
    assert reason in str(caught.value)


def test_a_viewer_must_accept_the_units_own_codec() -> None:
    recv = HEAD + VP8.replace("a=sendonly", "a=recvonly") + OPUS.replace("a=sendonly", "a=recvonly")
    assert plan_view(parse_offer(recv), {"video": "video/VP8"}) == {"video": "video/VP8"}
    assert plan_view(parse_offer(recv), {"video": "video/VP8", "audio": "audio/opus"}) == {
        "video": "video/VP8", "audio": "audio/opus"}  # fmt: skip
    with pytest.raises(OfferError, match="sends video/H264"):
        plan_view(parse_offer(recv), {"video": "video/H264"})
    with pytest.raises(OfferError, match="none of the unit's media"):
        plan_view(parse_offer(HEAD + OPUS.replace("a=sendonly", "a=recvonly")), {"video": "video/VP8"})
    with pytest.raises(OfferError, match="none of the unit's media"):  # inactive
        plan_view(parse_offer(HEAD + VP8.replace("a=sendonly", "a=inactive")), {"video": "video/VP8"})


FINGERPRINT = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32)
TRANSPORT = f"a=ice-ufrag:Ab12\r\na=ice-pwd:{'p' * 22}\r\n{FINGERPRINT}\r\n"


def test_an_offer_with_ice_credentials_and_a_fingerprint_can_be_connected() -> None:
    check_transport(parse_offer(HEAD + TRANSPORT + VP8 + OPUS + DATA.replace("a=mid:2", "a=mid:2\r\na=setup:actpass")))
    per_section = HEAD + VP8.replace("a=mid:0", "a=mid:0\r\n" + TRANSPORT.rstrip())  # attributes in the section
    check_transport(parse_offer(per_section))
    bundled = VP8.replace("m=video 9", "m=video 0").replace("a=mid:0", "a=mid:1\r\na=bundle-only")
    check_transport(parse_offer(HEAD + OPUS.replace("a=mid:1", "a=mid:0\r\n" + TRANSPORT.rstrip()) + bundled))
    check_transport(parse_offer(HEAD + VP8.replace("m=video 9", "m=video 0")))  # rejected: nothing needed


@pytest.mark.parametrize(
    ("offer", "reason"),
    [
        (HEAD + VP8, "has no DTLS fingerprint"),
        (HEAD + TRANSPORT.replace(FINGERPRINT + "\r\n", "") + VP8, "the video section (mid 0) has no DTLS fingerprint"),
        (HEAD + TRANSPORT.replace("sha-256", "sha-1").replace(":AB" * 12, "", 1) + VP8, "hash sha-1 not supported"),
        (HEAD + TRANSPORT.replace("a=ice-ufrag:Ab12\r\n", "") + VP8, "has no ICE credentials"),
        (HEAD + TRANSPORT.replace("a=ice-pwd:", "a=x-pwd:") + VP8, "has no ICE credentials"),
        (HEAD + TRANSPORT.replace("Ab12", "A_b1") + VP8, "ice-ufrag must be 4 to 256 ice-chars"),
        (HEAD + TRANSPORT.replace("p" * 22, "short") + VP8, "ice-pwd must be 22 to 256"),
        (HEAD + TRANSPORT + VP8.replace("a=setup:actpass\r\n", ""), "has no a=setup"),
        (HEAD + TRANSPORT + VP8.replace("actpass", "holdconn"), "a=setup:holdconn cannot carry media"),
        (HEAD + TRANSPORT + VP8.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"), "uses RTP/AVP, not DTLS-SRTP"),
        (HEAD + TRANSPORT + VP8 + DATA, "the application section (mid 2) has no a=setup"),
    ],
)
def test_offers_that_cannot_connect_are_refused_before_any_peer_connection(offer: str, reason: str) -> None:
    with pytest.raises(OfferError) as caught:
        check_transport(parse_offer(offer))
    assert caught.value.malformed is False
    assert reason in str(caught.value)


def test_a_malformed_fingerprint_is_unreadable_sdp() -> None:
    with pytest.raises(OfferError, match="line 6: malformed fingerprint") as caught:
        parse_offer(HEAD + "a=fingerprint:sha-256 not-hex\r\n" + VP8)
    assert caught.value.malformed is True


def test_the_answerer_becomes_the_dtls_server() -> None:
    offer = HEAD + VP8 + OPUS
    changed = prefer_dtls_server(offer)
    assert "a=setup:actpass" not in changed and changed.count("a=setup:active\r\n") == 2
    assert prefer_dtls_server(changed) == changed
    assert prefer_dtls_server("a=setup:passive\n") == "a=setup:passive\n"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400) | st.lists(st.sampled_from(
    ["v=0", "m=video 9 RTP 96", "m=audio 0 RTP 0", "a=rtpmap:96 VP8/90000", "a=rtpmap:x", "a=fmtp:96 a=b;c",
     "a=sendonly", "a=recvonly", "a=mid:0", "m=application 9 DTLS webrtc", "x", "", "a=rtpmap:0 PCMU/8000",
     "a=setup:actpass", "a=setup:", "a=ice-ufrag:", "a=ice-ufrag:abcd", "a=ice-pwd:" + "p" * 22, FINGERPRINT,
     "a=fingerprint:sha-256", "a=fingerprint:x AB:CD", "a=bundle-only"]),
    max_size=30).map("\r\n".join))  # fmt: skip
def test_any_text_is_either_planned_or_refused_with_offer_error(text: str) -> None:
    try:
        offer = parse_offer(text)
        check_transport(offer)
        plan = plan_publish(offer)
    except OfferError:
        return
    assert set(plan) <= {"audio", "video"} and plan


VP8_KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00]) + b"\x00" * 20
VP8_DELTA = bytes([0x31, 0x02, 0x00]) + b"\x00" * 20


def test_keyframes_are_recognised() -> None:
    assert is_keyframe("video/VP8", VP8_KEY) and not is_keyframe("video/VP8", VP8_DELTA)
    assert not is_keyframe("video/VP8", b"\x00\x00")
    idr = b"\x00\x00\x00\x01\x67\x42\x00\x1f" + b"\x00\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65\x88\x84"
    slice_ = b"\x00\x00\x00\x01\x41\x9a\x00"
    assert nal_units(idr) == [b"\x67\x42\x00\x1f", b"\x68\xce", b"\x65\x88\x84"]
    assert is_keyframe("video/H264", idr) and not is_keyframe("video/H264", slice_)
    assert is_keyframe("audio/opus", b"\x01")


@given(st.binary(max_size=64))
def test_keyframe_checks_never_fail_on_any_bytes(data: bytes) -> None:
    for mime in ("video/VP8", "video/H264", "video/AV1"):
        assert isinstance(is_keyframe(mime, data), bool)


def test_a_video_feed_starts_at_a_keyframe_and_restarts_at_one_when_it_overflows() -> None:
    feed: Feed[str] = Feed(3, gated=True)
    assert feed.push("d0", keyframe=False) is True and len(feed) == 0  # joined mid-stream: wait
    assert feed.push("k1", keyframe=True) is False
    for name in ("d2", "d3"):
        assert feed.push(name, keyframe=False) is False
    assert feed.push("d4", keyframe=False) is True  # full: flushed, waiting for a keyframe again
    assert len(feed) == 0 and feed.waiting and feed.dropped == 5  # d0, then k1 d2 d3 flushed, d4
    assert feed.push("d5", keyframe=False) is True
    assert feed.push("k6", keyframe=True) is False
    assert [feed.pop(), feed.pop()] == ["k6", None]


def test_an_audio_feed_drops_its_oldest_frame_when_full() -> None:
    feed: Feed[int] = Feed(2, gated=False)
    for n in range(4):
        assert feed.push(n, keyframe=True) is False
    assert [feed.pop(), feed.pop(), feed.pop()] == [2, 3, None] and feed.dropped == 2


def test_keyframe_requests_go_at_once_then_at_most_one_per_interval() -> None:
    now = [100.0]
    requests = KeyframeRequests(1.0, lambda: now[0])
    assert requests.due() is None
    requests.want()
    assert requests.due() == 0.0
    requests.sent()
    assert requests.due() is None
    requests.want()
    now[0] += 0.25
    assert requests.due() == pytest.approx(0.75)
    now[0] += 1.0
    assert requests.due() == 0.0


# Trickle ICE fragments and ICE servers (RFC 9725 §4.3, §4.6) -----------------------------------------


def test_a_fragment_gives_its_credentials_and_candidates_and_ignores_stray_lines() -> None:
    text = ("a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:video0\r\n"
            "a=candidate:1 1 UDP 2130706431 10.0.1.1 8998 typ host\r\na=end-of-candidates\r\n")  # fmt: skip
    fragment = parse_fragment(text.encode())
    assert (fragment.ufrag, fragment.pwd, fragment.end) == ("EsAw", "P2uYro0UCOQ4zxjKXaWCBui1", True)
    assert fragment.candidates == ("1 1 UDP 2130706431 10.0.1.1 8998 typ host",)
    assert fragment.restarts("other") and not fragment.restarts("EsAw")
    assert not parse_fragment(b"a=candidate:1 1 UDP 1 10.0.1.1 9 typ host\n").restarts("EsAw")


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"\xff\xfe", 400, "UTF-8"),
        (b"not sdp\n", 400, "line 1"),
        (b"a=ice-ufrag:ab\n", 422, "a=ice-ufrag"),
        (b"a=ice-ufrag:abcd\n", 422, "both"),
        (b"a=candidate:1 1 udp\n", 422, "a=candidate"),
        (b"a=candidate:1 1 UDP 1 10.0.0.1 9 typ host\n" * 65, 422, "more than 64"),
        (b"a=" + b"x" * 20_000, 400, "larger"),
    ],
)
def test_bad_fragments_are_refused_precisely(body: bytes, status: int, reason: str) -> None:
    with pytest.raises(AppError, match=reason) as refused:
        parse_fragment(body)
    assert refused.value.status == status


@given(st.binary(max_size=2000))
@settings(max_examples=300)
def test_any_fragment_is_read_or_refused_with_400_or_422(body: bytes) -> None:
    try:
        parse_fragment(body)
    except AppError as exc:
        assert exc.status in (400, 422)


def test_if_match_is_required_and_compared_strongly() -> None:
    with pytest.raises(PreconditionRequired):
        check_if_match(None, '"a"')
    for stale in ('"b"', 'W/"a"', '"b", W/"a"'):
        with pytest.raises(PreconditionFailed):
            check_if_match(stale, '"a"')
    for good in ('"a"', '"b", "a"', "*"):
        check_if_match(good, '"a"')


def test_turn_links_carry_a_credential_coturn_checks_and_stun_links_none() -> None:
    credential = turn_credential("s3cret", "HLJ0102-U01", now=1_000.0, lifetime_s=600)
    assert credential.username == "1600:HLJ0102-U01"
    assert base64.b64decode(credential.password) == hmac.new(b"s3cret", b"1600:HLJ0102-U01", hashlib.sha1).digest()
    stun, turns = link_headers(["stun:s.example:3478", "turns:t.example:443?transport=tcp"], credential)
    assert stun == '<stun:s.example:3478>; rel="ice-server"'
    assert turns.startswith('<turns:t.example:443?transport=tcp>; rel="ice-server"; username="1600:HLJ0102-U01"')
    assert link_headers(["stun:s.example", "turn:t.example"], None) == ['<stun:s.example>; rel="ice-server"']


def test_bundled_answers_say_rtcp_mux_only_and_unbundled_ones_are_left_alone() -> None:
    bundled = "v=0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtcp-mux\r\na=mid:0\r\n"
    assert rtcp_mux_only(bundled).count("a=rtcp-mux\r\na=rtcp-mux-only\r\n") == 1
    alone = bundled.replace("a=group:BUNDLE 0\r\n", "")
    assert rtcp_mux_only(alone) == alone
