"""Listing claims (`huzhu claims list`) and looking up DRG groups (/病种)."""
from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.crypto import mask_name
from core.models import Claim, ClaimStatus as S, Household, Pool, SchemeYear


def claim_json(claim: Claim) -> dict:
    """A claim as `claims list --json` shows it (SPEC): personal data masked, amounts in fen."""
    return {
        "number": claim.number,
        "household": claim.household.number,
        "village": claim.household.village.full_name,
        "member": mask_name(claim.member.name),
        "status": claim.status.value,
        "amount_fen": claim.amount_fen,
        "reasons": list(claim.reasons or []),
        "trace": [dict(s) for s in claim.trace or []],
        "due_date": claim.due_date.isoformat() if claim.due_date else None,
        "drg_code": claim.drg_code,
        "out_of_pocket_fen": claim.out_of_pocket_fen,
        "admission_date": claim.admission_date.isoformat() if claim.admission_date else None,
        "discharge_date": claim.discharge_date.isoformat() if claim.discharge_date else None,
        "documents": [{"kind": d.kind.value if d.kind else None, "sha256": d.sha256}
                      for d in claim.documents],
    }


def list_claims(session: Session, status: str | None = None,
                pool: str | None = None) -> list[Claim]:
    q = select(Claim).join(Household, Claim.household_id == Household.id).order_by(Claim.id)
    if status:
        q = q.where(Claim.status == S(status))
    if pool:
        q = q.join(Pool, Household.pool_id == Pool.id).where(Pool.code == pool)
    return list(session.scalars(q))


def _drg_match(text: str):
    from core.models import DrgGroup

    text = text.strip()
    return or_(DrgGroup.code.startswith(text.upper(), autoescape=True),
               DrgGroup.name.contains(text, autoescape=True))


def drg_search(session: Session, text: str, year: SchemeYear | None,
               limit: int = 8) -> list[dict]:
    """DRG groups whose code starts with, or whose name contains, the text — with the year's
    quota when it has one (for reviewers choosing the group for /核定, and 查病种)."""
    from core.models import DrgGroup

    rows = list(session.execute(
        select(DrgGroup.code, DrgGroup.name).where(_drg_match(text))
        .order_by(DrgGroup.code).limit(limit)).all())
    quotas = year.scheme.benefit.quotas_fen if year is not None else {}
    return [{"code": c, "name": n, "quota_fen": quotas.get(c)} for c, n in rows]


def drg_count(session: Session, text: str) -> int:
    """How many DRG groups `drg_search` would find with no limit."""
    from sqlalchemy import func

    from core.models import DrgGroup

    return session.scalar(select(func.count()).select_from(DrgGroup).where(_drg_match(text)))
