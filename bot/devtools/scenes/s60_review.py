"""Demo scene: the reviewer's day. The administrator lists the claims waiting (/待审), looks at one
(/查看: photo links, OCR read-out), records the facts (/核定 — the short form when the photos were
read well, else the full form), sends a bad date once (refused, nothing changes) and approves
(/通过); the villager receives the decision with its calculation.

Uses state["claim"] from the claim scene; without one (scene 50 not there), it makes a household
and a submitted claim with sample photos through the services.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

DRG = "FM19"


def _household(s, x, openid: str):
    """The villager's household, or a new one in 示范镇/东村 with a paid enrolment."""
    from stdnum.cn import ric

    from core.crypto import mask_id
    from core.households import household_for_user, household_number, reserve_ids
    from core.models import (Enrolment, EnrolmentStatus, Household, HouseholdLink,
                             InsuranceType, LinkRole, Member, Relation, Village, utcnow)
    from core.scheme import scheme_year_on

    hh = household_for_user(s, openid)
    if hh is not None:
        return hh
    village = s.scalar(select(Village).where(Village.full_name == "示范镇/东村"))
    (hh_id,) = reserve_ids(s, Household.__table__, 1)
    hh = Household(id=hh_id, number=household_number(hh_id), pool_id=village.pool_id,
                   village_id=village.id, phone_enc=x.vault.encrypt("13800000000"),
                   phone_masked="138****0000")
    s.add(hh)
    s.flush()
    body = "32058219600517123"
    idn = body + ric.calc_check_digit(body)
    m = Member(household_id=hh.id, name="王大山", id_number_enc=x.vault.encrypt(idn),
               id_number_hash=x.vault.lookup_hash(idn), id_number_masked=mask_id(idn),
               birth_year=1960, relation=Relation.head,
               insurance=InsuranceType.resident)
    s.add(m)
    s.flush()
    year = scheme_year_on(s, village.pool_id, datetime.now(x.cfg.tz).date())
    s.add(Enrolment(member_id=m.id, scheme_year_id=year.id, id_number_hash=m.id_number_hash,
                    status=EnrolmentStatus.paid, paid_at=utcnow()))
    s.add(HouseholdLink(household_id=hh.id, openid=openid, role=LinkRole.head))
    s.flush()
    return hh


def _make_claim(x, openid: str) -> str:
    """A submitted claim with the three sample documents stored, as the photo dialogue leaves
    one (used only when the claim scene has not run)."""
    from core import media
    from core.audit import audit
    from core.claims import new_claim_number
    from core.models import Claim, ClaimDocument, ClaimStatus, DocumentKind, utcnow
    from core.scheme import scheme_year_on
    from core.workdays import review_due_date

    today = datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        hh = _household(s, x, openid)
        year = scheme_year_on(s, hh.pool_id, today)
        claim = Claim(number=new_claim_number(s), household_id=hh.id, member_id=hh.members[0].id,
                      scheme_year_id=year.id, status=ClaimStatus.submitted,
                      submitted_at=utcnow(), due_date=review_due_date(today),
                      stated={}, ocr={}, flags={}, reasons=[], trace=[], created_by=openid)
        s.add(claim)
        s.flush()
        try:
            import io

            from bot.devtools import claim_samples as cs

            stay = cs.Stay(admission=today - timedelta(days=20),
                           discharge=today - timedelta(days=12))
            pages = {DocumentKind.discharge_record: cs.discharge_record(stay),
                     DocumentKind.itemized_bill: cs.itemized_bill(stay),
                     DocumentKind.settlement_sheet: cs.settlement_sheet(stay)}
            for kind, page in pages.items():
                buf = io.BytesIO()
                page.save(buf, "JPEG", quality=80)
                stored = media.store(x.cfg.data_dir, buf.getvalue())
                s.add(ClaimDocument(claim_id=claim.id, kind=kind, sha256=stored.sha256,
                                    phash=stored.phash, size=stored.size,
                                    content_type=stored.content_type))
        except Exception as exc:  # no CJK font: the claim goes without photos
            print(f"  (示例照片没有生成：{type(exc).__name__})")
        audit(s, "cli:demo", "claim.submitted", "claim", claim.number, None,
              {"status": "submitted"})
        return claim.number


def scene(t, x, state: dict) -> None:
    from core.models import Claim
    from core.review import decide, facts_from_ocr

    villager, admin = state["villager"], state["admin"]
    number = state.get("claim")
    print("\n【审核员审核申请】")
    if not number:
        number = _make_claim(x, villager)
        state["claim"] = number
        print(f"  (没有申请场景，已用服务建了一件已提交的申请 {number})")
    t.say("村民", villager, "4", wait=0)  # the villager writes now and then (48-hour window)
    t.say("管理员", admin, "/待审", wait=0)
    t.say("管理员", admin, f"/查看 {number}", wait=0)

    today = datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        claim = s.scalar(select(Claim).where(Claim.number == number))
        found = facts_from_ocr(claim, DRG, today)
        # the short form when the photos were read well and their stay lies in this year
        short = found.facts is not None and decide(s, claim, found.facts, today)[0].approved
        insurance = {"resident": "居民医保", "employee": "职工医保",
                     "uninsured": "未参保"}[claim.member.insurance.value]
        stated = claim.stated or {}
    if short:
        t.say("管理员", admin, f"/核定 {number} {DRG}", wait=0)
    else:
        amount = stated.get("out_of_pocket_fen") or 1811650
        discharge = today - timedelta(days=12)
        admission = discharge - timedelta(days=8)
        t.say("管理员", admin, f"/核定 {number} {DRG} {amount // 100}.{amount % 100:02d} "
                               f"{admission:%Y/%m/%d} 昨天 {insurance}", wait=0)
        t.say("管理员", admin, f"/核定 {number} {DRG} {amount // 100}.{amount % 100:02d} "
                               f"{admission:%Y-%m-%d} {discharge:%Y-%m-%d} {insurance} 县人民医院",
              wait=0)
    t.say("村民", villager, f"/通过 {number}", wait=0)
    since = t.v.last_call_id()
    t.say("管理员", admin, f"/通过 {number}", wait=0)
    print("\n【村民收到】")
    for call in t.v.wait_pushes(villager, since, 3.0):
        body = call.get("json") or {}
        if body.get("msgtype") == "text":
            print("  ⇢ " + body["text"]["content"].replace("\n", "\n    "))
