"""Command line: serve, migrate, init, and the directory chores an administrator does from a shell."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from command_center.access_log import AccessLogger
from command_center.app import create_app
from command_center.bootstrap import ensure_first_admin, import_courts
from command_center.case_import import import_cases, system_client_command
from command_center.connection_guard import serve
from command_center.credentials import Passwords, check_password_strength, lookup_hash, new_device_secret
from command_center.demo import ensure_demo, ensure_demo_unit
from command_center.logs import configure_logging
from command_center.revocation import Revocation, Subject, tell_servers
from config.settings import Settings, load_settings
from core.checkpoint import public_key_hex
from core.errors import AppError
from core.ids import CourtId, UnitId
from gb28181.enrol import enrol, ensure_free, keepalive_silence
from media.evidence import SEGMENT_ACTION, check_recordings
from persistence.factory import build_store
from persistence.models import Role, UnitKind
from persistence.port import Store
from query_control.audit import AuditLog
from query_control.audit import verify as verify_audit
from query_control.audit_key import load_key, load_or_create_key
from query_control.checkpoints import (
    Sourced,
    WillNotSign,
    checkpoints_as_lines,
    deliver,
    make_checkpoint,
    read_witness_file,
    verify_with_witnesses,
)

DEFAULT_COURTS = Path(__file__).resolve().parent.parent / "config" / "courts.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m command_center", description="执行指挥中心 command centre")
    parser.add_argument("--config", type=Path, help="TOML settings file (default: $CC_CONFIG, else built-in defaults)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server (applies migrations first)")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")

    commands.add_parser("migrate", help="apply pending database migrations and exit")

    init = commands.add_parser("init", help="migrate, import courts, create the first admin when there is none")
    init.add_argument("--courts", type=Path, default=DEFAULT_COURTS, help="court hierarchy TOML file")

    commands.add_parser("demo", help="create the demo judge and case for a first look at the query desk")

    court = commands.add_parser("court", help="courts").add_subparsers(dest="action", required=True)
    court_import = court.add_parser("import", help="create or update courts from a TOML file")
    court_import.add_argument("file", type=Path)

    user = commands.add_parser("user", help="users").add_subparsers(dest="action", required=True)
    user_add = user.add_parser("add", help="add a user; the password is read from the terminal or stdin")
    user_add.add_argument("--username", required=True)
    user_add.add_argument("--display-name", required=True)
    user_add.add_argument("--role", required=True, choices=[r.value for r in Role])
    user_add.add_argument("--court", required=True, help="court id, e.g. HLJ0102")

    user_unlock = user.add_parser("unlock", help="clear a user's failed-login locks at every address (audited)")
    user_unlock.add_argument("--username", required=True)

    device = commands.add_parser("device", help="field-unit devices").add_subparsers(dest="action", required=True)
    device_add = device.add_parser("add", help="register a unit and print its device secret (shown once)")
    device_add.add_argument("--id", required=True, help="unit id, e.g. HLJ0102-U01")
    device_add.add_argument("--name", required=True)
    device_add.add_argument("--kind", required=True, choices=[k.value for k in UnitKind])
    device_add.add_argument("--court", required=True)
    device_add.add_argument("--offline-after", type=float, help="seconds of silence before offline (default: setting)")
    device_add.add_argument(
        "--gb-device-id", help="a GB/T 28181 device's 20-digit id: prints its SIP password too (shown once)"
    )
    device_add.add_argument(
        "--rtp-transport", choices=["udp", "tcp-passive"],
        help="with --gb-device-id: how the device sends RTP (default: the setting gb28181.rtp_transport)",
    )  # fmt: skip
    device_revoke = device.add_parser("revoke", help="revoke a unit's device secret")
    device_revoke.add_argument("--id", required=True)

    system = commands.add_parser("system-client", help="the case-management system's credentials").add_subparsers(
        dest="action", required=True
    )
    system_add = system.add_parser("add", help="register a court's case-management system; prints its secret once")
    system_add.add_argument("--name", required=True, help="e.g. 哈尔滨中院立案系统")
    system_add.add_argument("--court", required=True, help="its court; it registers cases of it and the courts below")
    system_revoke = system.add_parser("revoke", help="revoke a case-management system's credential")
    system_revoke.add_argument("--name", required=True)

    case = commands.add_parser("case", help="cases").add_subparsers(dest="action", required=True)
    case_import = case.add_parser(
        "import", help="create or update cases from a JSON or CSV file (docs/protocols.md: case source)"
    )
    case_import.add_argument("file", type=Path)

    audit = commands.add_parser("audit", help="the hash-chained audit log").add_subparsers(dest="action", required=True)
    recording = commands.add_parser("recording", help="evidence recordings").add_subparsers(
        dest="action", required=True
    )
    recording_verify = recording.add_parser("verify", help="check recordings against the audit chain (exit 1 if not)")
    recording_verify.add_argument("--session", help="only this media session")
    recording_verify.add_argument("--unit", help="only this unit")
    audit_verify = audit.add_parser(
        "verify", help="check the chain, and against its signed checkpoints and witnesses; exit 1 where they part"
    )
    audit_verify.add_argument(
        "--witness", type=Path, action="append", default=[], metavar="FILE",
        help="a witness file (JSON lines), e.g. exported by the upper centre; repeatable",
    )  # fmt: skip
    audit_verify.add_argument(
        "--key", help="the public key (hex) checkpoints must verify under (default: this centre's key in the data dir)"
    )
    audit.add_parser("key", help="print this centre's audit public key (hex), for a witness to pin")
    audit.add_parser("checkpoint", help="sign a checkpoint of the chain's head now and hand it to the witnesses")
    audit_export = audit.add_parser("witness-export", help="upper centre: print a lower court's checkpoints held here")
    audit_export.add_argument("--court", required=True, help="the lower court's id")
    return parser


async def _with_store(settings: Settings, work: Callable[[Store], Awaitable[int]]) -> int:
    store = build_store(settings.store)
    await store.open()
    try:
        await store.migrate()
        return await work(store)
    finally:
        await store.close()


async def _audit_verify(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    """The chain, then the chain against every signed checkpoint: the database's, the witness file's, and
    any ``--witness`` file (e.g. the upper centre's export); every place they part is printed, first first."""
    sources = [Sourced("database", cp) for cp in await store.audit_checkpoints()]
    unreadable: list[str] = []
    files = ([settings.audit.witness_file] if settings.audit.witness_file is not None else []) + args.witness
    notes: list[str] = []
    for path in files:
        if path == settings.audit.witness_file and not path.exists() and not sources:
            notes.append(f"witness file {path} does not exist yet (no checkpoint was signed)")
            continue
        found, problems = read_witness_file(path)
        sources += found
        unreadable += problems
    public_key = args.key
    if public_key is None:
        own = load_key(settings.data_dir)
        public_key = None if own is None else public_key_hex(own)
    report = await verify_with_witnesses(store, sources, public_key=public_key, court=settings.audit.signer)
    for line in unreadable:
        print(f"witness: {line}", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if report.ok and not unreadable:
        print(f"audit log intact: {report.entries} entries, head {report.head};"
              f" {report.checkpoints} signed checkpoints from {len({s.source for s in sources})} sources agree"
              f" (witnessed to entry {report.witnessed_to})")  # fmt: skip
        if not files:
            print("note: no witness file given or configured: a deleted tail shows only against the database's"
                  " own checkpoints", file=sys.stderr)  # fmt: skip
        return 0
    first = report.first
    for problem in sorted(report.problems, key=lambda p: (p.seq is None, p.seq or 0)):
        where = "" if problem.seq is None else f" at entry {problem.seq}"
        print(f"audit log TAMPERED{where}: {problem.text}", file=sys.stderr)
    if first is not None and first.seq is not None:
        print(f"first entry where the chain and its witnesses part: {first.seq}", file=sys.stderr)
    return 1


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


async def _unlock(settings: Settings, store: Store, username: str) -> int:
    """The records are shared in Redis when several processes run; on the in-process bus they live inside the
    one server process, which only its admin route (``POST /api/users/{id}/unlock``) can reach."""
    user = await store.find_user(username)
    if user is None:
        print(f"error: no user {username!r}", file=sys.stderr)
        return 1
    if not settings.bus.url.startswith(("redis://", "rediss://")):
        print("error: on the in-process bus (bus.url memory://) the failed-login records live in the server "
              f"process: unlock with POST /api/users/{user.id}/unlock as an admin", file=sys.stderr)  # fmt: skip
        return 1
    from command_center.shared_throttle import RedisLoginGuard

    guard = RedisLoginGuard(settings.bus.url, namespace=settings.bus.namespace)
    try:
        cleared = await guard.unlock(user.username)
    finally:
        await guard.close()
    details = {"user_id": user.id, "username": user.username, "cleared": cleared}
    await AuditLog(store).record("user.unlock", None, reason="command line", details=details)
    logging.getLogger(__name__).info("command line unlocked logins of user %s (%s)", user.id, user.username)
    print(f"user {user.username}: {cleared} failed-login records cleared")
    return 0


#: ``gc.set_threshold`` of a serving process (and of the benchmarks' load generators, bench/harness.py).
COLLECTOR_THRESHOLDS = (25_000, 0, 6_000)


def _tune_garbage_collector() -> None:
    """Fewer and bounded collector passes; each one stops the event loop for as long as it walks.

    A young pass every 25,000 net allocations (the default, 700, walks a busy server's young objects
    thousands of times a second), and every second pass a middle one (threshold 0: the middle generation
    holds only what survived the one young pass before). A pass walks what the young and middle generations
    hold, and under load nearly all of it survives (connections, batches waiting for their commit): at
    (50,000, 2) a middle pass walked three young passes' worth, about 170,000 objects at 5,000 units
    (200-400 ms stalls at 10,000 units); now at most about 80,000. What survives a middle pass is long-lived
    and walked again only by a full pass: after 6,000 middle passes (they now come about six times as often
    as before: as rare in time as 1,000 were), and only once the old generation grew by a quarter.
    Measured with ``bench.telemetry`` and a pass log (objects walked per pass), see the commit."""
    gc.collect()
    gc.freeze()  # what exists at start (modules, settings) is never garbage: leave it out of every pass
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


async def _freeze_what_started(app: web.Application) -> None:
    """What start-up loaded (the unit directory, statuses and latest positions, pools, routes) lives as long
    as the process: frozen, no full collector pass walks it again. Thousands of units make it hundreds of
    thousands of objects, and a full pass stalls the event loop for as long as it walks them."""
    gc.collect()
    gc.freeze()


def _new_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    if settings.server.event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings(args.config)
    # The server logs for a collector (observability.log_format); the chores below for the person at the shell.
    configure_logging(settings.observability.log_format if args.command == "serve" else "text")
    try:
        return _run(args, settings)
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        server = settings.server.model_copy(
            update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        )
        settings = settings.model_copy(update={"server": server})
        print(f"执行指挥中心 listening on http://{server.host}:{server.port}/", flush=True)
        _tune_garbage_collector()
        try:
            # web.run_app, with slow clients held off and no secret in the access log
            app = create_app(settings)
            app.on_startup.append(_freeze_what_started)  # after every cleanup context has started
            serve(app, server, _new_loop(settings), access_log_class=AccessLogger)
        except Exception as exc:  # what started was stopped by the app's cleanup; say why, exit non-zero
            logging.getLogger(__name__).error("the server did not start", exc_info=exc)
            reason = exc.message if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
            print(f"error: the server did not start: {reason}", file=sys.stderr)
            return 1
        return 0

    if args.command == "migrate":

        async def migrate(store: Store) -> int:
            print(f"applied: {await store.migrate() or 'nothing (up to date)'}")
            return 0

        return asyncio.run(_with_store(settings, migrate))

    if args.command == "init":

        async def init(store: Store) -> int:
            count = await import_courts(store, args.courts)
            print(f"courts: {count} imported from {args.courts}")
            await store.cluster_secret()  # made once: every server process signs forwarded requests with it
            login = await ensure_first_admin(store, Passwords(settings.auth), settings.data_dir)
            if login is not None:
                print(f"first admin login: username '{login[0]}', password '{login[1]}'")
                print(f"(kept in {settings.data_dir / 'first-admin-password'} until the password is changed)")
            return 0

        return asyncio.run(_with_store(settings, init))

    if args.command == "demo":

        async def demo(store: Store) -> int:
            login = await ensure_demo(store, Passwords(settings.auth), settings.data_dir)
            if login is not None:
                print(f"demo judge login: username '{login[0]}', password '{login[1]}' (query desk: /desk)")
            unit = await ensure_demo_unit(store, settings.data_dir)
            if unit is not None:
                print(f"demo field unit {unit[0]}: open /field on a phone and enter the device secret '{unit[1]}'")
            return 0

        return asyncio.run(_with_store(settings, demo))

    if args.command == "court":

        async def court_import(store: Store) -> int:
            print(f"courts: {await import_courts(store, args.file)} imported")
            return 0

        return asyncio.run(_with_store(settings, court_import))

    if args.command == "user" and args.action == "unlock":
        return asyncio.run(_with_store(settings, lambda store: _unlock(settings, store, args.username)))

    if args.command == "user" and args.action == "add":
        password = _read_password()
        check_password_strength(password, username=args.username, display_name=args.display_name)

        async def user_add(store: Store) -> int:
            await store.get_court(CourtId(args.court))
            user = await store.add_user(
                username=args.username,
                display_name=args.display_name,
                password_hash=Passwords(settings.auth).hash(password),
                role=Role(args.role),
                court_id=CourtId(args.court),
            )
            print(f"user {user.username} ({user.role}) added to {user.court_id} with id {user.id}")
            return 0

        return asyncio.run(_with_store(settings, user_add))

    if args.command == "device" and args.action == "add":

        async def device_add(store: Store) -> int:
            await store.get_court(CourtId(args.court))
            gb_id: str | None = args.gb_device_id
            offline_after = args.offline_after
            if gb_id is not None:
                if len(gb_id) != 20 or not gb_id.isdigit():
                    print("--gb-device-id must be 20 digits (GB/T 28181 device id)", file=sys.stderr)
                    return 2
                await ensure_free(store, gb_id)
                offline_after = offline_after or keepalive_silence(settings.gb28181)
            elif args.rtp_transport is not None:
                print("--rtp-transport is for GB/T 28181 devices: give --gb-device-id too", file=sys.stderr)
                return 2
            secret = new_device_secret()
            unit = await store.add_unit(
                unit_id=UnitId(args.id),
                name=args.name,
                kind=UnitKind(args.kind),
                court_id=CourtId(args.court),
                secret_hash=lookup_hash(secret),
                offline_after_seconds=offline_after,
            )
            print(f"unit {unit.id} registered; device secret (shown once): {secret}")
            if gb_id is not None:
                password = await enrol(store, unit.id, gb_id, settings.gb28181, rtp_transport=args.rtp_transport)
                transport = args.rtp_transport or f"{settings.gb28181.rtp_transport} (the setting)"
                print(f"GB/T 28181 device {gb_id}: SIP password (shown once): {password}")
                print(f"GB/T 28181 device {gb_id}: RTP over {transport}")
            return 0

        return asyncio.run(_with_store(settings, device_add))

    if args.command == "device" and args.action == "revoke":

        async def device_revoke(store: Store) -> int:
            await store.revoke_unit(UnitId(args.id))
            print(f"unit {args.id}: device secret revoked")
            revocation = Revocation(Subject.UNIT, args.id, "revoked")
            try:
                told = await tell_servers(settings.bus, revocation)
            except Exception as exc:  # the revocation is stored; servers find it at their next recheck
                print(f"running servers not told ({exc}); they notice within {settings.auth.recheck_seconds:g} s")
                return 0
            if told:
                print("running servers told: its sockets and media session end now")
            else:
                print(f"a running server notices within {settings.auth.recheck_seconds:g} s (in-process bus)")
            return 0

        return asyncio.run(_with_store(settings, device_revoke))
    if args.command == "system-client":
        return asyncio.run(_with_store(settings, lambda store: system_client_command(store, args)))
    if args.command == "case" and args.action == "import":
        return asyncio.run(_with_store(settings, lambda store: import_cases(store, args.file)))
    if args.command == "audit" and args.action == "verify":
        return asyncio.run(_with_store(settings, lambda store: _audit_verify(store, settings, args)))
    if args.command == "audit" and args.action == "key":
        print(public_key_hex(load_or_create_key(settings.data_dir)))
        return 0
    if args.command == "audit" and args.action == "checkpoint":

        async def audit_checkpoint(store: Store) -> int:
            key = load_or_create_key(settings.data_dir)
            try:
                made = await make_checkpoint(store, key, settings.audit.signer, now_ms=int(time.time() * 1000))
            except WillNotSign as exc:
                print(f"not signing: {exc}", file=sys.stderr)
                return 1
            stored = await store.audit_checkpoints()
            if not stored:
                print("audit log empty: nothing to sign")
                return 0
            newest = stored[-1]
            print(f"checkpoint {'signed' if made else 'unchanged'} at entry {newest.seq}, head {newest.head}")
            failures = await deliver(settings.audit, newest, None)
            for failure in failures:
                print(f"witness: {failure}", file=sys.stderr)
            return 1 if failures else 0

        return asyncio.run(_with_store(settings, audit_checkpoint))
    if args.command == "audit" and args.action == "witness-export":

        async def witness_export(store: Store) -> int:
            sys.stdout.write(checkpoints_as_lines(await store.witnessed_checkpoints(args.court)))
            return 0

        return asyncio.run(_with_store(settings, witness_export))
    if args.command == "recording" and args.action == "verify":

        async def recording_verify(store: Store) -> int:
            chain = await verify_audit(store)
            if not chain.ok:
                print(f"audit log TAMPERED at entry {chain.bad_seq}: {chain.problem}", file=sys.stderr)
                return 1
            audited = [e.details for e in await store.audit_entries(limit=1_000_000) if e.action == SEGMENT_ACTION]
            root = settings.data_dir / "recordings"
            report = await asyncio.to_thread(check_recordings, audited, root, session=args.session, unit=args.unit)
            for problem in report.problems:
                print(f"recording: {problem}", file=sys.stderr)
            if report.ok:
                print(f"recordings intact: {report.checked} segments match the audit chain (head {chain.head})")
                return 0
            return 1

        return asyncio.run(_with_store(settings, recording_verify))
    raise AssertionError(f"unhandled command {args.command}")
