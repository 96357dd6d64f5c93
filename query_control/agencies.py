"""Partner agencies (协助执行单位) as configured in ``config/agencies.toml``.

Each agency has a kind (one adapter per kind speaks to it), an endpoint, credentials, its own timeout,
retry budget, circuit-breaker thresholds and concurrency limit (agencies throttle us), the party kinds it
knows about, the follow-ups it accepts, and the fault profile its simulator plays.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import ValidationFailed
from core.ids import AgencyId
from persistence.query_models import FollowUpAction, PartyKind

DEFAULT_AGENCIES_FILE = Path(__file__).resolve().parent.parent / "config" / "agencies.toml"


class AgencyKind(StrEnum):
    BANK = "bank"  # 银行: deposits
    REAL_ESTATE = "real_estate"  # 不动产登记
    VEHICLE = "vehicle"  # 公安交管: motor vehicles
    MARKET_REGULATOR = "market_regulator"  # 市场监管: business registration, equity
    SECURITIES = "securities"  # 中国结算: securities accounts
    PROVIDENT_FUND = "provident_fund"  # 住房公积金
    SOCIAL_INSURANCE = "social_insurance"  # 社会保险
    TAX = "tax"  # 税务: refunds due
    INSURANCE = "insurance"  # 保险: policies with cash value
    VESSEL = "vessel"  # 海事: ships
    PAYMENT = "payment"  # 网络支付平台: balances


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatorProfile(_Model):
    """How the agency's simulator behaves (``simulators.agencies``)."""

    #: Answer latency: lognormal with this median and shape, plus, with ``tail_probability``, ``tail_ms`` more.
    latency_median_ms: float = Field(80.0, ge=0)
    latency_sigma: float = Field(0.5, ge=0)
    tail_probability: float = Field(0.0, ge=0, le=1)
    tail_ms: float = Field(0.0, ge=0)
    #: Share of requests answered 503 (transient, before any work is done).
    error_rate: float = Field(0.0, ge=0, le=1)
    #: Share of answers garbled (not JSON, or JSON of the wrong shape).
    malformed_rate: float = Field(0.0, ge=0, le=1)
    #: Every request answered 503 while true.
    outage: bool = False
    #: When set, answers trickle out at this many bytes per second (a slow-drip response).
    drip_bytes_per_second: float | None = Field(None, gt=0)
    seed: int = 0


class AgencyConfig(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    name: str
    kind: AgencyKind
    endpoint: str = Field(pattern=r"^https?://")
    #: Bearer credential the agency issued to the court (production: put it in a file readable by the server only).
    api_key: str = Field(min_length=1)
    timeout_seconds: float = Field(10.0, gt=0)
    concurrency: int = Field(4, ge=1)
    retries: int = Field(2, ge=0, le=10)  # extra attempts after the first, for transient errors
    backoff_ms: float = Field(200.0, ge=0)  # first retry waits up to this (full jitter), doubling each time
    breaker_failures: int = Field(5, ge=1)  # consecutive failures that open the circuit
    breaker_reset_seconds: float = Field(30.0, gt=0)  # open this long before one probe is let through
    party_kinds: tuple[PartyKind, ...] = (PartyKind.PERSON, PartyKind.ORGANISATION)
    followups: tuple[FollowUpAction, ...] = ()
    simulator: SimulatorProfile = SimulatorProfile()

    @property
    def agency_id(self) -> AgencyId:
        return AgencyId(self.id)


class AgencyFile(_Model):
    defaults: dict[str, Any] = Field(default_factory=dict)
    agency: list[dict[str, Any]]

    @model_validator(mode="after")
    def _unique(self) -> AgencyFile:
        ids = [a.get("id") for a in self.agency]
        if len(set(ids)) != len(ids):
            raise ValueError("agency ids must be unique")
        return self


def parse_agencies(data: dict[str, Any], *, source: str = "agencies") -> list[AgencyConfig]:
    """Agencies from parsed TOML: each ``[[agency]]`` table over the ``[defaults]`` table."""
    try:
        parsed = AgencyFile.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(f"{source}: {_first(exc)}") from None
    agencies: list[AgencyConfig] = []
    for index, entry in enumerate(parsed.agency):
        try:
            agencies.append(AgencyConfig.model_validate({**parsed.defaults, **entry}))
        except ValidationError as exc:
            raise ValidationFailed(f"{source}: agency[{index}] ({entry.get('id', '?')}): {_first(exc)}") from None
    return agencies


def _first(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def load_agencies(path: Path | None = None) -> list[AgencyConfig]:
    file = path or DEFAULT_AGENCIES_FILE
    return parse_agencies(tomllib.loads(file.read_text(encoding="utf-8")), source=str(file))


def with_endpoints(agencies: list[AgencyConfig], endpoints: dict[str, str]) -> list[AgencyConfig]:
    """The same agencies pointed at other endpoints (a simulator on ephemeral ports)."""
    return [a.model_copy(update={"endpoint": endpoints.get(a.id, a.endpoint)}) for a in agencies]
