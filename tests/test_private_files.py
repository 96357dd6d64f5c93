"""The server's files are its user's alone: the SQLite database with its WAL, recordings (evidence) and the
first administrator's password are 0600 and the folders made for them 0700, whatever the umask; and the
embedded database lives in ``data_dir`` unless a store URL says otherwise."""

from __future__ import annotations

import fractions
import os
import stat
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from command_center.app import create_app
from command_center.bootstrap import FIRST_ADMIN_FILE, ensure_first_admin, import_courts
from command_center.credentials import Passwords
from command_center.keys import STORE
from config.settings import Settings, load_settings
from media.recording import Segment, SessionRecorder, recover
from tests.conftest import COURTS_FILE, FAST_AUTH


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Any:
    """The common default (0022: files 0644, folders 0755), so the test shows the server tightening it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_database_follows_data_dir_unless_a_url_is_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings().store.url == "sqlite:///var/command_center.db"
    monkeypatch.setenv("CC_DATA_DIR", str(tmp_path / "cc"))
    assert load_settings().store.url == f"sqlite:///{tmp_path}/cc/command_center.db"
    monkeypatch.setenv("CC_STORE__POOL_MAX", "4")  # another store key does not count as a URL
    assert load_settings().store.url == f"sqlite:///{tmp_path}/cc/command_center.db"
    monkeypatch.setenv("CC_STORE__URL", "sqlite:///elsewhere/cc.db")
    assert load_settings().store.url == "sqlite:///elsewhere/cc.db"
    config = tmp_path / "settings.toml"
    config.write_text('data_dir = "/srv/cc"\n[store]\nurl = "postgresql://cc@db/cc"\n')
    monkeypatch.delenv("CC_STORE__URL")
    monkeypatch.delenv("CC_DATA_DIR")
    assert load_settings(config).store.url == "postgresql://cc@db/cc"


async def test_the_database_and_its_wal_are_private(aiohttp_client: Any, tmp_path: Path, open_umask: None) -> None:
    data_dir = tmp_path / "fresh" / "data"  # neither exists yet
    client = await aiohttp_client(create_app(Settings(data_dir=data_dir, auth=FAST_AUTH)))
    await import_courts(client.app[STORE], COURTS_FILE)  # something written, so the WAL holds it
    database = data_dir / "command_center.db"
    assert database.is_file()
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        assert _mode(path) == 0o600, path
    assert _mode(data_dir) == 0o700 and _mode(data_dir.parent) == 0o700


async def test_a_database_left_readable_by_an_older_version_is_tightened(tmp_path: Path, open_umask: None) -> None:
    from persistence.sqlite import SqliteStore

    path = tmp_path / "old.db"
    first = SqliteStore(path)
    await first.open()
    await first.migrate()
    await first.close()
    for each in (path, Path(f"{path}-wal")):
        each.touch()
        each.chmod(0o644)
    again = SqliteStore(path)
    await again.open()
    try:
        assert _mode(path) == 0o600 and _mode(Path(f"{path}-wal")) == 0o600
    finally:
        await again.close()


async def test_the_first_admin_password_file_is_private(tmp_path: Path, open_umask: None) -> None:
    from persistence.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "cc.db")
    await store.open()
    try:
        await store.migrate()
        await import_courts(store, COURTS_FILE)
        data_dir = tmp_path / "new-data"
        secret = data_dir / FIRST_ADMIN_FILE
        data_dir.mkdir(mode=0o755)
        secret.write_text("left by an older version\n")
        secret.chmod(0o644)
        login = await ensure_first_admin(store, Passwords(FAST_AUTH), data_dir)
        assert login is not None and secret.read_text().strip() == login[1]
        assert _mode(secret) == 0o600
    finally:
        await store.close()


async def test_recordings_are_private(tmp_path: Path, open_umask: None) -> None:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 160, 120, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    packets = []
    for i in range(10):
        frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), i * 20, np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        packets.extend(encoder.encode(frame))
    done: list[Segment] = []

    async def keep(segment: Segment) -> None:
        done.append(segment)

    root = tmp_path / "data" / "recordings"
    recorder = SessionRecorder(root, "HLJ0102-U01", "s1", {"video": "video/VP8"}, segment_seconds=3600,
                               on_segment=keep, want_keyframe=lambda: None)  # fmt: skip
    for i, packet in enumerate(packets):
        recorder.frame("video", bytes(packet), i * 3000, 90_000, bool(packet.is_keyframe))
    await recorder.close()
    [segment] = done
    assert _mode(segment.path) == 0o600
    for folder in (segment.path.parent, segment.path.parent.parent, root, root.parent):
        assert _mode(folder) == 0o700, folder

    crashed = segment.path.with_name("00001.mkv.part")  # a crash's leftover, remuxed at the next start
    crashed.write_bytes(segment.path.read_bytes())
    [recovered] = recover(root)
    assert recovered.path.name == "00001.mkv" and _mode(recovered.path) == 0o600
