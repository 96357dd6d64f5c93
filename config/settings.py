"""Settings from a TOML file and environment variables, with defaults that run on a fresh machine.

Precedence, highest first: keyword arguments, environment variables (``CC_`` prefix, ``__`` between
section and key, e.g. ``CC_STORE__URL``), the TOML file named by ``CC_CONFIG`` (or passed explicitly),
then the defaults below. ``config/settings.sample.toml`` documents every key.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SQLITE_FILE = "command_center.db"
_TOML_FILE: ContextVar[Path | None] = ContextVar("cc_toml_file", default=None)


class Section(BaseModel):
    """A settings section: unknown keys are errors, so a typo in the file is caught at start."""

    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Largest request body accepted, in bytes; larger bodies get 413.
    max_body_bytes: int = Field(1_048_576, ge=1024)
    #: Addresses of reverse proxies in front of this process (nginx): for requests from them the client's
    #: address is the last one they add to ``X-Forwarded-For`` (login throttling is per client address).
    #: Empty by default: with no proxy a client could name any address it likes.
    trusted_proxies: list[str] = Field(default_factory=list, max_length=64)
    #: ``uvloop`` (libuv; about twice the socket throughput of the standard loop) or ``asyncio``.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    #: A connection must deliver a complete request head (request line and headers) this long after it
    #: opens, or after the first byte of a later request on it; slower ones are closed (``serve`` only).
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    #: A request body must arrive within this long once its head is in; otherwise 408 and the connection closes.
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    #: Open connections one client address may hold (``serve``); beyond, new ones get 503 and are closed.
    #: Trusted proxies (``trusted_proxies``) are exempt: every client comes through them, so the proxy must
    #: apply the cap per client itself (``limit_conn`` in config/nginx/nginx.conf).
    max_connections_per_address: int = Field(256, ge=1, le=1_000_000)
    #: Open connections in all; 0: the open-file limit less a reserve for the database, Redis, recordings.
    max_connections: int = Field(0, ge=0, le=10_000_000)
    #: A unit's telemetry socket silent this long is pinged, and cut if it stays silent half as long again
    #: (a link that died without closing); ``command_center/idle_sockets.py``.
    unit_socket_idle_seconds: float = Field(30.0, gt=0, le=3600)
    #: Benchmarks: when set, the event loop's lag is sampled every 10 ms and appended to this file once a
    #: second as JSON lines (``command_center/loop_lag.py``). Unset (the default): no probe runs.
    loop_lag_file: Path | None = None
    #: Diagnostics: when set, every stall of the event loop longer than ``stall_trace_ms`` is written to this
    #: file as one JSON line with the stacks the loop thread ran meanwhile, sampled every 10 ms
    #: (``command_center/stall_trace.py``). Unset (the default): nothing runs.
    stall_trace_file: Path | None = None
    stall_trace_ms: float = Field(50.0, ge=10, le=60_000)


class StoreSettings(Section):
    #: ``sqlite:///relative/or/absolute/path.db`` or ``postgresql://user@host:port/db``; when not given,
    #: ``command_center.db`` in ``data_dir`` (``Settings._database_in_data_dir``).
    url: str = "sqlite:///var/command_center.db"
    #: Connection pool bounds for PostgreSQL.
    pool_min: int = Field(1, ge=1)
    pool_max: int = Field(10, ge=1)
    #: Of ``pool_max``, connections kept for the query broker's grouped writes of agencies' answers (two writers,
    #: one each), which audit appends, submissions and reads cannot borrow.
    pool_reserved: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _reservation_leaves_a_shared_connection(self) -> StoreSettings:
        if self.pool_reserved >= self.pool_max:
            raise ValueError(
                f"store.pool_reserved ({self.pool_reserved}) must be below store.pool_max ({self.pool_max})"
            )
        return self

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("store.url must start with sqlite://, postgresql:// or postgres://")
        return value


class BusSettings(Section):
    #: ``memory://`` (in-process, one server process) or ``redis://host:port/db``.
    url: str = "memory://"
    #: Events kept per topic for subscribers that resume after a sequence number (1,000 is 100 s of
    #: frames at 10 a second; a screen away longer takes a fresh snapshot).
    history: int = Field(1_000, ge=1)
    #: Prefix of every Redis key and channel, so several deployments can share one Redis.
    namespace: str = "cc"
    #: Seconds Redis has to confirm a SUBSCRIBE before start-up (or a new subscriber) gives up with a
    #: TimeoutError (a Redis user that may not subscribe never confirms). Tests of that failure shorten it.
    subscribe_timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("bus.url must start with memory://, redis:// or rediss://")
        return value


class AuthSettings(Section):
    #: Lifetime of an interactive session token.
    session_ttl_seconds: int = Field(12 * 3600, ge=60)
    #: Argon2id cost; the defaults follow RFC 9106's second recommended option (64 MiB, 3 passes).
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(65_536, ge=8)
    argon2_parallelism: int = Field(4, ge=1)
    #: Lifetime of a single-use WebSocket ticket (``POST /api/auth/ticket``): long enough to open a socket.
    ticket_ttl_seconds: float = Field(30.0, gt=0, le=300)
    #: How often the credentials of open sockets and media sessions are checked against the store, for a
    #: revocation no event announced (revocations are announced at once; expiry is checked every second).
    recheck_seconds: float = Field(30.0, ge=1)
    #: Password verifications run at once (each is tens of milliseconds of CPU and 64 MiB); 0: one less than
    #: the cores this process may run on, at least one (Argon2 threads release the GIL but share the cores
    #: with the event loop: on a one-core placement two of them starved it under a flood) ...
    verify_workers: int = Field(0, ge=0, le=64)
    #: ... and queued behind them; logins beyond get 503 with Retry-After at once instead of waiting (a third
    #: of the places, at least one, is kept for existing usernames). Small: a real user waits behind at most
    #: (workers + waiting) / workers verifications.
    verify_waiting: int = Field(4, ge=0, le=10_000)
    #: Logins from one client address being checked at once (queued or running); beyond, 429 at once.
    verify_per_address: int = Field(4, ge=1, le=1_000)


class MapSettings(Section):
    #: A court's own tile server, e.g. ``https://tiles.court.example/{z}/{x}/{y}.png``; empty: the offline
    #: basemap (district outlines shipped with the app) is drawn instead, so a closed network still works.
    tile_url: str = ""
    tile_attribution: str = ""
    #: A raster MBTiles file the app serves itself (street-level maps with no tile server, maps.tile_archive
    #: wins over tile_url); its ``attribution`` metadata is shown unless tile_attribution is set.
    tile_archive: Path | None = None
    #: The datum of the tiles: ``gcj02`` for Chinese map sources (positions, reported in WGS-84, are shifted
    #: for display and clicks shifted back), ``wgs84`` otherwise.
    tile_datum: Literal["wgs84", "gcj02"] = "wgs84"
    #: Where the wall display opens (default: Harbin, 哈尔滨).
    center_lat: float = Field(45.757, ge=-90, le=90)
    center_lon: float = Field(126.642, ge=-180, le=180)
    zoom: int = Field(12, ge=1, le=19)
    #: Map reports rendered at once, each in a worker process (folium takes seconds of CPU for a big one,
    #: which must not run on the event loop); one more is refused with 503 and Retry-After.
    report_workers: int = Field(2, ge=1, le=16)


class TrackingSettings(Section):
    #: A unit silent this long is marked offline (a unit may carry its own value).
    offline_after_seconds: float = Field(60.0, gt=0)
    #: Screens receive coalesced frames at this rate.
    frames_per_second: float = Field(10.0, gt=0, le=50)
    #: Frames a screen may have queued before it is disconnected as too slow.
    screen_queue_frames: int = Field(256, ge=8)
    #: A feed (bus subscription, task, ring of 1,024 frames) is removed this long after its last screen left;
    #: a screen back within it resumes from the same ring, later from the bus's history (or a snapshot).
    screen_feed_grace_seconds: float = Field(30.0, ge=0, le=3600)
    #: A unit reporting less battery than this raises a low-battery alarm (cleared 5 points above it).
    low_battery_percent: float = Field(15.0, ge=0, le=95)
    #: A geofence crossing counts once a unit has been on the new side for this many fixes ...
    geofence_fixes: int = Field(3, ge=1, le=100)
    #: ... and this many seconds (GPS drift along an edge must not flap).
    geofence_seconds: float = Field(5.0, ge=0, le=600)
    #: Positions held for the database while it does not answer; beyond this new ones are refused with 503
    #: (the units keep them and send again) instead of growing the server's memory.
    max_pending_positions: int = Field(200_000, ge=100, le=10_000_000)
    #: Dispatch estimates a unit's time to a place at this straight-line speed (urban driving, m/s).
    dispatch_speed_mps: float = Field(8.0, gt=0, le=60)
    #: A fix this far ahead of the server's clock is refused (a broken device clock; the rest of its batch
    #: is kept). Accepted ones ahead of the clock count as received now for the live view, so none freezes it.
    max_clock_skew_seconds: float = Field(60.0, ge=0, le=3600)


class QuerySettings(Section):
    #: A point-to-point asset query is complete after this long; agencies that have not answered are timed out.
    deadline_seconds: float = Field(30.0, gt=0, le=3600)
    #: The partner agencies (``config/agencies.toml`` format); empty: the default set shipped with the app.
    agencies_file: Path | None = None
    #: Per judge, asset queries admitted in any rolling hour and 24 hours (429 beyond, with Retry-After);
    #: counted from the store, so the limits hold across server processes. A busy enforcement judge carries a
    #: few hundred cases and queries a batch of newly filed ones in a morning: 120 an hour is one every 30 s
    #: for a whole hour, 400 a day more than any judge's day of legitimate work; a script or a leaked
    #: account meets them within minutes.
    max_per_judge_hour: int = Field(120, ge=1, le=100_000)
    max_per_judge_day: int = Field(400, ge=1, le=1_000_000)
    #: Abuse watch (alarms to the court's supervisors): this many queries by one judge within
    #: ``burst_minutes`` (one every 30 s, faster than anyone reads results) ...
    burst_queries: int = Field(20, ge=2, le=100_000)
    burst_minutes: float = Field(10.0, gt=0, le=1440)
    #: ... a query started in these hours, Asia/Shanghai time, [start, end), wrapping midnight when
    #: start > end (equal: no night watch) ...
    night_start_hour: int = Field(22, ge=0, le=23)
    night_end_hour: int = Field(6, ge=0, le=23)
    #: ... and one person (ID number or credit code) queried by the same judge in this many different cases
    #: within ``same_person_hours`` (a debtor in two related cases is common; in three within a day, rare).
    same_person_cases: int = Field(3, ge=2, le=1000)
    same_person_hours: float = Field(24.0, gt=0, le=24 * 31)

    @field_validator("agencies_file", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if value == "" else value


class MediaSettings(Section):
    #: Peer connections one server process holds (units' WHIP sessions plus viewers' WHEP sessions);
    #: past this, new ones get 503 ``unavailable``.
    max_sessions: int = Field(64, ge=1, le=10_000)
    #: Viewing and talkback sessions one user may hold on one server process; past this, 429 with Retry-After.
    max_sessions_per_user: int = Field(8, ge=1, le=10_000)
    #: Viewing and talkback sessions the users of one court may hold together on one server process (429 past it),
    #: so one court's centre cannot take every session of a process shared with the courts below it.
    max_sessions_per_court: int = Field(32, ge=1, le=10_000)
    #: A peer connection that has not connected (ICE and DTLS) this long after its answer is closed.
    ice_timeout_seconds: float = Field(15.0, gt=0, le=300)
    #: A unit whose media stopped arriving this long ago is closed, with its viewers.
    silence_timeout_seconds: float = Field(10.0, gt=0, le=600)
    #: Encoded frames a viewer may have waiting; a viewer further behind skips to the next keyframe.
    viewer_queue_frames: int = Field(90, ge=4, le=10_000)
    #: Record every unit session as evidence from its start (off: only when an operator or an SOS starts it).
    record_sessions: bool = True
    #: Addresses offered to units and screens as ICE host candidates (empty: every interface but loopback).
    ice_addresses: list[str] = Field(default_factory=list, max_length=16)
    #: A recording is cut into segments of about this length, each hashed into the audit log when finished.
    segment_seconds: float = Field(60.0, ge=0.5, le=3600)
    #: Origins of pages elsewhere allowed to call WHIP/WHEP from a browser (CORS), e.g. ``https://wall.court.example``;
    #: empty: only this server's own pages (no CORS headers are sent).
    cors_origins: list[str] = Field(default_factory=list, max_length=64)
    #: STUN/TURN servers handed to units and viewers in ``Link: rel="ice-server"`` headers (RFC 9725 §4.6), e.g.
    #: ``turn:turn.court.example:3478?transport=udp`` or ``turns:turn.court.example:443?transport=tcp``.
    ice_servers: list[str] = Field(default_factory=list, max_length=16)
    #: coturn's ``static-auth-secret`` (``use-auth-secret``): each answer carries a TURN username and password made
    #: from it (the REST scheme coturn implements) that expire after ``turn_credential_seconds``. Empty: none.
    turn_secret: str = Field("", max_length=256, repr=False)
    turn_credential_seconds: int = Field(3600, ge=60, le=86_400)
    #: WHIP/WHEP/talkback POST, PATCH and DELETE requests one caller (a unit, a user) may make a minute, counted
    #: across every process when they share a Redis bus; beyond, 429 with Retry-After.
    requests_per_minute: int = Field(120, ge=1, le=100_000)
    #: The leader re-reads every recorded segment this often and checks its SHA-256 and size against the audit
    #: chain (``cc_recording_segment_verifications_total``; a mismatch is logged as an error and shown on the
    #: 运维 page). 0: only on demand (``POST /api/ops/verify-recordings``).
    verify_interval_seconds: float = Field(86_400.0, ge=0, le=30 * 86_400)


class ClusterSettings(Section):
    """Several server processes sharing PostgreSQL and Redis (docs/scale-out.md); ignored on the memory bus."""

    #: This process's name among its peers (default: host name and port); must differ between processes.
    node_id: str = ""
    #: Where the other processes reach this one directly, bypassing the proxy, e.g. ``http://10.0.0.5:8101``
    #: (default: the host name and port). WHEP and talkback requests for a unit streaming here are sent on to it.
    node_url: str = ""
    #: A lease (leadership, a running query, a unit's media session) lapses this long after its holder stops
    #: renewing it; a killed process's work is taken over after at most this long.
    lease_seconds: float = Field(6.0, ge=1, le=120)
    #: Each process writes its record (host, pid, the leases it holds, its units, screens and media sessions)
    #: this often, for the 运维 page's list of processes.
    heartbeat_seconds: float = Field(2.0, ge=0.1, le=60)
    #: A process whose record was not renewed for this long is shown stale (killed, hung or cut off).
    process_ttl_seconds: float = Field(10.0, ge=0.5, le=600)

    @model_validator(mode="after")
    def _ttl_outlasts_heartbeats(self) -> ClusterSettings:
        if self.process_ttl_seconds <= self.heartbeat_seconds:
            raise ValueError("cluster.process_ttl_seconds must be longer than cluster.heartbeat_seconds")
        return self


class AuditSettings(Section):
    """Signed checkpoints of the audit chain and the witnesses that keep them (docs/protocols.md)."""

    #: The court whose centre this is (e.g. ``HLJ``); carried by every checkpoint, and what the upper centre
    #: pins this centre's key under. Empty: ``local`` (then no upper centre can be configured).
    court_id: str = Field("", max_length=64)
    #: Sign a checkpoint of the chain's head once this many entries were added since the last one ...
    checkpoint_entries: int = Field(100, ge=1, le=1_000_000)
    #: ... or once this many seconds passed since it (and the chain grew). 0 turns checkpoints off.
    checkpoint_seconds: float = Field(60.0, ge=0, le=86_400)
    #: Append-only witness file (JSON lines, opened O_APPEND), on a volume the database's writer cannot rewrite;
    #: empty: none. ``audit verify`` reads it back.
    witness_file: Path | None = None
    #: The parent court's centre, e.g. ``https://hlj-centre.court.example``: each new checkpoint is sent to its
    #: ``POST /api/audit/witness``. Empty: none.
    upper_url: str = ""
    #: On an upper centre: the lower courts whose checkpoints it keeps, court id -> Ed25519 public key (hex, as
    #: printed by ``audit key`` on the lower centre). A checkpoint from any other court or key is refused.
    lower_courts: dict[str, str] = Field(default_factory=dict, max_length=1000)

    @field_validator("witness_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("upper_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("audit.upper_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("lower_courts")
    @classmethod
    def _hex_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for court, key in value.items():
            if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
                raise ValueError(f"audit.lower_courts.{court}: expected an Ed25519 public key as 64 lowercase hex")
        return value

    @model_validator(mode="after")
    def _upper_needs_a_name(self) -> AuditSettings:
        if self.upper_url and not self.court_id:
            raise ValueError("audit.upper_url needs audit.court_id: the upper centre pins this centre's key by court")
        return self

    @property
    def signer(self) -> str:
        return self.court_id or "local"


class Gb28181Settings(Section):
    """GB/T 28181 devices (body cameras, 4G units) registering over SIP (gb28181/, docs/protocols.md)."""

    #: Run the SIP registrar (UDP and TCP on ``sip_port``).
    enabled: bool = False
    #: Address the SIP sockets listen on.
    sip_host: str = "0.0.0.0"
    #: SIP port for UDP and TCP (0: an ephemeral port, for tests).
    sip_port: int = Field(5060, ge=0, le=65535)
    #: The platform's 20-digit SIP id, configured on every device as the server id.
    platform_id: str = Field("34020000002000000001", pattern=r"^\d{20}$")
    #: The 10-digit SIP domain, also the Digest realm; changing it invalidates every device's stored HA1.
    domain: str = Field("3402000000", pattern=r"^\d{10}$")
    #: The address devices are told to send media to (the INVITE's SDP; empty: our address on the SIP socket
    #: the device registered through).
    media_address: str = ""
    #: RTP ports for device media, ``first-last``: one UDP port per live stream, bound on ``sip_host``.
    rtp_port_range: str = Field("30000-30499", pattern=r"^\d{1,5}-\d{1,5}$")
    #: How devices send live video: RTP over UDP, or over TCP to a port we listen on (``tcp-passive``,
    #: RFC 4571 framing; for devices behind NAT or on lossy 4G links). For every device of this platform.
    rtp_transport: Literal["udp", "tcp-passive"] = "udp"
    #: How long a device has to answer an INVITE, and then to send its first keyframe.
    invite_timeout_seconds: float = Field(8.0, gt=0, le=60)
    #: A live stream with no viewer and no recording is hung up (BYE) after this long.
    media_linger_seconds: float = Field(10.0, ge=0, le=3600)
    #: The keepalive period devices are configured with, and how many missed keepalives make a unit offline
    #: (a GB unit registered without its own silence limit gets interval x misses).
    keepalive_interval_seconds: float = Field(60.0, gt=0, le=3600)
    keepalive_misses: int = Field(3, ge=1, le=100)
    #: MobilePosition subscription interval asked of devices (GB devices report every 1 s at best).
    mobile_position_interval_seconds: int = Field(5, ge=1, le=3600)
    #: Longest registration granted; a device asking more gets this (RFC 3261 §10.3 step 7).
    max_expires_seconds: int = Field(3600, ge=10, le=86_400)
    #: A Digest nonce is accepted this long after its challenge, then answered 401 with ``stale=TRUE``.
    nonce_seconds: float = Field(300.0, ge=5, le=3600)
    #: Largest SIP message accepted (UDP datagram or one message on TCP); larger: 413, or dropped on UDP
    #: when it cannot even be answered.
    max_message_bytes: int = Field(65_507, ge=2048, le=1_048_576)
    #: Failed REGISTERs (unknown or revoked device, wrong digest) one address may make a minute before its
    #: REGISTERs are answered 503 unchecked. Failures only: many devices may share one carrier NAT address.
    failed_registers_per_minute: int = Field(30, ge=1, le=100_000)

    @field_validator("rtp_port_range")
    @classmethod
    def _ordered_ports(cls, value: str) -> str:
        first, last = (int(p) for p in value.split("-"))
        if not 1024 <= first <= last <= 65535:
            raise ValueError("rtp_port_range must be first-last with 1024 <= first <= last <= 65535")
        return value


class EntrustmentSettings(Section):
    """Entrustments between courts (执行委托)."""

    #: How often the leader looks for entrustments still live past their deadline (each raises its
    #: 执行委托超期 alarm once, on both courts' walls).
    overdue_sweep_seconds: float = Field(30.0, gt=0, le=3600)
    #: Entrustments one user, and all the users of one court together, may request in any rolling hour (429
    #: beyond, with Retry-After); counted in Redis when several processes run, so the limits hold across them.
    #: A centre sends a handful a day; a script or a leaked account meets these within minutes.
    max_per_user_hour: int = Field(30, ge=1, le=100_000)
    max_per_court_hour: int = Field(120, ge=1, le=1_000_000)


class ObservabilitySettings(Section):
    """Metrics, logs and the 运维 page (README, "Observability")."""

    #: A bearer token Prometheus may scrape ``/metrics`` with (``Authorization: Bearer …``), compared in constant
    #: time; at least 32 characters, not starting with ``cc_`` (those are people's and devices' credentials).
    #: Empty: only an administrator's session token is accepted.
    metrics_token: SecretStr = SecretStr("")
    #: ``json``: one JSON object a line (time, level, logger, message, and the unit, connection or query id
    #: when the message carries one), for a log collector; ``text``: readable lines for a terminal (the demo).
    log_format: Literal["json", "text"] = "json"
    #: Access log: ``errors`` (default: requests answered 4xx or 5xx, so the terminal does not scroll with every
    #: request), ``all`` (every request but successful health probes and metrics scrapes), or ``off``.
    #: A WebSocket is one request: logged once when it closes, never per message.
    access_log: Literal["errors", "all", "off"] = "errors"
    #: The 运维 page warns when the recordings' disk has less than this share free (percent).
    disk_warning_percent: float = Field(15.0, ge=0, le=100)
    #: How often the event loop's lag is sampled for the metrics (seconds; 0: not at all).
    loop_lag_interval_seconds: float = Field(0.5, ge=0, le=60)

    @field_validator("metrics_token")
    @classmethod
    def _strong_token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        if token and (len(token) < 32 or token.startswith("cc_")):
            raise ValueError("observability.metrics_token must be at least 32 characters and not start with cc_")
        return value


class Settings(BaseSettings):
    """Everything the server reads at start; passed to ``create_app``, never read from globals."""

    model_config = SettingsConfigDict(env_prefix="CC_", env_nested_delimiter="__", extra="forbid")

    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    bus: BusSettings = BusSettings()
    auth: AuthSettings = AuthSettings()
    maps: MapSettings = MapSettings()
    tracking: TrackingSettings = TrackingSettings()
    queries: QuerySettings = QuerySettings()
    media: MediaSettings = MediaSettings()
    cluster: ClusterSettings = ClusterSettings()
    audit: AuditSettings = AuditSettings()
    gb28181: Gb28181Settings = Gb28181Settings()
    observability: ObservabilitySettings = ObservabilitySettings()
    entrustments: EntrustmentSettings = EntrustmentSettings()
    #: Where the server keeps its files (SQLite database, first admin password, later recordings).
    data_dir: Path = Path("var")

    @model_validator(mode="after")
    def _database_in_data_dir(self) -> Settings:
        """The embedded database lives with the server's other files: a store URL not given explicitly
        follows ``data_dir`` (an explicit one, file or environment, is kept as given)."""
        if "url" not in self.store.model_fields_set:
            self.store = self.store.model_copy(update={"url": f"sqlite:///{self.data_dir / SQLITE_FILE}"})
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _TOML_FILE.get() or os.environ.get("CC_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_file)))
        return tuple(sources)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings; ``config_file`` wins over ``CC_CONFIG`` and must exist when given."""
    if config_file is not None and not Path(config_file).is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")
    if config_file is None and (path_env := os.environ.get("CC_CONFIG")) and not Path(path_env).is_file():
        raise FileNotFoundError(f"CC_CONFIG names a missing file: {path_env}")
    token = _TOML_FILE.set(Path(config_file) if config_file is not None else None)
    try:
        return Settings(**overrides)
    finally:
        _TOML_FILE.reset(token)
