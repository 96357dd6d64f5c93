"""Dispatch: the nearest available units to a place, closest first with an ETA; busy units are left out."""

from __future__ import annotations

from persistence.models import UnitKind
from tests.conftest import World
from tests.test_live_tracking import fix, send


async def _unit(world: World, unit_id: str, lat: float, lon: float) -> None:
    created = await world.client.post("/api/units", headers=world.auth("admin"),
                                      json={"id": unit_id, "name": unit_id, "kind": UnitKind.HANDHELD.value,
                                            "court_id": "HLJ0102"})  # fmt: skip
    secret = (await created.json())["secret"]
    ws = await world.client.ws_connect("/api/telemetry/ws", headers={"Authorization": f"Bearer {secret}"})
    await send(ws, fix(1, lat=lat, lon=lon))
    await ws.close()


async def test_nearest_available_units_closest_first(world: World) -> None:
    await _unit(world, "HLJ0102-N1", 45.7600, 126.6200)  # ~0 m from the spot
    await _unit(world, "HLJ0102-N2", 45.7700, 126.6200)  # ~1.1 km north
    await _unit(world, "HLJ0102-N3", 45.7800, 126.6200)  # ~2.2 km north, then sent elsewhere
    await world.client.post("/api/units/HLJ0102-N3/duty", json={"duty": "en_route"}, headers=world.auth("operator"))
    response = await world.client.get("/api/dispatch/nearest?lat=45.76&lon=126.62&limit=5",
                                      headers=world.auth("operator"))  # fmt: skip
    body = await response.json()
    assert response.status == 200
    assert [u["unit_id"] for u in body["units"]] == ["HLJ0102-N1", "HLJ0102-N2"]  # N3 is busy; U01 never reported
    assert body["units"][0]["distance_m"] < 1 and 1_100 < body["units"][1]["distance_m"] < 1_125
    assert abs(body["units"][1]["eta_s"] - body["units"][1]["distance_m"] / 8.0) < 0.2  # at the default 8 m/s
    everyone = await (await world.client.get("/api/dispatch/nearest?lat=45.76&lon=126.62&any=true&limit=1",
                                             headers=world.auth("operator"))).json()  # fmt: skip
    assert [u["unit_id"] for u in everyone["units"]] == ["HLJ0102-N1"]
    for query, words in [("lat=91&lon=126", "lat must be a number from -90 to 90"), ("lat=45&lon=x", "lon must be"),
                         ("lat=45&lon=126&limit=0", "limit must be an integer")]:  # fmt: skip
        bad = await world.client.get(f"/api/dispatch/nearest?{query}", headers=world.auth("operator"))
        assert bad.status == 422 and words in (await bad.json())["error"]["message"]
