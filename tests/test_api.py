"""The API as a client meets it: login and sessions, the directory, court scoping, and bad input."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from command_center.keys import SETTINGS
from config.settings import ServerSettings
from persistence.migrations import load_migrations
from tests.conftest import AppFactory, World


async def _json(response: Any) -> Any:
    assert response.content_type == "application/json", await response.text()
    return await response.json()


async def test_health_reports_store_and_bus(world: World) -> None:
    """Anyone may ask whether the server is up, and learns only that; the staff see what it runs on."""
    public = await world.client.get("/api/health")
    assert public.status == 200 and await _json(public) == {"status": "ok"}
    forged = await world.client.get("/api/health", headers={"Authorization": "Bearer forged"})
    assert forged.status == 200 and await _json(forged) == {"status": "ok"}
    anonymous = await world.client.get("/api/health/details")
    assert anonymous.status == 401
    response = await world.client.get("/api/health/details", headers=world.auth("operator"))
    body = await _json(response)
    assert response.status == 200
    assert body["status"] == "ok"
    shipped = [m.version for m in load_migrations("sqlite")]
    assert body["store"]["ok"] and body["store"]["dialect"] == "sqlite" and body["store"]["migrations"] == shipped
    assert shipped[:4] == [1, 2, 3, 4]
    assert body["bus"] == {"ok": True, "adapter": "memory", "topics": 0}


async def test_login_logout_and_revocation(world: World) -> None:
    bad = await world.client.post("/api/auth/login", json={"username": "judge", "password": "wrong password"})
    assert bad.status == 401 and (await _json(bad))["error"]["code"] == "unauthenticated"
    assert "WWW-Authenticate" in bad.headers
    unknown = await world.client.post("/api/auth/login", json={"username": "ghost", "password": "whatever it is"})
    assert unknown.status == 401
    assert (await _json(unknown))["error"]["message"] == (await _json(bad))["error"]["message"]

    token = await world.login("judge")
    headers = {"Authorization": f"Bearer {token}"}
    me = await _json(await world.client.get("/api/me", headers=headers))
    assert me["kind"] == "user" and me["user"]["role"] == "judge" and me["court_id"] == "HLJ01"
    assert "password_hash" not in me["user"]
    assert (await world.client.post("/api/auth/logout", headers=headers)).status == 204
    after = await world.client.get("/api/me", headers=headers)
    assert after.status == 401 and "revoked" in (await _json(after))["error"]["message"]


async def test_expired_session_is_refused(make_world: AppFactory) -> None:
    world = await make_world(session_ttl_seconds=60)
    token = await world.login("operator")
    await world.store.database.execute("UPDATE sessions SET expires_at = expires_at - 120")  # type: ignore[attr-defined]
    response = await world.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert (await _json(response))["error"]["code"] == "token_expired"


async def test_admin_revokes_all_sessions_of_a_user(world: World) -> None:
    operator = await world.store.find_user("operator")
    assert operator is not None
    response = await world.client.post(f"/api/users/{operator.id}/revoke-sessions", headers=world.auth("admin"))
    assert (await _json(response)) == {"revoked": 1}
    assert (await world.client.get("/api/me", headers=world.auth("operator"))).status == 401


async def test_device_registration_shows_the_secret_once_and_it_authenticates(world: World) -> None:
    created = await world.client.post(
        "/api/units",
        headers=world.auth("admin"),
        json={"id": "HLJ0103-U07", "name": "南岗七号", "kind": "vehicle", "court_id": "HLJ0103"},
    )
    assert created.status == 201
    body = await _json(created)
    secret = body["secret"]
    assert secret.startswith("cc_d_") and body["unit"]["court_id"] == "HLJ0103"
    listed = await _json(await world.client.get("/api/units", headers=world.auth("admin")))
    assert "secret" not in str(listed) and "cc_d_" not in str(listed)
    me = await _json(await world.client.get("/api/me", headers={"Authorization": f"Bearer {secret}"}))
    assert me == {
        "kind": "device",
        "access": "device",
        "court_id": "HLJ0103",
        "user": None,
        "unit_id": "HLJ0103-U07",
        "oversees_every_court": False,
    }
    duplicate = await world.client.post(
        "/api/units",
        headers=world.auth("admin"),
        json={"id": "HLJ0103-U07", "name": "again", "kind": "vehicle", "court_id": "HLJ0103"},
    )
    assert duplicate.status == 409
    revoked = await world.client.post("/api/units/HLJ0103-U07/revoke", headers=world.auth("admin"))
    assert (await _json(revoked))["revoked"] is True
    after = await world.client.get("/api/me", headers={"Authorization": f"Bearer {secret}"})
    assert after.status == 401 and "revoked" in (await _json(after))["error"]["message"]


async def test_units_are_scoped_to_the_court_tree(world: World) -> None:
    """上下一体: the intermediate court's supervisor sees the basic court's unit; another court's does not."""
    supervisor = await _json(await world.client.get("/api/units", headers=world.auth("supervisor")))
    assert [u["id"] for u in supervisor["units"]] == ["HLJ0102-U01"]
    judge = await _json(await world.client.get("/api/units", headers=world.auth("judge")))
    assert judge["units"] == []  # judges see their own court only (HLJ01, not the basic court below)
    await world.add_user("heihe", world_role("supervisor"), "HLJ11")
    token = await world.login("heihe")
    heihe = await _json(await world.client.get("/api/units", headers={"Authorization": f"Bearer {token}"}))
    assert heihe["units"] == []
    one = await world.client.get("/api/units/HLJ0102-U01", headers={"Authorization": f"Bearer {token}"})
    assert one.status == 403 and "jurisdiction" in (await _json(one))["error"]["message"]
    users = await _json(await world.client.get("/api/users", headers={"Authorization": f"Bearer {token}"}))
    assert [u["username"] for u in users["users"]] == ["heihe"]


def world_role(name: str) -> Any:
    from persistence.models import Role

    return Role(name)


async def test_admin_creates_a_user_who_can_log_in(world: World) -> None:
    response = await world.client.post(
        "/api/users",
        headers=world.auth("admin"),
        json={
            "username": "zhao",
            "display_name": "赵法官",
            "role": "judge",
            "court_id": "HLJ0102",
            "password": "a long enough pass",
        },
    )
    assert response.status == 201
    user = await _json(response)
    assert user["display_name"] == "赵法官" and "password" not in str(user)
    stored = await world.store.find_user("zhao")
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    login = await world.client.post("/api/auth/login", json={"username": "zhao", "password": "a long enough pass"})
    assert login.status == 200


async def test_court_hierarchy_edits(world: World) -> None:
    put = await world.client.put(
        "/api/courts/HLJ0110",
        headers=world.auth("admin"),
        json={"id": "HLJ0110", "name": "哈尔滨市香坊区人民法院", "level": "basic", "parent_id": "HLJ01"},
    )
    assert put.status == 200
    courts = await _json(await world.client.get("/api/courts", headers=world.auth("operator")))
    assert {
        "id": "HLJ0110",
        "name": "哈尔滨市香坊区人民法院",
        "level": "basic",
        "parent_id": "HLJ01",
    } in courts["courts"]
    cycle = await world.client.put(
        "/api/courts/HLJ01",
        headers=world.auth("admin"),
        json={"id": "HLJ01", "name": "哈尔滨中院", "level": "intermediate", "parent_id": "HLJ0110"},
    )
    assert cycle.status == 409
    orphan = await world.client.put(
        "/api/courts/X1",
        headers=world.auth("admin"),
        json={"id": "X1", "name": "x", "level": "basic", "parent_id": "NOPE"},
    )
    assert orphan.status == 404
    mismatch = await world.client.put(
        "/api/courts/X2", headers=world.auth("admin"), json={"id": "X3", "name": "x", "level": "basic"}
    )
    assert mismatch.status == 409


async def test_openapi_document_lists_every_route(world: World) -> None:
    from command_center.api.routes import all_endpoints

    doc = await _json(await world.client.get("/api/openapi.json", headers=world.auth("operator")))
    assert doc["openapi"] == "3.1.0"
    for endpoint in all_endpoints():
        operation = doc["paths"][endpoint.path][endpoint.method.lower()]
        assert operation["summary"] == endpoint.summary
        if endpoint.access is not None:
            assert operation["x-roles"] == sorted(endpoint.access)
            assert "401" in operation["responses"] and "403" in operation["responses"]
        if endpoint.body is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[-1] in doc["components"]["schemas"]


# Bad input ------------------------------------------------------------------------------------------

BAD_BODIES = [
    pytest.param(b"{not json", "application/json", 400, "invalid_json", id="malformed-json"),
    pytest.param(b"\xff\xfe", "application/json", 400, "invalid_json", id="not-utf8"),
    pytest.param(b"[]", "application/json", 422, "validation_failed", id="wrong-top-level-type"),
    pytest.param(b'{"id": "U9"}', "application/json", 422, "validation_failed", id="missing-fields"),
    pytest.param(
        b'{"id": 5, "name": [], "kind": "tank", "court_id": "HLJ01"}',
        "application/json",
        422,
        "validation_failed",
        id="wrong-types",
    ),
    pytest.param(
        b'{"id": "U9", "name": "n", "kind": "vehicle", "court_id": "HLJ01", "extra": 1}',
        "application/json",
        422,
        "validation_failed",
        id="unknown-field",
    ),
    pytest.param(
        b'{"id": "bad id/with slash", "name": "n", "kind": "vehicle", "court_id": "HLJ01"}',
        "application/json",
        422,
        "validation_failed",
        id="bad-identifier",
    ),
    pytest.param(b"id=U9", "application/x-www-form-urlencoded", 415, "unsupported_media_type", id="form-body"),
]


@pytest.mark.parametrize(("raw", "content_type", "status", "code"), BAD_BODIES)
async def test_bad_bodies_get_a_precise_4xx(
    world: World, raw: bytes, content_type: str, status: int, code: str
) -> None:
    headers = {**world.auth("admin"), "Content-Type": content_type}
    response = await world.client.post("/api/units", data=raw, headers=headers)
    body = await _json(response)
    assert response.status == status, body
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in str(body)


async def test_validation_errors_name_the_fields(world: World) -> None:
    response = await world.client.post("/api/units", json={"id": "U9", "kind": "tank"}, headers=world.auth("admin"))
    body = await _json(response)
    fields = {d["field"] for d in body["error"]["details"]}
    assert {"name", "kind", "court_id"} <= fields


async def test_oversize_body_is_refused(world: World) -> None:
    limit = world.client.app[SETTINGS].server.max_body_bytes
    payload = b'{"username": "' + b"x" * (limit + 10) + b'", "password": "p"}'
    response = await world.client.post("/api/auth/login", data=payload, headers={"Content-Type": "application/json"})
    body = await _json(response)
    assert response.status == 413 and body["error"]["code"] == "payload_too_large"


async def test_unknown_route_and_wrong_method(world: World) -> None:
    missing = await world.client.get("/api/no-such-thing")
    assert missing.status == 404 and (await _json(missing))["error"]["code"] == "not_found"
    wrong = await world.client.delete("/api/health")
    assert wrong.status == 405 and (await _json(wrong))["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]


async def test_pages_are_served_with_security_headers(world: World) -> None:
    page = await world.client.get("/")
    text = await page.text()
    assert page.status == 200 and "执行指挥中心" in text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    script = await world.client.get("/static/app.js")
    assert script.status == 200
    traversal = await world.client.get("/static/../app.py")
    assert traversal.status == 404
    assert "img-src 'self' data: blob:;" in page.headers["Content-Security-Policy"]  # no other image origin


async def test_a_courts_tile_server_is_the_one_other_image_origin(make_world: AppFactory) -> None:
    from config.settings import MapSettings

    world = await make_world(maps=MapSettings(tile_url="https://tiles.court.example:8443/{z}/{x}/{y}.png"))
    policy = (await world.client.get("/wall")).headers["Content-Security-Policy"]
    assert "img-src 'self' data: blob: https://tiles.court.example:8443;" in policy
    assert "script-src" not in policy and "default-src 'self';" in policy  # scripts still from this server only


@pytest.mark.postgres
@pytest.mark.redis
async def test_production_adapters_end_to_end(make_world: AppFactory, pg_schema: str, redis_namespace: str) -> None:
    """The same app on real PostgreSQL and Redis: health, login and the directory."""
    from config.settings import BusSettings, StoreSettings
    from tests.conftest import POSTGRES_DSN, REDIS_URL

    world = await make_world(
        store=StoreSettings(url=POSTGRES_DSN),
        bus=BusSettings(url=REDIS_URL, namespace=redis_namespace),
        schema=pg_schema,
    )
    health = await _json(await world.client.get("/api/health/details", headers=world.auth("admin")))
    assert health["status"] == "ok" and health["store"]["dialect"] == "postgres" and health["bus"]["adapter"] == "redis"
    units = await _json(await world.client.get("/api/units", headers=world.auth("supervisor")))
    assert [u["id"] for u in units["units"]] == ["HLJ0102-U01"]


def test_throttle_locks_after_free_attempts_and_doubles() -> None:
    from command_center.throttle import Throttle

    throttle = Throttle(free_attempts=3)
    for _ in range(2):
        throttle.failed("zhang", 100.0)
    assert throttle.wait_seconds("zhang", 100.0) == 0
    throttle.failed("zhang", 100.0)
    assert throttle.wait_seconds("zhang", 100.0) == 30
    throttle.failed("zhang", 131.0)
    assert throttle.wait_seconds("zhang", 131.0) == 60
    throttle.succeeded("zhang")
    assert throttle.wait_seconds("zhang", 131.0) == 0
    throttle.failed("li", 0.0)
    throttle.failed("li", 5000.0)  # an hour later the count starts afresh
    assert throttle.wait_seconds("li", 5000.0) == 0


async def test_repeated_failed_logins_are_throttled(world: World) -> None:
    for _ in range(5):
        bad = await world.client.post("/api/auth/login", json={"username": "judge", "password": "wrong guess!"})
        assert bad.status == 401
    locked = await world.client.post(
        "/api/auth/login", json={"username": "JUDGE", "password": world.passwords["judge"]}
    )
    body = await _json(locked)
    assert locked.status == 429 and body["error"]["code"] == "too_many_requests"
    assert "try again in" in body["error"]["message"]
    other = await world.client.post(
        "/api/auth/login", json={"username": "operator", "password": world.passwords["operator"]}
    )
    assert other.status == 200  # the address is not locked by one user's failures


@pytest.mark.parametrize("trusted", [True, False])
async def test_behind_a_trusted_proxy_the_client_address_is_the_one_it_forwards(
    make_world: AppFactory, trusted: bool
) -> None:
    """nginx adds the client's address to X-Forwarded-For; only a configured proxy is believed (a client
    talking to the app directly could otherwise name any address and never be throttled by address)."""
    world = await make_world(server=ServerSettings(trusted_proxies=["127.0.0.1"] if trusted else []))
    for n in range(20):  # one machine spraying usernames: its address gets locked
        bad = await world.client.post("/api/auth/login", json={"username": f"guess{n}", "password": "wrong guess!"},
                                      headers={"X-Forwarded-For": "203.0.113.9, 10.9.0.7"})  # fmt: skip
        assert bad.status == 401
    sprayer = await world.client.post("/api/auth/login", json={"username": "judge", "password": "x" * 12},
                                      headers={"X-Forwarded-For": "10.9.0.7"})  # fmt: skip
    assert sprayer.status == 429
    mine = {"username": "operator", "password": world.passwords["operator"]}
    colleague = await world.client.post("/api/auth/login", json=mine, headers={"X-Forwarded-For": "10.9.0.8"})
    assert colleague.status == (200 if trusted else 429)  # another console behind the same proxy


async def test_another_origin_gets_no_cors_and_cannot_open_a_socket(world: World) -> None:
    """The API sends no CORS headers (pages are served by the app itself), so a page on another origin cannot
    read an answer; a browser socket from another origin is refused; the app's own pages may open one."""
    evil = {"Origin": "http://evil.example"}
    preflight = await world.client.options("/api/units", headers={**evil, "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    read = await world.client.get("/api/units", headers={**evil, **world.auth("operator")})
    assert "Access-Control-Allow-Origin" not in read.headers
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await world.client.ws_connect(f"/api/screen/ws?ticket={await world.ticket('operator')}", headers=evil)
    assert refused.value.status == 403
    own = f"http://{world.client.host}:{world.client.port}"
    ws = await world.client.ws_connect(
        f"/api/screen/ws?ticket={await world.ticket('operator')}", headers={"Origin": own}
    )
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json(timeout=5))["type"] == "pong"
    await ws.close()


async def test_a_password_longer_than_the_estimator_takes_is_judged_not_a_server_error(world: World) -> None:
    """zxcvbn refuses input over 72 characters (schemathesis found the 500): a long passphrase is judged by its
    first 72 characters, so a strong one is taken and a long run of one character is refused with the reason."""
    user = {"display_name": "钱法官", "role": "judge", "court_id": "HLJ0102"}
    strong = "宽严相济 correct horse battery staple 执行到位 " * 6  # 228 characters
    taken = await world.client.post("/api/users", headers=world.auth("admin"),
                                    json={**user, "username": "qian", "password": strong})  # fmt: skip
    assert taken.status == 201, await taken.text()
    login = await world.client.post("/api/auth/login", json={"username": "qian", "password": strong})
    assert login.status == 200
    weak = await world.client.post("/api/users", headers=world.auth("admin"),
                                   json={**user, "username": "sun", "password": "0" * 256})  # fmt: skip
    assert weak.status == 422
    assert "in its first 72 characters" in (await _json(weak))["error"]["message"]
