"""The review due date: submitted + the scheme's review working days, Chinese holidays and
make-up working days respected (chinese_calendar)."""
from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import select

from core import claims as svc
from core.models import AuditLog, ClaimDocument, ClaimStatus as S, DocumentKind, SchemeYear
from core.workdays import add_working_days, is_workday, review_due_date
from tests.factories import local_today, M, make_household


@pytest.mark.parametrize("submitted, due", [
    # National Day 2025: 1–8 October off, Sunday 28 September and Saturday 11 October worked
    (date(2025, 9, 30), date(2025, 10, 14)),
    (date(2025, 9, 26), date(2025, 10, 10)),  # 28 Sep (Sun) counts, 1–8 Oct do not
    (date(2025, 10, 3), date(2025, 10, 14)),  # submitted during the holiday
    (date(2025, 10, 8), date(2025, 10, 14)),  # 9, 10, 11 (Sat, worked), 13, 14
    # Spring Festival 2026: 15–23 February off, Saturdays 14 and 28 February worked
    (date(2026, 2, 12), date(2026, 2, 26)),  # 13, 14 (Sat, worked), 24, 25, 26
    (date(2026, 2, 27), date(2026, 3, 5)),
    # an ordinary week: Friday + 5 = next Friday
    (date(2025, 11, 14), date(2025, 11, 21)),
])
def test_five_working_days(submitted, due):
    assert review_due_date(submitted, 5) == due


def test_make_up_days_and_holidays():
    assert is_workday(date(2025, 9, 28)) and is_workday(date(2025, 10, 11))
    assert not any(is_workday(date(2025, 10, d)) for d in range(1, 9))
    assert add_working_days(date(2025, 9, 27), 1) == date(2025, 9, 28)  # a Sunday, worked
    assert add_working_days(date(2025, 10, 10), 1) == date(2025, 10, 11)  # a Saturday, worked
    assert add_working_days(date(2025, 10, 1), 0) == date(2025, 10, 1)
    assert review_due_date(datetime(2025, 9, 30, 23, 59), 5) == date(2025, 10, 14)
    with pytest.raises(ValueError):
        add_working_days(date(2025, 1, 1), -1)


def test_a_year_the_calendar_does_not_know_yet_counts_weekdays_less_fixed_holidays(caplog):
    # 2099-09-30 is a Wednesday; 1–3 October are holidays by date, 4 October a Sunday
    assert review_due_date(date(2099, 9, 30), 5) == date(2099, 10, 9)
    assert "no holiday data for 2099" in caplog.text


def _ready_claim(session, vault, openid):
    hh = make_household(session, vault, [M("周大福")], openid=openid)
    claim = svc.start_claim(session, hh, hh.members[0], openid, local_today())
    for i, kind in enumerate(svc.REQUIRED_KINDS):
        session.add(ClaimDocument(claim=claim, kind=kind, sha256=f"{i:064x}", phash="0" * 16,
                                  size=1, content_type="image/jpeg"))
    session.flush()
    return claim


def test_submit_uses_the_schemes_review_working_days(app_ctx, db):
    with db.session() as s:
        claim = _ready_claim(s, app_ctx.vault, "o_wd_5")
        svc.submit(s, claim, "o_wd_5", date(2025, 9, 30))
        assert claim.status is S.submitted and claim.due_date == date(2025, 10, 14)
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "claim.submitted")).one()
        assert audit.after["due_date"] == "2025-10-14"
    with db.session() as s:  # a scheme allowing 3 working days
        year = s.scalars(select(SchemeYear)).first()
        rules = dict(year.rules)
        rules["claims"] = {**rules["claims"], "review_working_days": 3}
        year.rules = rules
    with db.session() as s:
        claim = _ready_claim(s, app_ctx.vault, "o_wd_3")
        svc.submit(s, claim, "o_wd_3", date(2025, 9, 30))
        assert claim.due_date == date(2025, 10, 11)  # 9, 10, 11 (Saturday, worked)


def test_submit_refuses_until_the_three_kinds_are_there(app_ctx, db):
    with db.session() as s:
        claim = _ready_claim(s, app_ctx.vault, "o_wd_missing")
        claim.documents[1].kind = None  # asked about, not answered
        with pytest.raises(svc.ClaimError) as err:
            svc.submit(s, claim, "o_wd_missing", date(2025, 9, 30))
        assert err.value.code == "unclassified"
        claim.documents[1].kind = DocumentKind.itemized_bill
        claim.documents[2].sha256 = None  # still being read: never holds the claim back
        svc.check_submittable(claim)
        claim.documents[2].kind = None  # ... unlabelled too: OCR will say which it is
        svc.check_submittable(claim)
        claim.documents[2].kind = DocumentKind.settlement_sheet
        s.delete(claim.documents[2])
        claim.documents.remove(claim.documents[2])
        with pytest.raises(svc.ClaimError) as err:
            svc.submit(s, claim, "o_wd_missing", date(2025, 9, 30))
        assert err.value.code == "missing" and err.value.details["missing"] == [
            DocumentKind.settlement_sheet]
        assert claim.status is S.collecting and claim.due_date is None
