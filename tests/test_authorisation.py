"""Every route × every kind of caller: the declared roles are the ones the running server enforces.

The table below is the authorisation policy in one readable place; the registry must match it, and
the live server must answer 401 without a valid token and 403 for a role outside the row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from command_center.api.routes import all_endpoints
from command_center.credentials import lookup_hash, new_session_token, new_system_secret
from core.ids import CourtId, UserId
from tests.conftest import World

OP, J, S, A, D = "operator", "judge", "supervisor", "admin", "device"
SY = "system"  # the case-management system's client: the integration route, nothing else
SC = "scraper"  # Prometheus with the configured metrics token: /metrics, nothing else (test_metrics)
PEOPLE = {OP, J, S, A}
PUBLIC: set[str] = set()  # marker: no token needed

POLICY: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/health"): PUBLIC,
    ("GET", "/api/health/details"): {OP, S, A},
    ("GET", "/api/openapi.json"): PEOPLE | {D},
    ("POST", "/api/auth/login"): PUBLIC,
    ("POST", "/api/auth/logout"): PEOPLE,
    ("GET", "/api/me"): PEOPLE | {D},
    ("GET", "/api/courts"): PEOPLE,
    ("PUT", "/api/courts/{court_id}"): {A},
    ("GET", "/api/users"): {S, A},
    ("POST", "/api/users"): {A},
    ("POST", "/api/users/{user_id}/revoke-sessions"): {A},
    ("GET", "/api/units"): PEOPLE,
    ("GET", "/api/units/{unit_id}"): PEOPLE,
    ("POST", "/api/units"): {A},
    ("POST", "/api/units/{unit_id}/revoke"): {A},
    ("GET", "/api/units/{unit_id}/gb28181"): PEOPLE,
    ("PATCH", "/api/units/{unit_id}/gb28181"): {A},
    ("GET", "/api/map/config"): PEOPLE,
    ("GET", "/api/map/tiles/{z}/{x}/{y}"): PEOPLE,
    ("GET", "/api/telemetry/ws"): {D},
    ("POST", "/api/telemetry/batch"): {D},
    ("GET", "/api/units/{unit_id}/live"): {OP, S, A},
    ("POST", "/api/units/{unit_id}/duty"): {OP, S, A},
    ("POST", "/api/units/{unit_id}/clear-sos"): {OP, S, A},
    ("GET", "/api/alarms"): {OP, S, A},
    ("POST", "/api/alarms/{alarm_id}/acknowledge"): {OP, S, A},
    ("POST", "/api/alarms/{alarm_id}/resolve"): {OP, S, A},
    ("POST", "/api/alarms/{alarm_id}/false-alarm"): {OP, S, A},
    ("POST", "/api/units/{unit_id}/tasks"): {OP, S, A},
    ("GET", "/api/units/{unit_id}/tasks"): {OP, S, A},
    ("GET", "/api/tasks"): {OP, S, A},
    ("POST", "/api/tasks/{task_id}/cancel"): {OP, S, A},
    ("GET", "/api/duty"): {OP, S, A},
    ("PUT", "/api/duty/{court_id}/{day}"): {S, A},
    ("POST", "/api/duty/sign-in"): {OP, S, A},
    ("POST", "/api/duty/notes"): {OP, S, A},
    ("GET", "/api/duty/log"): {OP, S, A},
    ("GET", "/api/stats"): {OP, S, A},
    ("POST", "/api/operations"): {OP, S, A},
    ("GET", "/api/operations"): {OP, S, A},
    ("GET", "/api/operations/{operation_id}"): {OP, S, A},
    ("PUT", "/api/operations/{operation_id}/units"): {OP, S, A},
    ("POST", "/api/operations/{operation_id}/start"): {OP, S, A},
    ("POST", "/api/operations/{operation_id}/conclude"): {OP, S, A},
    ("POST", "/api/operations/{operation_id}/cancel"): {OP, S, A},
    ("POST", "/api/operations/{operation_id}/events"): {OP, S, A},
    ("POST", "/api/entrustments"): {OP, S, A},
    ("GET", "/api/entrustments"): {OP, S, A},
    ("GET", "/api/entrustments/{entrustment_id}"): {OP, S, A},
    ("POST", "/api/entrustments/{entrustment_id}/accept"): {OP, S, A},
    ("POST", "/api/entrustments/{entrustment_id}/refuse"): {OP, S, A},
    ("POST", "/api/entrustments/{entrustment_id}/complete"): {OP, S, A},
    ("POST", "/api/entrustments/{entrustment_id}/withdraw"): {OP, S, A},
    ("PUT", "/api/entrustments/{entrustment_id}/units"): {OP, S, A},
    ("GET", "/api/entrustments/{entrustment_id}/units"): {OP, S, A},
    ("POST", "/api/entrustments/{entrustment_id}/reports"): {OP, S, A},
    ("POST", "/api/rooms"): {OP, S, A},
    ("GET", "/api/rooms"): {OP, S, A},
    ("GET", "/api/rooms/candidates"): {OP, S, A},
    ("GET", "/api/rooms/{room_id}"): {OP, S, A},
    ("POST", "/api/rooms/{room_id}/invite"): {OP, S, A},
    ("POST", "/api/rooms/{room_id}/join"): {OP, S, A},
    ("POST", "/api/rooms/{room_id}/leave"): {OP, S, A},
    ("POST", "/api/rooms/{room_id}/mute"): {OP, S, A},
    ("POST", "/api/rooms/{room_id}/close"): {OP, S, A},
    ("POST", "/api/rooms/{room_id}/media/publish"): {OP, S, A},
    ("OPTIONS", "/api/rooms/{room_id}/media/publish"): PUBLIC,
    ("POST", "/api/rooms/{room_id}/media/participants/{user_id}/view"): {OP, S, A},
    ("OPTIONS", "/api/rooms/{room_id}/media/participants/{user_id}/view"): PUBLIC,
    ("PATCH", "/api/rooms/{room_id}/media/sessions/{session_id}"): {OP, S, A},
    ("DELETE", "/api/rooms/{room_id}/media/sessions/{session_id}"): {OP, S, A},
    ("OPTIONS", "/api/rooms/{room_id}/media/sessions/{session_id}"): PUBLIC,
    ("POST", "/api/rooms/{room_id}/recording"): {OP, S, A},
    ("POST", "/api/geofences"): {OP, S, A},
    ("POST", "/api/geofences/import"): {OP, S, A},
    ("GET", "/api/geofences"): {OP, S, A},
    ("DELETE", "/api/geofences/{fence_id}"): {OP, S, A},
    ("GET", "/api/dispatch/nearest"): {OP, S, A},
    ("GET", "/api/reports/operations/{operation_id}"): {OP, S, A},
    ("GET", "/api/reports/units"): {OP, S, A},
    ("GET", "/api/reports/cases/{case_id}"): {J, S, A},
    ("GET", "/api/units/{unit_id}/track"): PEOPLE,
    ("GET", "/api/screen/ws"): PEOPLE,
    ("POST", "/api/cases"): {S, A},
    ("GET", "/api/cases"): {J, S, A},
    ("GET", "/api/cases/{case_id}"): {J, S, A},
    ("PUT", "/api/cases/{case_id}/judges"): {S, A},
    ("POST", "/api/cases/{case_id}/parties"): {J, S},
    ("POST", "/api/system-clients"): {A},
    ("GET", "/api/system-clients"): {A},
    ("POST", "/api/system-clients/{client_id}/revoke"): {A},
    ("POST", "/api/integration/cases"): {SY},
    ("GET", "/api/party-proposals"): {J, S},
    ("POST", "/api/party-proposals/{proposal_id}/approve"): {S},
    ("POST", "/api/party-proposals/{proposal_id}/reject"): {S},
    ("POST", "/api/queries"): {J},
    ("GET", "/api/queries"): {J, S},
    ("GET", "/api/queries/{query_id}"): {J, S},
    ("POST", "/api/followups"): {J},
    ("POST", "/api/followups/{followup_id}/approve"): {S},
    ("POST", "/api/followups/{followup_id}/reject"): {S},
    ("GET", "/api/followups"): {J, S},
    ("GET", "/api/agencies"): PEOPLE,
    ("POST", "/api/whip"): {D},
    ("OPTIONS", "/api/whip"): PUBLIC,  # CORS preflight and Accept-Post (RFC 9725 §4.2): carries no credential
    ("PATCH", "/api/whip/{session_id}"): {D},
    ("DELETE", "/api/whip/{session_id}"): {D},
    ("OPTIONS", "/api/whip/{session_id}"): PUBLIC,
    ("POST", "/api/whep/{unit_id}"): {OP, S, A},
    ("OPTIONS", "/api/whep/{unit_id}"): PUBLIC,
    ("PATCH", "/api/whep/{unit_id}/{session_id}"): {OP, S, A},
    ("DELETE", "/api/whep/{unit_id}/{session_id}"): {OP, S, A},
    ("OPTIONS", "/api/whep/{unit_id}/{session_id}"): PUBLIC,
    ("POST", "/api/talk/{unit_id}"): {OP, S, A},
    ("PATCH", "/api/talk/{unit_id}/{session_id}"): {OP, S, A},
    ("GET", "/api/media/streaming"): {OP, S, A},
    ("POST", "/api/units/{unit_id}/recording"): {OP, S, A},
    ("DELETE", "/api/units/{unit_id}/recording"): {OP, S, A},
    ("GET", "/api/units/{unit_id}/recordings"): {OP, S, A},
    ("DELETE", "/api/talk/{unit_id}/{session_id}"): {OP, S, A},
    ("POST", "/api/audit/witness"): PUBLIC,  # no token: signed by the lower court's pinned key (test_audit_witness)
    ("POST", "/api/auth/ticket"): PEOPLE | {D},
    ("POST", "/api/users/{user_id}/disable"): {A},
    ("POST", "/api/users/{user_id}/enable"): {A},
    ("POST", "/api/auth/password"): PEOPLE,
    ("POST", "/api/users/{user_id}/unlock"): {A},
    ("GET", "/metrics"): {A, SC},
    ("GET", "/api/ops/overview"): {S, A},
    ("POST", "/api/ops/verify-recordings"): {S, A},
    ("OPTIONS", "/api/talk/{unit_id}"): PUBLIC,  # as WHEP's: the talkback resource's Accept-Post and preflight
    ("OPTIONS", "/api/talk/{unit_id}/{session_id}"): PUBLIC,
}
PUBLIC_ROUTES = {("GET", "/api/health"), ("POST", "/api/auth/login")}
PUBLIC_ROUTES.add(("POST", "/api/audit/witness"))
PUBLIC_ROUTES |= {("OPTIONS", "/api/whip"), ("OPTIONS", "/api/whip/{session_id}"), ("OPTIONS", "/api/whep/{unit_id}"),
                  ("OPTIONS", "/api/whep/{unit_id}/{session_id}"), ("OPTIONS", "/api/talk/{unit_id}"),
                  ("OPTIONS", "/api/talk/{unit_id}/{session_id}")}  # fmt: skip
PUBLIC_ROUTES |= {("OPTIONS", "/api/rooms/{room_id}/media/publish"),
                  ("OPTIONS", "/api/rooms/{room_id}/media/participants/{user_id}/view"),
                  ("OPTIONS", "/api/rooms/{room_id}/media/sessions/{session_id}")}  # fmt: skip

#: Path parameters name records that do not exist, so an admitted call changes nothing.
SAMPLE_PARAMS = {
    "{court_id}": "NO-SUCH-COURT",
    "{user_id}": "999999",
    "{unit_id}": "NO-SUCH-UNIT",
    "{case_id}": "999999",
    "{query_id}": "no-such-query",
    "{followup_id}": "no-such-followup",
    "{session_id}": "no-such-session",
    "{alarm_id}": "999999",
    "{task_id}": "no-such-task",
    "{day}": "2026-11-22",
    "{operation_id}": "no-such-operation",
    "{entrustment_id}": "no-such-entrustment",
    "{room_id}": "no-such-room",
    "{fence_id}": "no-such-fence",
    "{client_id}": "999999",
    "{proposal_id}": "999999",
    "{z}": "16",
    "{x}": "55000",
    "{y}": "23000",
}


def _path(template: str) -> str:
    for name, value in SAMPLE_PARAMS.items():
        template = template.replace(name, value)
    return template


def test_registry_matches_the_policy_table() -> None:
    declared = {}
    for endpoint in all_endpoints():
        declared[(endpoint.method, endpoint.path)] = (
            set() if endpoint.access is None else {a.value for a in endpoint.access}
        )
    assert declared == POLICY
    assert {k for k in POLICY if not POLICY[k]} == PUBLIC_ROUTES


async def _bad_tokens(world: World) -> dict[str, dict[str, str]]:
    """Headers that must all be refused with 401."""
    operator = await world.store.find_user("operator")
    assert operator is not None
    expired = new_session_token()
    await world.store.add_session(
        token_hash=lookup_hash(expired),
        user_id=UserId(operator.id),
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    revoked = new_session_token()
    await world.store.add_session(
        token_hash=lookup_hash(revoked),
        user_id=UserId(operator.id),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    await world.store.revoke_session(lookup_hash(revoked))
    revoked_system = await _system_token(world, "revoked-system")
    client = await world.store.find_system_client_by_name("revoked-system")
    assert client is not None
    await world.store.revoke_system_client(client.id, 1)
    return {
        "revoked-system": {"Authorization": f"Bearer {revoked_system}"},
        "unknown-system": {"Authorization": "Bearer cc_y_not-a-real-secret"},
        "none": {},
        "expired": {"Authorization": f"Bearer {expired}"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
        "garbage": {"Authorization": "Bearer cc_s_not-a-real-token"},
        "unknown-device": {"Authorization": "Bearer cc_d_not-a-real-secret"},
        "wrong-scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    }


#: Routes a role is admitted to only for some courts, where this world's caller of that role (at HLJ01, an
#: intermediate court) is outside the scope: the refusal it must get says why.
SCOPED: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/api/ops/overview"): {S: "supervisors who oversee every court"},  # process-wide figures
    ("POST", "/api/ops/verify-recordings"): {S: "supervisors who oversee every court"},  # every court's files
}


async def test_every_route_refuses_missing_or_bad_tokens(world: World) -> None:
    bad = await _bad_tokens(world)
    for (method, template), allowed in POLICY.items():
        if not allowed:
            continue
        for label, headers in bad.items():
            response = await world.client.request(method, _path(template), headers=headers, json={})
            body = await response.json()
            assert response.status == 401, f"{method} {template} with {label} token: {response.status}"
            assert body["error"]["code"] in ("unauthenticated", "token_expired"), body
            if label == "expired":
                assert body["error"]["code"] == "token_expired"


async def _system_token(world: World, name: str) -> str:
    """A case-management system's credential of the world's court (made in the store, as the CLI does)."""
    secret = new_system_secret()
    await world.store.add_system_client(
        name=name, court_id=CourtId("HLJ01"), secret_hash=lookup_hash(secret), created_ms=0
    )
    return secret


@pytest.mark.parametrize("role", [OP, J, S, A, D, SY])
async def test_every_route_admits_exactly_its_roles(world: World, role: str) -> None:
    if role == SY:
        world.tokens[SY] = await _system_token(world, "立案系统")
    # Logging out ends the caller's own session, so it runs last.
    routes = sorted(POLICY.items(), key=lambda item: item[0][1] == "/api/auth/logout")
    for (method, template), allowed in routes:
        response = await world.client.request(method, _path(template), headers=world.auth(role), json={})
        if role in SCOPED.get((method, template), {}):
            assert response.status == 403, f"{role} admitted on {method} {template} outside its scope"
            assert SCOPED[(method, template)][role] in (await response.json())["error"]["message"]
        elif not allowed or role in allowed:
            assert response.status not in (401, 403), f"{role} refused on {method} {template}"
        else:
            assert response.status == 403, f"{role} admitted on {method} {template}: {response.status}"
            assert (await response.json())["error"]["code"] == "forbidden"


async def test_no_route_takes_a_credential_or_a_ticket_in_its_url(world: World) -> None:
    """A valid token in ``?token=`` is refused everywhere (with or without a header), and a valid ticket
    opens WebSockets only; both 401 with a message saying what to do instead."""
    for (method, template), allowed in POLICY.items():
        if not allowed:
            continue
        path = _path(template)
        for label, query, headers in (
            ("token in URL", f"token={world.tokens[A]}", {}),
            ("token in URL beside a header", f"token={world.tokens[A]}", world.auth(A)),
            ("ticket on plain HTTP", f"ticket={await world.ticket(A)}", {}),
        ):
            response = await world.client.request(method, f"{path}?{query}", headers=headers, json={})
            body = await response.json()
            assert response.status == 401, f"{method} {template} with {label}: {response.status}"
            assert body["error"]["code"] == "unauthenticated", body
            assert ("?token=" if "token" in label else "WebSocket") in body["error"]["message"], body
