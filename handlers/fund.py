"""`6 基金公示`: the pool's income by source, subsidies paid, service fees, balance, members and
claims this year, from the ledger — for the pool of the user's household, else of the user's
village tag; anyone else picks a village first (the choice is kept as the user's village tag)."""
from __future__ import annotations

from sqlalchemy import select

from core.admins import find_village
from core.households import household_for_user
from core.messages import render
from core.models import Pool, Village
from core.stats import fund_overview
from handlers.dialogue import Dialogue, register, say
from handlers.types import Ctx, Incoming

LIST_AT_MOST = 20  # villages offered as a numbered list; more: the user types the name


def _pool_id(ctx: Ctx) -> int | None:
    household = household_for_user(ctx.session, ctx.openid)
    if household is not None:
        return household.pool_id
    if ctx.user.village_id is not None:
        village = ctx.session.get(Village, ctx.user.village_id)
        return village.pool_id if village else None
    return None


def _show(ctx: Ctx, pool_id: int):
    return say(render("fund_overview", f=fund_overview(ctx.session, pool_id, ctx.today)))


def _entry(ctx: Ctx, msg: Incoming, data: dict):
    pool_id = _pool_id(ctx)
    if pool_id is not None:
        return _show(ctx, pool_id)
    pools = list(ctx.session.scalars(select(Pool.id).order_by(Pool.id)))
    if not pools:
        return say(render("fund_no_pool"))
    if len(pools) == 1:
        return _show(ctx, pools[0])
    villages = list(ctx.session.scalars(select(Village).order_by(Village.id)))
    listed = villages if len(villages) <= LIST_AT_MOST else []
    return say(render("fund_pick_village", villages=listed, example=villages[0].name),
               state="pick", data={"villages": [v.id for v in listed],
                                   "example": villages[0].name})


def _pick(ctx: Ctx, msg: Incoming, data: dict):
    ids = data.get("villages") or []
    text = msg.text.strip()
    village = None
    if text.isdigit() and 1 <= int(text) <= len(ids):
        village = ctx.session.get(Village, ids[int(text) - 1])
    elif text:
        village = find_village(ctx.session, text)
    if village is None:
        listed = [ctx.session.get(Village, i) for i in ids]
        return say(render("fund_pick_again", text=text[:20], villages=listed,
                          example=data.get("example", "")),
                   state="pick", data=data)
    ctx.user.village_id = village.id
    return _show(ctx, village.pool_id)


register(Dialogue("fund", _entry, {"pick": _pick}))
