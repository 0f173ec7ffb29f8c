"""`查病种 <关键词或代码>` (SPEC "DRG look-up"): DRG groups by name or code with this year's
quota of the asker's pool, the threshold for the household's insurance types and what to send
to claim — a short list (at most LIMIT groups; more: the user is asked for a closer word)."""
from __future__ import annotations

from sqlalchemy import select

from core import scheme_years
from core.households import household_for_user
from core.messages import render
from core.models import Pool, Village
from core.review import drg_count, drg_search
from handlers.dialogue import Dialogue, register, say
from handlers.types import Ctx, Incoming

WORD = "查病种"
LIMIT = 6
INSURANCE_ORDER = ("resident", "employee", "uninsured")


def _pool_and_types(ctx: Ctx) -> tuple[int | None, list[str]]:
    """The asker's pool and the insurance types to show thresholds for: the household's
    members' types; without a household, every type (pool from the village QR code, or the
    only pool)."""
    household = household_for_user(ctx.session, ctx.openid)
    if household is not None:
        kinds = {m.insurance.value for m in household.members}
        return household.pool_id, [k for k in INSURANCE_ORDER if k in kinds]
    if ctx.user.village_id is not None:
        village = ctx.session.get(Village, ctx.user.village_id)
        if village is not None:
            return village.pool_id, list(INSURANCE_ORDER)
    pools = list(ctx.session.scalars(select(Pool.id).limit(2)))
    return (pools[0] if len(pools) == 1 else None), list(INSURANCE_ORDER)


def _entry(ctx: Ctx, msg: Incoming, data: dict):
    words = msg.text[len(WORD):].strip() if msg.text.startswith(WORD) else ""
    if not words:
        return say(render("drg_lookup_usage"))
    words = words[:20]
    pool_id, kinds = _pool_and_types(ctx)
    year = scheme_years.running(ctx.session, pool_id, ctx.today) if pool_id else None
    groups = drg_search(ctx.session, words, year, limit=LIMIT)
    total = drg_count(ctx.session, words) if len(groups) == LIMIT else len(groups)
    thresholds, documents = [], {}
    if year is not None:
        fen = year.scheme.claims.thresholds_fen
        thresholds = [{"kind": k, "fen": fen.get(k)} for k in kinds]
        # what to photograph, per insurance type that may be subsidized (the uninsured: 发票)
        documents = {k: list(year.scheme.claims.documents_for(k)) for k in kinds
                     if fen.get(k) is not None}
    return say(render("drg_lookup", text=words, groups=groups, total=total, year=year,
                      pool=ctx.session.get(Pool, pool_id) if pool_id else None,
                      thresholds=thresholds, documents=documents))


register(Dialogue("drg_lookup", _entry, {}, words=(WORD,)))
