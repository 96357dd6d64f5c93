"""Case numbers and parties, validated before anything is stored or sent (pure).

执行案号 follow 最高人民法院《关于人民法院案件案号的若干规定》: ``(年份)省简称+法院代字+类型代字+序号+号``,
e.g. ``(2026)黑0102执123号``, ``(2026)黑01执恢7号``. Full-width brackets are accepted and stored as ASCII.
"""

from __future__ import annotations

import re

from persistence.query_models import PartyKind
from query_control.identifiers import InvalidIdentifier, validate_credit_code, validate_id_number

_CASE_NUMBER = re.compile(r"^\((\d{4})\)([\u4e00-\u9fff])(\d{2,6})(执[\u4e00-\u9fff]{0,2})(\d{1,7})号$")


class InvalidCaseNumber(ValueError):
    pass


def validate_case_number(raw: str) -> str:
    value = raw.strip().replace("（", "(").replace("）", ")")
    match = _CASE_NUMBER.match(value)
    if match is None:
        raise InvalidCaseNumber(f"case number {raw!r} is not of the form (2026)黑0102执123号")
    year = int(match.group(1))
    if not 1990 <= year <= 2100:
        raise InvalidCaseNumber(f"case number year {year} is out of range")
    if int(match.group(5)) == 0:
        raise InvalidCaseNumber("case number sequence must not be 0")
    return value


def validate_party_identifier(kind: PartyKind, identifier: str) -> str:
    """The canonical identifier of a party: a resident ID number for a person, a credit code otherwise."""
    if kind is PartyKind.PERSON:
        return validate_id_number(identifier)
    return validate_credit_code(identifier)


__all__ = ["InvalidCaseNumber", "InvalidIdentifier", "validate_case_number", "validate_party_identifier"]
