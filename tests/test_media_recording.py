"""Recording as evidence: a unit's VP8 video and Opus audio written as received (no decode, no encode) in
Matroska segments that each open on a keyframe; every segment's SHA-256 is in the audit chain and the CLI
verifies recordings against it (a flipped byte is caught), as the server does itself (counted in the metrics,
shown on the 运维 page); a segment cut short by a crash is recovered."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from command_center.keys import AUDIT, MEDIA, VERIFIER
from config.settings import MediaSettings
from consultations.models import Room, RoomStatus
from core.ids import CourtId, UnitId, UserId
from media.evidence import SEGMENT_ACTION
from media.recording import recover, sha256_of
from media.verification import SegmentVerifier
from tests.conftest import AppFactory, World
from tests.media_support import UNIT, UnitPeer, eventually, loopback  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("loopback")
ROOT = Path(__file__).resolve().parent.parent


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    env.update(CC_DATA_DIR=str(data_dir), CC_STORE__URL=f"sqlite:///{data_dir / 'app.db'}")
    return subprocess.run([sys.executable, "-m", "command_center", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


async def _segments(world: World) -> list[dict[str, object]]:
    return [e.details for e in await world.store.audit_entries() if e.action == SEGMENT_ACTION]


async def test_a_session_is_recorded_in_hashed_segments_without_transcoding(
    make_world: AppFactory, tmp_path: Path
) -> None:
    world = await make_world(media=MediaSettings(segment_seconds=1.0))
    unit = UnitPeer(world, video="video/VP8", audio=True)
    await unit.publish()
    hub = world.client.app[MEDIA]
    assert hub.recording(UnitId(UNIT))  # evidence by default: every session is recorded from its start
    await asyncio.sleep(3.5)
    publisher = hub.publisher(UnitId(UNIT))
    assert publisher is not None and publisher.decoded_frames == 0
    response = await world.client.delete(unit.location, headers=world.auth("device"))
    assert response.status == 200
    await unit.close()
    await eventually(lambda: hub.publisher(UnitId(UNIT)) is None, what="session closed")

    segments = await _segments(world)
    assert len(segments) >= 2, segments
    root = tmp_path / "recordings"
    for details in segments:
        path = root / str(details["file"])
        assert path.suffix == ".mkv" and sha256_of(path) == details["sha256"]
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            assert video.codec_context.name == "vp8" and (video.width, video.height) == (320, 240)
            assert container.streams.audio[0].codec_context.name == "opus"
            first_video = next(p for p in container.demux(video=0) if p.dts is not None)
            assert first_video.is_keyframe  # each segment plays on its own
        assert int(str(details["video_frames"])) > 10 and int(str(details["audio_frames"])) > 10
    listed = await (await world.client.get(f"/api/units/{UNIT}/recordings", headers=world.auth("operator"))).json()
    assert [s["sha256"] for s in listed["segments"]] == [s["sha256"] for s in segments]

    await world.client.close()  # the CLI reads the same database and files
    verified = _cli(tmp_path, "recording", "verify", "--unit", UNIT)
    assert verified.returncode == 0 and f"{len(segments)} segments match" in verified.stdout, verified.stderr
    victim = root / str(segments[0]["file"])
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    tampered = _cli(tmp_path, "recording", "verify")
    assert tampered.returncode == 1 and "altered" in tampered.stderr and str(segments[0]["file"]) in tampered.stderr


async def test_operators_start_and_stop_recording_when_sessions_are_not_recorded_by_default(
    make_world: AppFactory,
) -> None:
    world = await make_world(media=MediaSettings(record_sessions=False, segment_seconds=30))
    idle = await world.client.post(f"/api/units/{UNIT}/recording", headers=world.auth("operator"))
    assert idle.status == 409 and "not streaming" in (await idle.json())["error"]["message"]
    unit = UnitPeer(world, video="video/VP8")
    await unit.publish()
    try:
        assert not world.client.app[MEDIA].recording(UnitId(UNIT))
        started = await world.client.post(f"/api/units/{UNIT}/recording", headers=world.auth("operator"))
        assert started.status == 200 and (await started.json())["recording"] is True
        await asyncio.sleep(1.5)
        stopped = await world.client.delete(f"/api/units/{UNIT}/recording", headers=world.auth("operator"))
        assert stopped.status == 200
        [segment] = await _segments(world)  # stopping finishes the one segment: hashed and audited
        assert int(str(segment["video_frames"])) > 10
        again = await world.client.delete(f"/api/units/{UNIT}/recording", headers=world.auth("operator"))
        assert again.status == 409
        judge = await world.client.post(f"/api/units/{UNIT}/recording", headers=world.auth("judge"))
        assert judge.status == 403
    finally:
        await unit.close()


def test_a_segment_cut_short_by_a_crash_is_recovered(tmp_path: Path) -> None:
    # a finished segment of a fake session, then the same bytes cut off as a crash leaves them: no cues,
    # no final sizes, the last cluster incomplete
    source = tmp_path / "whole.mkv"
    with av.open(str(source), mode="w", format="matroska") as out:
        import fractions

        import numpy as np

        encoder = av.CodecContext.create("libvpx", "w")
        encoder.width, encoder.height, encoder.pix_fmt = 160, 120, "yuv420p"
        encoder.time_base = fractions.Fraction(1, 30)
        stream = out.add_stream("vp8", rate=90_000)
        stream.width, stream.height = 160, 120
        for i in range(90):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            for packet in encoder.encode(frame):
                packet.stream, packet.pts, packet.dts = stream, i * 3000, i * 3000
                packet.time_base = fractions.Fraction(1, 90_000)
                out.mux(packet)
    folder = tmp_path / "recordings" / UNIT / "crashed-session"
    folder.mkdir(parents=True)
    data = source.read_bytes()
    (folder / "00003.mkv.part").write_bytes(data[: len(data) * 2 // 3])

    [segment] = recover(tmp_path / "recordings")
    assert segment.recovered and segment.index == 3 and segment.session_id == "crashed-session"
    assert segment.path == folder / "00003.mkv" and not (folder / "00003.mkv.part").exists()
    with av.open(str(segment.path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert 30 < decoded < 90 and segment.video_frames >= decoded  # what was written before the cut survives
    assert segment.sha256 == sha256_of(segment.path)


async def test_pauses_of_the_video_are_reported_with_each_segment(tmp_path: Path) -> None:
    """A link that loses frames leaves pauses in the recording: each segment says how many and the longest."""
    import fractions

    import numpy as np

    from media.recording import Segment, SessionRecorder

    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 160, 120, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    packets = []
    for i in range(60):
        frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i, np.uint8), format="rgb24").reformat(
            format="yuv420p"
        )
        frame.pts = i
        packets.extend(encoder.encode(frame))
    done: list[Segment] = []

    async def keep(segment: Segment) -> None:
        done.append(segment)

    recorder = SessionRecorder(tmp_path, UNIT, "s1", {"video": "video/VP8"}, segment_seconds=3600,
                               on_segment=keep, want_keyframe=lambda: None)  # fmt: skip
    for i, packet in enumerate(packets):
        frame_index = i if i < 20 else i + 36  # frames 20..55 never arrived: a 1.2 s pause
        recorder.frame("video", bytes(packet), frame_index * 3000, 90_000, bool(packet.is_keyframe))
    await recorder.close()
    [segment] = done
    assert segment.video_frames == len(packets)
    assert (segment.gaps, segment.longest_gap_ms) == (1, 1233)
    assert segment.details(tmp_path)["longest_gap_ms"] == 1233 and segment.dropped == 0


async def test_sessions_recorded_at_once_share_one_writer_thread_and_each_is_sealed_whole(tmp_path: Path) -> None:
    """On the server's one core the kernel shares time out per thread: a writer thread per session left the event
    loop a small share whenever the sessions sealed their segments together. Every recording goes through one
    writer, and each still gets all its frames, in order, in a hashed segment of its own."""
    import fractions
    import threading

    import numpy as np

    from media.recording import Segment, SessionRecorder

    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 160, 120, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    packets = []
    for i in range(30):
        image = np.full((120, 160, 3), i * 8, np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets.extend(encoder.encode(frame))
    done: list[Segment] = []

    async def keep(segment: Segment) -> None:
        done.append(segment)

    threads_before = {t.ident for t in threading.enumerate()}
    recorders = [SessionRecorder(tmp_path, UNIT, f"s{n}", {"video": "video/VP8"}, segment_seconds=3600,
                                 on_segment=keep, want_keyframe=lambda: None) for n in range(8)]  # fmt: skip
    for i, packet in enumerate(packets):
        for recorder in recorders:  # interleaved, as frames of several units arrive
            recorder.frame("video", bytes(packet), i * 3000, 90_000, bool(packet.is_keyframe))
    started = [t for t in threading.enumerate() if t.ident not in threads_before]
    await asyncio.gather(*(recorder.close() for recorder in recorders))
    assert len(started) <= 1, [t.name for t in started]  # none when an earlier test started the shared writer
    assert sorted(s.session_id for s in done) == [f"s{n}" for n in range(8)]
    for segment in done:
        assert segment.video_frames == len(packets) and segment.dropped == 0
        assert segment.sha256 == sha256_of(segment.path)
        with av.open(str(segment.path)) as container:
            assert [bytes(p) for p in container.demux(video=0) if p.size] == [bytes(p) for p in packets]


async def test_the_server_re_reads_its_segments_and_counts_altered_and_missing_ones(
    make_world: AppFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What ``recording verify`` does, done by the server (on demand here; the leader does it periodically):
    each counted in ``cc_recording_segment_verifications_total{result}``, shown on the 运维 overview, and an
    altered or missing segment raises an alarm (录像校验异常) for the unit's court."""
    world = await make_world(media=MediaSettings(segment_seconds=1.0, verify_interval_seconds=0))
    unit = UnitPeer(world, video="video/VP8")
    await unit.publish()
    hub = world.client.app[MEDIA]
    await asyncio.sleep(2.5)
    assert (await world.client.delete(unit.location, headers=world.auth("device"))).status == 200
    await unit.close()
    await eventually(lambda: hub.publisher(UnitId(UNIT)) is None, what="session closed")
    segments = await _segments(world)
    assert len(segments) >= 2, segments
    admin = world.auth("admin")

    intact = await world.client.post("/api/ops/verify-recordings", headers=admin)
    assert intact.status == 200, await intact.text()
    assert (await intact.json())["counts"] == {"ok": len(segments), "mismatch": 0, "missing": 0}

    root = tmp_path / "recordings"
    altered, lost = root / str(segments[0]["file"]), root / str(segments[1]["file"])
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    altered.write_bytes(bytes(data))
    lost.unlink()
    with caplog.at_level("ERROR", logger="media.verification"):
        found = await (await world.client.post("/api/ops/verify-recordings", headers=admin)).json()
    assert found["counts"] == {"ok": len(segments) - 2, "mismatch": 1, "missing": 1}
    assert any(str(segments[0]["file"]) in r.getMessage() and "altered" in r.getMessage() for r in caplog.records)

    metrics = await (await world.client.get("/metrics", headers=admin)).text()
    for result, n in (("ok", 2 * len(segments) - 2), ("mismatch", 1), ("missing", 1)):
        assert f'cc_recording_segment_verifications_total{{result="{result}"}} {float(n)}' in metrics, result
    overview = await (await world.client.get("/api/ops/overview", headers=admin)).json()  # every court's figures
    assert overview["verifications"]["totals"] == {"ok": 2 * len(segments) - 2, "mismatch": 1, "missing": 1}
    problems = overview["verifications"]["last"]["problems"]
    assert {str(segments[0]["file"]), str(segments[1]["file"])} == {p.split(":")[0] for p in problems}
    # An alarm for the unit's court, one per segment (a later pass finding the same does not add another).
    await world.client.post("/api/ops/verify-recordings", headers=admin)
    listed = await (await world.client.get("/api/alarms", headers=world.auth("operator"))).json()
    raised = [a for a in listed["alarms"] if a["kind"] == "evidence_mismatch"]
    evidence = {a["subject"]: a for a in raised}
    assert len(raised) == 2 and set(evidence) == {str(segments[0]["file"]), str(segments[1]["file"])}
    assert evidence[str(segments[0]["file"])]["details"]["result"] == "mismatch"
    assert evidence[str(segments[1]["file"])]["details"]["result"] == "missing"
    assert {a["unit_id"] for a in evidence.values()} == {UNIT} and {a["state"] for a in evidence.values()} == {"open"}
    for role in ("operator", "judge", "device"):
        assert (await world.client.post("/api/ops/verify-recordings", headers=world.auth(role))).status == 403


async def test_the_leader_verifies_periodically_with_its_setting(make_world: AppFactory, tmp_path: Path) -> None:
    world = await make_world(media=MediaSettings(record_sessions=False, verify_interval_seconds=0.2))
    folder = tmp_path / "recordings" / UNIT / "s1"
    folder.mkdir(parents=True)
    (folder / "00001.mkv").write_bytes(b"not what was sealed")
    details = {"file": f"{UNIT}/s1/00001.mkv", "unit_id": UNIT, "session_id": "s1", "bytes": 19, "sha256": "0" * 64}
    await world.client.app[AUDIT].record(SEGMENT_ACTION, None, details=details)
    verifier = world.client.app[VERIFIER]
    await eventually(lambda: verifier.totals["mismatch"] >= 2, within=10, what="two periodic passes")
    assert verifier.totals["ok"] == 0 and verifier.totals["missing"] == 0


async def test_a_verification_asked_for_while_one_runs_gets_that_ones_result(tmp_path: Path) -> None:
    """Single flight: each pass re-reads every file, so calls during a pass share it rather than queue more."""
    started, release = asyncio.Event(), asyncio.Event()
    reads = 0

    async def audited() -> list[dict[str, object]]:
        nonlocal reads
        reads += 1
        started.set()
        await release.wait()
        return []

    verifier = SegmentVerifier(audited, tmp_path)
    first = asyncio.create_task(verifier.run())
    await started.wait()
    others = [asyncio.create_task(verifier.run()) for _ in range(3)]
    await asyncio.sleep(0)  # the others are waiting on the running pass
    release.set()
    runs = await asyncio.gather(first, *others)
    assert reads == 1 and all(run is runs[0] for run in runs)
    started.clear()
    later = asyncio.create_task(verifier.run())  # once a pass is over, the next call makes a new one
    await started.wait()
    assert reads == 2
    assert (await later) is not runs[0]


async def test_an_altered_or_lost_room_recording_raises_an_alarm_for_the_rooms_court(
    make_world: AppFactory, tmp_path: Path
) -> None:
    """A consultation room participant's segments are keyed ``room:<room>:<user>`` (no unit): an altered or a
    lost one still raises 录像校验异常, on the room's court's wall."""
    world = await make_world(media=MediaSettings(record_sessions=False))
    me = await (await world.client.get("/api/me", headers=world.auth("operator"))).json()
    host = UserId(me["user"]["id"])
    await world.store.add_room(Room("r1", "会商", CourtId("HLJ0102"), (CourtId("HLJ0102"),), None, None, None, host,
                                    RoomStatus.OPEN, 0, None))  # fmt: skip
    key = f"room:r1:{host}"
    folder = tmp_path / "recordings" / key / "s1"
    folder.mkdir(parents=True)
    (folder / "00001.mkv").write_bytes(b"not what was sealed")
    for n in (1, 2):  # the second was never written (lost)
        details = {"file": f"{key}/s1/{n:05d}.mkv", "unit_id": key, "session_id": "s1", "bytes": 19,
                   "sha256": "0" * 64}  # fmt: skip
        await world.client.app[AUDIT].record(SEGMENT_ACTION, None, details=details)
    found = await (await world.client.post("/api/ops/verify-recordings", headers=world.auth("admin"))).json()
    assert found["counts"] == {"ok": 0, "mismatch": 1, "missing": 1}
    listed = await (await world.client.get("/api/alarms", headers=world.auth("admin"))).json()
    raised = {a["subject"]: a for a in listed["alarms"] if a["kind"] == "evidence_mismatch"}
    assert set(raised) == {f"{key}/s1/00001.mkv", f"{key}/s1/00002.mkv"}
    where = {(a["court_id"], a["unit_id"], a["details"]["room_id"]) for a in raised.values()}
    assert where == {("HLJ0102", None, "r1")}
    assert {a["details"]["result"] for a in raised.values()} == {"mismatch", "missing"}
