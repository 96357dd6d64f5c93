"""Deterministic holdings per (agency, identifier): the same party always owns the same assets at the same
agency, so tests (and a demo) can predict answers. Pure: a seeded ``random.Random`` per call."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from query_control.agencies import AgencyConfig, AgencyKind

_COUNTS = (0, 0, 1, 1, 1, 2, 3)  # how many assets a party holds at one agency


def _rng(agency_id: str, identifier: str, salt: str = "") -> random.Random:
    digest = hashlib.sha256(f"{agency_id}|{identifier}|{salt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _harbin(rng: random.Random) -> dict[str, float]:
    """A point in Harbin's urban districts (WGS-84)."""
    return {"lat": round(rng.uniform(45.68, 45.82), 6), "lon": round(rng.uniform(126.52, 126.72), 6)}


def holdings(agency: AgencyConfig, identifier: str) -> list[dict[str, Any]]:
    """The asset records this agency returns for the party (the wire shape of its kind)."""
    rng = _rng(agency.id, identifier)
    count = rng.choice(_COUNTS)
    return [_record(agency, rng, i) for i in range(count)]


def _record(agency: AgencyConfig, rng: random.Random, i: int) -> dict[str, Any]:
    kind = agency.kind
    cents = rng.randrange(1, 500_000_00)
    if kind is AgencyKind.BANK:
        return {
            "account": f"62{_digits(rng, 17)}",
            "bank": agency.name,
            "branch": f"哈尔滨第{i + 1}支行",
            "currency": "CNY",
            "balance_cents": cents,
        }
    if kind is AgencyKind.REAL_ESTATE:
        return {
            "certificate": f"黑(2020)哈尔滨市不动产权第{_digits(rng, 7)}号",
            "address": f"哈尔滨市道里区某街{i + 1}号",
            "area_m2": round(rng.uniform(40, 200), 2),
            "assessed_value_cents": cents * 20,
            "mortgaged": rng.random() < 0.3,
            "location": _harbin(rng),
        }
    if kind is AgencyKind.VEHICLE:
        return {
            "plate": f"黑A{_digits(rng, 5)}",
            "vin": f"LSV{_digits(rng, 14)}",
            "model": rng.choice(["大众朗逸", "丰田卡罗拉", "比亚迪汉"]),
            "registered": f"20{10 + rng.randrange(15)}-0{1 + rng.randrange(9)}-1{rng.randrange(10)}",
            **({"location": _harbin(rng)} if rng.random() < 0.8 else {}),  # a registered parking place, mostly
        }
    if kind is AgencyKind.MARKET_REGULATOR:
        return {
            "company": f"哈尔滨某某{i + 1}有限公司",
            "company_credit_code": f"9123010{_digits(rng, 10)}X",
            "share_pct": round(rng.uniform(1, 100), 2),
            "subscribed_capital_cents": cents,
        }
    if kind is AgencyKind.SECURITIES:
        return {
            "account": f"A{_digits(rng, 9)}",
            "market_value_cents": cents,
            "holdings": [{"code": _digits(rng, 6), "shares": 100 * rng.randrange(1, 100)}],
        }
    if kind is AgencyKind.PROVIDENT_FUND:
        return {"account": f"GJJ{_digits(rng, 12)}", "balance_cents": cents // 10}
    if kind is AgencyKind.SOCIAL_INSURANCE:
        return {
            "account": f"SB{_digits(rng, 12)}",
            "employer": f"哈尔滨某单位{i + 1}",
            "pension_balance_cents": cents // 5,
        }
    if kind is AgencyKind.TAX:
        return {"taxpayer_id": f"TAX{_digits(rng, 12)}", "refund_due_cents": cents // 100}
    if kind is AgencyKind.INSURANCE:
        return {
            "policy_no": f"P{_digits(rng, 15)}",
            "insurer": rng.choice(["中国人寿", "平安人寿", "太平洋人寿"]),
            "cash_value_cents": cents // 2,
        }
    if kind is AgencyKind.VESSEL:
        return {
            "registration": f"船登(黑){_digits(rng, 8)}",
            "vessel_name": f"龙江{rng.randrange(1, 999)}号",
            "gross_tonnage": rng.randrange(50, 5000),
        }
    return {"account": f"{_digits(rng, 11)}@pay", "platform": agency.name, "balance_cents": cents // 50}
