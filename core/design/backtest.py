"""Back-test: last year's actual claims replayed under proposed quotas, per village, beside what
was paid. "Last year" is the scheme year before the pool's running one when it has decided
claims, else the running year. Each claim with recorded facts that was approved (or paid), or
rejected by the rule alone, is decided again by `core.adjudication.adjudicate` in the order of
the stays, its member's other replayed approvals counting against the annual cap. Reads only."""
from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import scheme_years
from core.adjudication import COMPUTED_REASONS, ClaimFacts, OtherClaim, Rules, adjudicate
from core.models import Claim, ClaimStatus, Household, SchemeYear, Village
from core.review.decide import history_of
from core.scheme import Scheme

PAID = (ClaimStatus.approved, ClaimStatus.in_payout, ClaimStatus.paid, ClaimStatus.payout_failed)


@dataclass
class VillageLine:
    village: str
    claims: int
    paid_fen: int  # what was approved or paid
    proposed_fen: int  # what the proposed quotas would have paid

    def to_json(self) -> dict:
        return {"village": self.village, "claims": self.claims, "paid_fen": self.paid_fen,
                "proposed_fen": self.proposed_fen}


def _replayable(claim: Claim) -> bool:
    if claim.drg_code is None or claim.out_of_pocket_fen is None or claim.admission_date is None:
        return False
    if claim.status in PAID:
        return True
    return (claim.status is ClaimStatus.rejected and bool(claim.reasons)
            and set(claim.reasons) <= set(COMPUTED_REASONS))


def backtest_year(session: Session, running: SchemeYear) -> SchemeYear:
    previous = scheme_years.previous(session, running)
    if previous is not None and session.scalar(
            select(Claim.id).where(Claim.scheme_year_id == previous.id).limit(1)) is not None:
        return previous
    return running


def backtest(session: Session, year: SchemeYear, proposed: Scheme) -> list[VillageLine]:
    """Per village of the pool (every one, claims or not), ordered by name."""
    rules = Rules.from_scheme(replace(year.scheme, benefit=proposed.benefit))
    claims = [c for c in session.scalars(
        select(Claim).join(Household, Claim.household_id == Household.id)
        .where(Household.pool_id == year.pool_id, Claim.admission_date >= year.start,
               Claim.admission_date <= year.end)
        .order_by(Claim.admission_date, Claim.id)) if _replayable(c)]
    villages = {v.id: v.full_name for v in session.scalars(
        select(Village).where(Village.pool_id == year.pool_id))}
    lines = {vid: VillageLine(name, 0, 0, 0) for vid, name in villages.items()}
    replayed: dict[str, list[OtherClaim]] = {}
    for claim in claims:
        person = claim.member.id_number_hash
        history = replace(history_of(session, claim, year),
                          other_claims=tuple(replayed.get(person, ())))
        try:
            decision = adjudicate(
                ClaimFacts(claim.member_id, claim.drg_code, claim.out_of_pocket_fen,
                           claim.admission_date, claim.discharge_date or claim.admission_date,
                           claim.insurance.value if claim.insurance else "resident",
                           claim.exclusion),
                rules, history)
        except ValueError:  # facts the rule cannot take (an exclusion it no longer knows)
            decision = None
        line = lines.setdefault(claim.household.village_id,
                                VillageLine(str(claim.household.village_id), 0, 0, 0))
        line.claims += 1
        if claim.status in PAID and claim.amount_fen:
            line.paid_fen += claim.amount_fen
        if decision is not None and decision.approved:
            line.proposed_fen += decision.amount_fen
            replayed.setdefault(person, []).append(OtherClaim(
                "approved", decision.amount_fen, claim.admission_date,
                claim.discharge_date or claim.admission_date, claim.number))
    return sorted(lines.values(), key=lambda line: line.village)
