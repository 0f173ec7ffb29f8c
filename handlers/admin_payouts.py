"""Payout commands (SPEC "Administrator commands"): /发放预览, /确认发放 <batch>,
/发放失败 <batch> <claim> <text>.

Who: a pool administrator for its pool, a super administrator for every pool, and a village
administrator for its villages (in a village-run pool, 村办村管, the village administrator is the
one who pays): a village administrator sees the preview of its villages' claims, records a
bounced transfer of its villages, and confirms a batch only when every line of it is in its
villages. Reviewers do not pay. The scope is read from the grants themselves, so a reviewer's
pool does not become a pool the same person may pay from. Every command is audited; refusals
change nothing (handlers.admin audits them).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from core import ledger
from core.admins import Scope
from core.audit import audit
from core.crypto import mask_name
from core.messages import render
from core.models import (AdminGrant, AdminRole, BatchStatus, Claim, Household, PayoutLine, Pool,
                         Village)
from core.payouts import (PayoutError, confirm_batch, find_batch, find_claim, list_batches,
                          payout_day_for, plan, record_failure)
from handlers.admin import Refused, command
from handlers.types import Ctx, Reply

PAYOUT_ROLES = frozenset({AdminRole.village_admin, AdminRole.pool_admin, AdminRole.super})
SAMPLE = 8


@dataclass(frozen=True)
class PayoutScope:
    everything: bool
    pool_ids: frozenset[int]  # pool_admin grants
    village_ids: frozenset[int]  # village_admin grants

    def covers_pool(self, pool_id: int) -> bool:
        return self.everything or pool_id in self.pool_ids

    def covers(self, pool_id: int, village_id: int) -> bool:
        return self.covers_pool(pool_id) or village_id in self.village_ids


def payout_scope(ctx: Ctx) -> PayoutScope:
    grants = list(ctx.session.scalars(select(AdminGrant).where(AdminGrant.openid == ctx.openid)))
    return PayoutScope(
        everything=any(g.role is AdminRole.super for g in grants),
        pool_ids=frozenset(g.pool_id for g in grants
                           if g.role is AdminRole.pool_admin and g.pool_id is not None),
        village_ids=frozenset(g.village_id for g in grants
                              if g.role is AdminRole.village_admin and g.village_id is not None))


def _pools(ctx: Ctx, ps: PayoutScope) -> list[Pool]:
    q = select(Pool).order_by(Pool.id)
    if not ps.everything:
        village_pools = select(Village.pool_id).where(Village.id.in_(ps.village_ids))
        q = q.where(Pool.id.in_(ps.pool_ids) | Pool.id.in_(village_pools))
    return list(ctx.session.scalars(q))


def _refused(e: PayoutError) -> Refused:
    return Refused("payout_refused", code=e.code, **e.details)


@command("发放预览", roles=PAYOUT_ROLES)
def preview_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    shown = preview(ctx)
    audit(ctx.session, ctx.openid, "payout.preview", "pool", None, None,
          {"pools": [{"pool": s["pool"].code, "lines": s["lines"], "total_fen": s["total_fen"]}
                     for s in shown]})
    return [Reply(render("payout_preview", pools=shown))]


def preview(ctx: Ctx, sample: int = SAMPLE, ps: PayoutScope | None = None) -> list[dict]:
    """Per pool in the admin's payout scope (or `ps`), what the next batch would hold (the
    chat's /发放预览 and the console's payouts page)."""
    ps = ps or payout_scope(ctx)
    villages = {v.id: v.name for v in ctx.session.scalars(select(Village))}
    shown = []
    for pool in _pools(ctx, ps):
        p = plan(ctx.session, pool.id, ctx.today)

        def mine(cands):
            return [c for c in cands if ps.covers(pool.id, c.village_id)]

        take = mine(p.take)
        waiting_balance = mine(p.waiting_balance)
        shown.append({
            "pool": pool, "day": payout_day_for(ctx.session, pool.id, ctx.today),
            "lines": len(take), "total_fen": sum(c.amount_fen for c in take),
            "available_fen": p.available_fen, "pending_fen": p.pending_fen,
            "sample": [{"claim_number": c.claim_number, "village": villages.get(c.village_id, ""),
                        "holder": mask_name(c.holder or ""), "amount_fen": c.amount_fen}
                       for c in take[:sample]],
            "more": max(len(take) - sample, 0),
            "waiting_balance": len(waiting_balance),
            "waiting_balance_fen": sum(c.amount_fen for c in waiting_balance),
            "waiting_card": len(mine(p.waiting_card)), "held": len(mine(p.held)),
            "open_batches": [b for b in list_batches(ctx.session, pool.code)
                             if b["status"] != BatchStatus.confirmed.value],
        })
    return shown


def covers_batch(ctx: Ctx, ps: PayoutScope, batch) -> bool:
    """Whether the scope may confirm the batch: its pool, or every line in its villages."""
    if ps.covers_pool(batch.pool_id):
        return True
    villages = _batch_villages(ctx, batch.id)
    return bool(villages) and villages <= ps.village_ids


def _batch_villages(ctx: Ctx, batch_id: int) -> set[int]:
    return set(ctx.session.scalars(
        select(Household.village_id).distinct()
        .join(Claim, Claim.household_id == Household.id)
        .join(PayoutLine, PayoutLine.claim_id == Claim.id)
        .where(PayoutLine.batch_id == batch_id)))


@command("确认发放", roles=PAYOUT_ROLES, min_args=1)
def confirm_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    ps = payout_scope(ctx)
    try:
        batch = find_batch(ctx.session, args[0], lock=True)
    except PayoutError as e:
        raise _refused(e)
    if not covers_batch(ctx, ps, batch):
        raise Refused("payout_refused", code="scope", what=f"批次 {batch.number} 的部分补助")
    try:
        r = confirm_batch(ctx.session, batch.number, ctx.openid, ctx.today)
    except PayoutError as e:
        raise _refused(e)
    return [Reply(render("payout_confirmed", batch=r.batch, already=r.already, paid=r.paid,
                         paid_fen=r.paid_fen, failed=r.failed,
                         balance_fen=ledger.balance(ctx.session, r.pool_id)))]


@command("发放失败", roles=PAYOUT_ROLES, min_args=3)
def failure_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    ps = payout_scope(ctx)
    try:
        batch = find_batch(ctx.session, args[0])
        claim = find_claim(ctx.session, args[1])
    except PayoutError as e:
        raise _refused(e)
    household = ctx.session.get_one(Household, claim.household_id)
    if not ps.covers(household.pool_id, household.village_id):
        raise Refused("payout_refused", code="scope", what=f"申请 {claim.number}")
    try:
        r = record_failure(ctx.session, batch.number, claim.number, " ".join(args[2:]),
                           ctx.openid, ctx.today)
    except PayoutError as e:
        raise _refused(e)
    return [Reply(render("payout_failure_recorded", batch=r.batch, claim=r.claim,
                         amount_fen=r.amount_fen, after_confirm=r.after_confirm,
                         card_deactivated=r.card_deactivated))]
