"""Who may reach a case's data, and when a case may be queried (pure: takes records, raises or returns).

The mission's rule: only a judge assigned to a case may query its parties, and the assignment comes from
the case source (立案), not from the judge. It is checked at every read, not only when a query is made:
a judge taken off a case loses the case, its queries and their results at once, whoever submitted them.
"""

from __future__ import annotations

from core.errors import CaseNotUnderWay, Forbidden
from core.ids import UserId
from persistence.query_models import Case, CaseStatus, FollowUpAction


def on_case(case: Case, judge_id: UserId) -> bool:
    return judge_id in case.judge_ids


def require_on_case(case: Case, judge_id: UserId) -> None:
    if not on_case(case, judge_id):
        raise Forbidden("you are not assigned to this case")


def require_under_way(case: Case) -> None:
    """A case that is 终本 (terminated) or 结案 (closed) may not be queried any more."""
    if case.status is not CaseStatus.ACTIVE:
        raise CaseNotUnderWay(
            f"case {case.case_number} is {case.status.label} ({case.status.value}); "
            f"only a case under way ({CaseStatus.ACTIVE.label}) may be queried"
        )


def require_followup_allowed(case: Case, action: FollowUpAction) -> None:
    """On a case no longer under way (终本/结案) nothing more is frozen, renewed or deducted; an unfreeze is still
    asked and sent, since releasing what the court holds is part of closing a case."""
    if case.status is not CaseStatus.ACTIVE and action is not FollowUpAction.UNFREEZE:
        raise CaseNotUnderWay(
            f"case {case.case_number} is {case.status.label} ({case.status.value}): only an unfreeze may be asked"
            f" or approved on it, not {action.value}"
        )
