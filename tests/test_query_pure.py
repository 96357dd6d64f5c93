"""Pure cores of the asset-query work, without an event loop: identifiers (GB 11643 / GB 32100), case
numbers, the circuit breaker, backoff and deadline arithmetic, job planning, the audit chain check."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationFailed
from core.hashchain import GENESIS, chain_hash
from core.ids import CaseId, CourtId, PartyId, UserId
from persistence.query_models import AuditEntry, Case, Party, PartyKind, audit_content
from query_control.agencies import load_agencies, parse_agencies
from query_control.audit import verify_entries
from query_control.breaker import BreakerState, CircuitBreaker, backoff_delay, may_retry
from query_control.broker import plan_jobs
from query_control.cases import InvalidCaseNumber, validate_case_number
from query_control.identifiers import (
    USCC_ALPHABET,
    InvalidIdentifier,
    make_credit_code,
    make_id_number,
    validate_credit_code,
    validate_id_number,
)

births = st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31))
addresses = st.from_regex(r"[1-9][0-9]{5}", fullmatch=True)


def test_known_numbers() -> None:
    assert validate_id_number("11010519491231002x") == "11010519491231002X"  # the standard's own example
    assert validate_credit_code(" 91350100m000100y43 ") == "91350100M000100Y43"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1101051949123100", "must have 18 characters, got 16"),
        ("11010519491231002Y", "character 18 must be a digit or X"),
        ("1101051949123A002X", "character 14 must be a digit"),
        ("110105194913310021", "birth date 19491331 is not a calendar date"),
        ("110105194912310021", "check digit is 1, expected X (GB 11643)"),
        ("010105194912310021", "address code cannot start with 0"),
    ],
)
def test_bad_id_numbers_are_refused_precisely(raw: str, message: str) -> None:
    with pytest.raises(InvalidIdentifier, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_id_number(raw)


def test_future_birth_dates_are_refused() -> None:
    number = make_id_number("230102", date(2030, 1, 1), 1)
    with pytest.raises(InvalidIdentifier, match="out of range"):
        validate_id_number(number, today=date(2026, 1, 1))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("91350100M000100Y4", "must have 18 characters, got 17"),
        ("91350100M000100I43", "character 16 'I' is not allowed"),
        ("91350100M000100Y44", "check character is 4, expected 3 (GB 32100)"),
    ],
)
def test_bad_credit_codes_are_refused_precisely(raw: str, message: str) -> None:
    with pytest.raises(InvalidIdentifier, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_credit_code(raw)


@given(address=addresses, born=births, sequence=st.integers(0, 999))
def test_every_generated_id_number_validates(address: str, born: date, sequence: int) -> None:
    number = make_id_number(address, born, sequence)
    assert validate_id_number(number.lower()) == number


@given(
    address=addresses, born=births, sequence=st.integers(0, 999), position=st.integers(0, 16), delta=st.integers(1, 9)
)
def test_any_single_digit_error_in_an_id_number_is_caught(
    address: str, born: date, sequence: int, position: int, delta: int
) -> None:
    number = make_id_number(address, born, sequence)
    wrong = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    with pytest.raises(InvalidIdentifier):
        validate_id_number(wrong)


@given(
    body=st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17),
    position=st.integers(0, 17),
    shift=st.integers(1, 30),
)
def test_any_single_character_error_in_a_credit_code_is_caught(body: str, position: int, shift: int) -> None:
    code = make_credit_code(body)
    assert validate_credit_code(code) == code
    replaced = USCC_ALPHABET[(USCC_ALPHABET.index(code[position]) + shift) % 31]
    with pytest.raises(InvalidIdentifier):
        validate_credit_code(code[:position] + replaced + code[position + 1 :])


@given(st.text(max_size=40))
def test_arbitrary_text_never_crashes_the_validators(text: str) -> None:
    for validate in (validate_id_number, validate_credit_code):
        with contextlib.suppress(InvalidIdentifier):
            assert len(validate(text)) == 18


def test_case_numbers() -> None:
    assert validate_case_number("（2026）黑0102执123号") == "(2026)黑0102执123号"
    assert validate_case_number("(2026)黑01执恢7号") == "(2026)黑01执恢7号"
    for bad in ("2026黑0102执123号", "(2026)黑0102民123号", "(1900)黑0102执1号", "(2026)黑0102执0号"):
        with pytest.raises(InvalidCaseNumber):
            validate_case_number(bad)


def test_breaker_opens_after_consecutive_failures_probes_and_closes() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after=10.0)
    for t in range(2):
        assert breaker.allow(t)
        breaker.failure(t)
    breaker.success(2)  # a success resets the count
    for t in range(3, 6):
        assert breaker.allow(t)
        breaker.failure(t)
    assert breaker.state is BreakerState.OPEN and not breaker.allow(6) and breaker.retry_in(6) == 9
    assert breaker.allow(15)  # reset elapsed: one probe
    assert _state(breaker) is BreakerState.HALF_OPEN and not breaker.allow(15.1)
    breaker.failure(16)  # probe failed: open again, timer restarts
    assert breaker.state is BreakerState.OPEN and not breaker.allow(25) and breaker.allow(26)
    breaker.success(26)
    assert _state(breaker) is BreakerState.CLOSED and breaker.allow(26) and breaker.allow(26)


def _state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state


def test_breaker_release_lets_another_probe_through() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_after=1.0)
    breaker.failure(0)
    assert breaker.allow(1) and not breaker.allow(1)
    breaker.release()
    assert breaker.allow(1)


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    assert backoff_delay(1, 0.2, 5.0, 0.0) == 0.0
    assert backoff_delay(1, 0.2, 5.0, 0.5) == pytest.approx(0.1)
    assert backoff_delay(3, 0.2, 5.0, 0.999) == pytest.approx(0.7992)
    assert backoff_delay(20, 0.2, 5.0, 0.5) == pytest.approx(2.5)


def test_retries_stop_at_the_budget_or_the_deadline() -> None:
    assert may_retry(attempts_made=1, retries=2, now=0, delay=1, deadline=30)
    assert may_retry(attempts_made=2, retries=2, now=0, delay=1, deadline=30)
    assert not may_retry(attempts_made=3, retries=2, now=0, delay=1, deadline=30)
    assert not may_retry(attempts_made=1, retries=2, now=29.5, delay=1, deadline=30)


def test_plan_jobs_respects_selection_and_party_kinds() -> None:
    agencies = load_agencies()
    assert len(agencies) == 18 and len({a.kind for a in agencies}) == 11
    person = Party(PartyId(1), CaseId(1), PartyKind.PERSON, "张三", "11010519491231002X")
    org = Party(PartyId(2), CaseId(1), PartyKind.ORGANISATION, "某公司", "91350100M000100Y43")
    case = Case(CaseId(1), "(2026)黑0102执1号", CourtId("HLJ0102"), "t", UserId(1), 0, (person, org))
    everything = plan_jobs(case, agencies, party_ids=None, agency_ids=None, kinds=None)
    assert len(everything) == 18 + 16  # provident fund and social insurance know people only
    banks = plan_jobs(case, agencies, party_ids=[2], agency_ids=None, kinds=["bank"])
    assert {a.kind.value for _, a in banks} == {"bank"} and {p.id for p, _ in banks} == {2}
    with pytest.raises(ValidationFailed, match="not parties"):
        plan_jobs(case, agencies, party_ids=[3], agency_ids=None, kinds=None)
    with pytest.raises(ValidationFailed, match="names no party"):
        plan_jobs(case, agencies, party_ids=[2], agency_ids=["provident-fund"], kinds=None)


def test_agency_file_errors_name_the_key() -> None:
    with pytest.raises(ValidationFailed, match=r"agency\[0\] \(x\): kind: Input should be"):
        parse_agencies({"agency": [{"id": "x", "name": "x", "kind": "casino", "endpoint": "http://x", "api_key": "k"}]})


def _chain(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        content = audit_content(seq, "query.view", 7, seq, "r", 1, "q", {"i": seq})
        digest = chain_hash(prev, content)
        entries.append(AuditEntry(seq, "query.view", UserId(7), seq, "r", CaseId(1), None, {"i": seq}, prev, digest))
        prev = digest
    return entries


def test_audit_chain_verification_finds_the_first_tampered_entry() -> None:
    # query_id "q" was hashed but the records say None: every entry fails from the first
    assert verify_entries(_chain(3)).bad_seq == 1
    good = [replace(e, query_id="q") for e in _chain(5)]  # type: ignore[arg-type]
    assert verify_entries(good).ok and verify_entries(good).head == good[-1].hash
    altered = [*good[:2], replace(good[2], reason="x"), *good[3:]]
    assert verify_entries(altered).bad_seq == 3
    missing = [*good[:2], *good[3:]]
    result = verify_entries(missing)
    assert result.bad_seq == 4 and "missing" in (result.problem or "")
    relinked = [*good[:3], replace(good[3], prev_hash=GENESIS), good[4]]
    assert verify_entries(relinked).bad_seq == 4
