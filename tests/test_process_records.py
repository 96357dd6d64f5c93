"""The cluster's list of processes as plain values: leases counted by kind, live or stale by the TTL, a record
read back as written (no event loop, no Redis)."""

from __future__ import annotations

from cluster.processes import ProcessRecord, classify, roles_of


def _record(node: str, **kwargs: object) -> ProcessRecord:
    return ProcessRecord(id=node, host="h", pid=1, started=0.0, url=f"http://{node}", **kwargs)  # type: ignore[arg-type]


def test_leases_are_counted_by_kind_without_their_ids() -> None:
    assert roles_of(["media:HLJ0102-U1", "leader", "query:17", "query:18"]) == {"leader": 1, "media": 1, "query": 2}
    assert roles_of([]) == {}


def test_a_record_is_live_within_the_ttl_and_stale_after_live_ones_first() -> None:
    beats = {"b": (_record("b"), 100.0), "a": (_record("a"), 97.0), "c": (_record("c"), 99.0)}
    views = classify(beats, now=101.0, ttl=2.0)
    assert [(v.record.id, v.live) for v in views] == [("b", True), ("c", True), ("a", False)]
    assert views[2].age_seconds == 4.0 and views[2].as_dict()["state"] == "stale"
    assert classify({"x": (_record("x"), 105.0)}, now=101.0, ttl=2.0)[0].age_seconds == 0.0  # clocks apart


def test_a_record_reads_back_as_written_and_says_whether_it_leads() -> None:
    record = _record("n1", roles={"leader": 1, "query": 2}, units=3, screens=4, media={"unit": 1, "viewer": 2})
    assert ProcessRecord.from_json(record.to_json()) == record
    assert classify({"n1": (record, 1.0)}, 1.0, 1.0)[0].as_dict()["leader"] is True
    assert classify({"n2": (_record("n2"), 1.0)}, 1.0, 1.0)[0].as_dict()["leader"] is False
