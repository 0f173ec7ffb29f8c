"""The objection window (异议期), as 相互宝 had it: with `disclosure.objection_days: N` (N > 0) in
a scheme, approved claims are disclosed to the village groups N days before they may be paid;
any enrolled member of the pool may object with `异议 <claim> <reason>`; an objected claim is
held out of the payout until a reviewer decides (`/异议处理 <claim> 不成立|成立 …`). N = 0
disables all of it.

The payout run asks `held_claim_ids(session, pool_id)` which claims to leave out: approved
claims of a scheme with a window that were not disclosed yet or whose window is still open, and
every claim with an open objection (also marked `claim.flags["objection"] == "open"`).

A claim's window is kept in `claim.flags["objection_window"] = {"disclosed_on", "until"}`
(ISO dates): it may be paid from `until` on.
"""
from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core import claims as claim_service
from core.adjudication import REASONS, REVIEWER_REJECTION_CODES
from core.audit import audit
from core.crypto import mask_name
from core.errors import DomainError
from core.groups import enqueue_posts, groups_of, pool_village_ids, split_parts
from core.defaults import OBJECTION_DAYS
from core.households import household_for_user
from core.messages import render
from core.models import (AdminGrant, AdminRole, Claim, ClaimStatus, DrgGroup, Enrolment,
                         EnrolmentStatus, Household, Member, Objection, Pool, utcnow)
from core.notify import notify_household
from core import outbox, scheme_years

OPEN, CLEARED, UPHELD = "open", "cleared", "upheld"
REASON_MIN, REASON_MAX = 2, 200
WINDOW_FLAG = "objection_window"
FLAG = "objection"


class ObjectionError(DomainError, ValueError):
    """A refusal with a stable code; templates/messages/objection_refused.j2 words it."""


def _today(tz: ZoneInfo | None = None) -> date:
    from datetime import datetime

    if tz is None:
        from core.config import load_config

        tz = load_config(validate=False).tz
    return datetime.now(tz).date()


def objection_days(session: Session, claim: Claim, today: date) -> int:
    """The window of the claim's scheme year (the pool's year running today if it has none)."""
    year = scheme_years.of_claim(session, claim, today)
    return year.scheme.disclosure.objection_days if year is not None else OBJECTION_DAYS


def window(claim: Claim) -> tuple[date, date] | None:
    w = (claim.flags or {}).get(WINDOW_FLAG)
    if not w:
        return None
    return date.fromisoformat(w["disclosed_on"]), date.fromisoformat(w["until"])


def _set_flag(claim: Claim, key: str, value) -> None:
    flags = dict(claim.flags or {})
    flags[key] = value
    claim.flags = flags  # a new dict: the JSON column sees the change


# -- what the payout leaves out -------------------------------------------------------------

def held_claim_ids(session: Session, pool_id: int, today: date | None = None) -> set[int]:
    """Claims of the pool the payout run must skip today: an open objection, or (where the
    scheme has an objection window) approved but not yet disclosed, or disclosed less than N
    days ago."""
    today = today or _today()
    held = set(session.scalars(
        select(Objection.claim_id).join(Claim, Claim.id == Objection.claim_id)
        .join(Household, Household.id == Claim.household_id)
        .where(Household.pool_id == pool_id, Objection.status == OPEN)))
    approved = session.scalars(
        select(Claim).join(Household, Household.id == Claim.household_id)
        .where(Household.pool_id == pool_id, Claim.status == ClaimStatus.approved))
    days_by_year: dict[int | None, int] = {}
    for claim in approved:
        if claim.scheme_year_id not in days_by_year:
            days_by_year[claim.scheme_year_id] = objection_days(session, claim, today)
        if days_by_year[claim.scheme_year_id] <= 0:
            continue
        w = window(claim)
        if w is None or today < w[1]:
            held.add(claim.id)
    return held


# -- disclosing newly approved claims -------------------------------------------------------

def pending_disclosure(session: Session, pool_id: int, today: date) -> list[Claim]:
    """Approved claims of the pool, under a scheme with a window, not disclosed yet."""
    rows = session.scalars(
        select(Claim).join(Household, Household.id == Claim.household_id)
        .where(Household.pool_id == pool_id, Claim.status == ClaimStatus.approved)
        .order_by(Claim.id))
    return [c for c in rows if window(c) is None and objection_days(session, c, today) > 0]


def disclose_approved(session: Session, pool_id: int, today: date | None = None,
                      actor: str = "system", tz: ZoneInfo | None = None) -> dict:
    """Post the list of newly approved claims to the pool's groups, opening each one's window
    (N days from today). Returns {claims, groups, messages}."""
    today = today or _today(tz)
    claims = pending_disclosure(session, pool_id, today)
    if not claims:
        return {"claims": 0, "groups": 0, "messages": 0}
    pool = session.get(Pool, pool_id)
    rows = []
    until_dates = set()
    for c in claims:
        days = objection_days(session, c, today)
        until = today + timedelta(days=days)
        until_dates.add(until)
        _set_flag(c, WINDOW_FLAG, {"disclosed_on": today.isoformat(), "until": until.isoformat()})
        drg = session.get(DrgGroup, c.drg_code) if c.drg_code else None
        rows.append({"number": c.number, "village": c.household.village.name,
                     "name": mask_name(c.member.name), "drg_name": drg.name if drg else c.drg_code,
                     "amount_fen": c.amount_fen, "until": until})
    until = max(until_dates)
    blocks = [render("disclosure_objection_header", pool=pool, count=len(rows), until=until,
                     today=today)]
    blocks += [render("disclosure_objection_row", row=r) for r in rows]
    blocks.append(render("disclosure_objection_footer", until=until))
    parts = ["\n".join(p) for p in split_parts(blocks)]
    groups = groups_of(session, pool_village_ids(session, pool_id))
    messages = 0
    for g in groups:
        messages += len(enqueue_posts(session, g.key, [("wecom.post", {"markdown": p})
                                                       for p in parts]))
    audit(session, actor, "objection.window_opened", "pool", pool.code, None,
          {"claims": [c.number for c in claims], "until": until.isoformat(),
           "groups": len(groups)})
    session.flush()
    return {"claims": len(claims), "groups": len(groups), "messages": messages}


def disclose_due(session: Session, today: date) -> list[dict]:
    """What the daily job does, in the caller's transaction: every pool's newly approved
    claims are posted and their windows opened. Returns {pool, claims, groups, messages} for
    each pool that had any."""
    results = []
    for pool in session.scalars(select(Pool).order_by(Pool.id)):
        result = disclose_approved(session, pool.id, today)
        if result["claims"]:
            results.append({"pool": pool.code, **result})
    return results


# -- raising and deciding objections --------------------------------------------------------

def find_claim(session: Session, number: str) -> Claim | None:
    return session.scalar(select(Claim).where(Claim.number == number.strip().upper()))


def _is_enrolled(session: Session, household: Household, year_id: int | None) -> bool:
    if year_id is None:
        return False
    return session.scalar(
        select(Enrolment.id).join(Member, Member.id == Enrolment.member_id)
        .where(Member.household_id == household.id, Enrolment.scheme_year_id == year_id,
               Enrolment.status == EnrolmentStatus.paid).limit(1)) is not None


def reviewers_of(session: Session, pool_id: int) -> list[str]:
    """Openids of the administrators who decide objections in the pool."""
    rows = session.scalars(select(AdminGrant.openid).where(
        AdminGrant.role.in_([AdminRole.reviewer, AdminRole.pool_admin, AdminRole.super]),
        or_(AdminGrant.pool_id == pool_id, AdminGrant.role == AdminRole.super,
            (AdminGrant.role == AdminRole.reviewer) & AdminGrant.pool_id.is_(None))))
    return sorted(set(rows))


def raise_objection(session: Session, openid: str, number: str, reason: str,
                    today: date) -> Objection:
    """A member's objection to a disclosed claim: recorded, the claim held, the claim's
    household and the pool's reviewers told. Raises ObjectionError (nothing changes)."""
    reason = " ".join((reason or "").split())
    household = household_for_user(session, openid)
    claim = find_claim(session, number)
    if household is None:
        raise ObjectionError("not_member")
    if claim is None or claim.household.pool_id != household.pool_id:
        raise ObjectionError("no_claim", number=number)
    days = objection_days(session, claim, today)
    if days <= 0:
        raise ObjectionError("disabled")
    year_id = claim.scheme_year_id
    if year_id is None:
        year = scheme_years.running(session, household.pool_id, today)
        year_id = year.id if year else None
    if not _is_enrolled(session, household, year_id):
        raise ObjectionError("not_member")
    w = window(claim)
    if claim.status is not ClaimStatus.approved or w is None:
        code = "too_late" if claim.status in (ClaimStatus.in_payout, ClaimStatus.paid) \
            else "not_disclosed"
        raise ObjectionError(code, number=claim.number)
    if today >= w[1]:
        raise ObjectionError("window_closed", number=claim.number, until=w[1])
    if not REASON_MIN <= len(reason) <= REASON_MAX:
        raise ObjectionError("reason_length", number=claim.number)
    mine = session.scalar(select(Objection).where(Objection.claim_id == claim.id,
                                                  Objection.openid == openid,
                                                  Objection.status == OPEN))
    if mine is not None:
        raise ObjectionError("already", number=claim.number)
    row = Objection(claim_id=claim.id, openid=openid, reason=reason, status=OPEN)
    session.add(row)
    _set_flag(claim, FLAG, OPEN)
    session.flush()
    audit(session, openid, "objection.raised", "claim", claim.number, None,
          {"objection": row.id, "reason": reason})
    notify_household(session, claim.household_id, "objection_held_household", claim=claim)
    text = render("objection_new_reviewer", claim=claim, reason=reason,
                  village=claim.household.village.full_name, name=mask_name(claim.member.name))
    for reviewer in reviewers_of(session, claim.household.pool_id):
        outbox.send_text(session, reviewer, text)
    return row


def resolve(session: Session, claim: Claim, upheld: bool, actor: str,
            reason_code: str | None = None, note: str | None = None) -> list[Objection]:
    """A reviewer's decision on a claim's open objections. Not upheld (不成立): the claim stays
    approved and goes to the next payout. Upheld (成立): the claim is rejected with a reviewer's
    reason code. The objectors and the claim's household are told either way."""
    open_rows = list(session.scalars(select(Objection).where(Objection.claim_id == claim.id,
                                                             Objection.status == OPEN)
                                     .order_by(Objection.id)))
    if not open_rows:
        raise ObjectionError("none_open", number=claim.number)
    if upheld:
        if reason_code not in REVIEWER_REJECTION_CODES:
            raise ObjectionError("bad_reason", number=claim.number,
                                 codes=sorted(REVIEWER_REJECTION_CODES))
        if not claim_service.can_transition(claim, ClaimStatus.rejected):
            raise ObjectionError("not_approved", number=claim.number,
                                 status=claim.status.value)
    status = UPHELD if upheld else CLEARED
    now = utcnow()
    for row in open_rows:
        row.status = status
        row.resolved_at = now
    _set_flag(claim, FLAG, status)
    audit(session, actor, f"objection.{status}", "claim", claim.number,
          {"objections": [r.id for r in open_rows], "status": OPEN},
          {"status": status, "reason_code": reason_code, "note": note})
    if upheld:
        claim.reasons = [reason_code]
        if note:
            claim.note = note
        claim_service.transition(session, claim, ClaimStatus.rejected, actor,
                                 notify="objection_upheld_household",
                                 detail={"reasons": [reason_code], "objection": True},
                                 reason=REASONS[reason_code], note=note)
    else:
        notify_household(session, claim.household_id, "objection_cleared_household",
                         claim=claim, note=note)
    text = render("objection_decided_objector", claim=claim, upheld=upheld, note=note)
    for openid in sorted({r.openid for r in open_rows}):
        outbox.send_text(session, openid, text)
    session.flush()
    return open_rows


def open_objections(session: Session, pool_ids=None) -> list[Objection]:
    q = (select(Objection).join(Claim, Claim.id == Objection.claim_id)
         .join(Household, Household.id == Claim.household_id)
         .where(Objection.status == OPEN).order_by(Objection.id))
    if pool_ids is not None:
        q = q.where(Household.pool_id.in_(list(pool_ids)))
    return list(session.scalars(q))

