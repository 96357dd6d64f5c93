"""What each kind of agency answers, and how it becomes an asset: one record model per kind (pure).

The records are validated strictly enough that a garbled answer is caught (``MalformedReply``) and
loosely enough (unknown fields kept in ``details``) that an agency adding a field breaks nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from persistence.query_models import AssetDraft
from query_control.agencies import AgencyKind


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class Deposit(_Record):
    account: str = Field(min_length=1)
    bank: str
    branch: str = ""
    currency: str = "CNY"
    balance_cents: int = Field(ge=0)


class Location(BaseModel):
    """WGS-84, where the agency knows it: the property itself, a vehicle's registered parking place."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class RealEstate(_Record):
    certificate: str = Field(min_length=1)
    address: str
    area_m2: float = Field(gt=0)
    assessed_value_cents: int | None = Field(None, ge=0)
    mortgaged: bool = False
    location: Location | None = None


class Vehicle(_Record):
    plate: str = Field(min_length=1)
    vin: str
    model: str = ""
    location: Location | None = None


class Equity(_Record):
    company: str
    company_credit_code: str = Field(min_length=1)
    share_pct: float = Field(gt=0, le=100)
    subscribed_capital_cents: int | None = Field(None, ge=0)


class Securities(_Record):
    account: str = Field(min_length=1)
    market_value_cents: int = Field(ge=0)
    holdings: list[dict[str, Any]] = []


class ProvidentFund(_Record):
    account: str = Field(min_length=1)
    balance_cents: int = Field(ge=0)


class SocialInsurance(_Record):
    account: str = Field(min_length=1)
    employer: str = ""
    pension_balance_cents: int = Field(ge=0)


class TaxRefund(_Record):
    taxpayer_id: str = Field(min_length=1)
    refund_due_cents: int = Field(ge=0)


class InsurancePolicy(_Record):
    policy_no: str = Field(min_length=1)
    insurer: str
    cash_value_cents: int = Field(ge=0)


class Vessel(_Record):
    registration: str = Field(min_length=1)
    vessel_name: str
    gross_tonnage: int = Field(gt=0)


class PaymentBalance(_Record):
    account: str = Field(min_length=1)
    platform: str
    balance_cents: int = Field(ge=0)


class AssetMapper(Protocol):
    """One per agency kind: the record model of its answers and how one becomes an asset."""

    @property
    def kind(self) -> AgencyKind: ...

    @property
    def record(self) -> type[_Record]: ...

    def to_asset(self, record: Any) -> AssetDraft: ...


def _draft(kind: str, ref: str, description: str, value: int | None, record: _Record) -> AssetDraft:
    return AssetDraft(kind, ref, description, value, record.model_dump(mode="json"))


class BankMapper:
    kind = AgencyKind.BANK
    record = Deposit

    def to_asset(self, r: Deposit) -> AssetDraft:
        return _draft("deposit", r.account, f"{r.bank}{r.branch} 存款账户 {r.account}", r.balance_cents, r)


class RealEstateMapper:
    kind = AgencyKind.REAL_ESTATE
    record = RealEstate

    def to_asset(self, r: RealEstate) -> AssetDraft:
        pledge = "（已抵押）" if r.mortgaged else ""
        return _draft("real_estate", r.certificate, f"{r.address} {r.area_m2} m²{pledge}", r.assessed_value_cents, r)


class VehicleMapper:
    kind = AgencyKind.VEHICLE
    record = Vehicle

    def to_asset(self, r: Vehicle) -> AssetDraft:
        return _draft("vehicle", r.plate, f"机动车 {r.plate} {r.model}", None, r)


class MarketRegulatorMapper:
    kind = AgencyKind.MARKET_REGULATOR
    record = Equity

    def to_asset(self, r: Equity) -> AssetDraft:
        return _draft(
            "equity", r.company_credit_code, f"{r.company} 股权 {r.share_pct}%", r.subscribed_capital_cents, r
        )


class SecuritiesMapper:
    kind = AgencyKind.SECURITIES
    record = Securities

    def to_asset(self, r: Securities) -> AssetDraft:
        return _draft("securities", r.account, f"证券账户 {r.account}", r.market_value_cents, r)


class ProvidentFundMapper:
    kind = AgencyKind.PROVIDENT_FUND
    record = ProvidentFund

    def to_asset(self, r: ProvidentFund) -> AssetDraft:
        return _draft("provident_fund", r.account, f"住房公积金账户 {r.account}", r.balance_cents, r)


class SocialInsuranceMapper:
    kind = AgencyKind.SOCIAL_INSURANCE
    record = SocialInsurance

    def to_asset(self, r: SocialInsurance) -> AssetDraft:
        return _draft(
            "social_insurance", r.account, f"社保个人账户 {r.account}（{r.employer}）", r.pension_balance_cents, r
        )


class TaxMapper:
    kind = AgencyKind.TAX
    record = TaxRefund

    def to_asset(self, r: TaxRefund) -> AssetDraft:
        return _draft("tax_refund", r.taxpayer_id, f"应退税款 {r.taxpayer_id}", r.refund_due_cents, r)


class InsuranceMapper:
    kind = AgencyKind.INSURANCE
    record = InsurancePolicy

    def to_asset(self, r: InsurancePolicy) -> AssetDraft:
        return _draft(
            "insurance_policy", r.policy_no, f"{r.insurer} 保单 {r.policy_no}（现金价值）", r.cash_value_cents, r
        )


class VesselMapper:
    kind = AgencyKind.VESSEL
    record = Vessel

    def to_asset(self, r: Vessel) -> AssetDraft:
        return _draft("vessel", r.registration, f"船舶 {r.vessel_name} {r.gross_tonnage} 总吨", None, r)


class PaymentMapper:
    kind = AgencyKind.PAYMENT
    record = PaymentBalance

    def to_asset(self, r: PaymentBalance) -> AssetDraft:
        return _draft("payment_balance", r.account, f"{r.platform} 余额 {r.account}", r.balance_cents, r)


MAPPERS: dict[AgencyKind, AssetMapper] = {
    m.kind: m
    for m in (
        BankMapper(), RealEstateMapper(), VehicleMapper(), MarketRegulatorMapper(), SecuritiesMapper(),
        ProvidentFundMapper(), SocialInsuranceMapper(), TaxMapper(), InsuranceMapper(), VesselMapper(), PaymentMapper(),
    )
}  # fmt: skip
