"""`/测算` (pool and super administrators): the quota designer's summary for each of the
admin's pools' running scheme year — the designed quotas against the money raised, a simulated
year's risk — with a link to the picture (served by bot/web/design_chart.py). Reads only."""
from __future__ import annotations

from core.admins import Scope
from core.design import DesignError
from core.design.outputs import percent
from core.design.service import chart_url, for_pool
from core.messages import render
from core.models import AdminRole
from handlers.admin import Refused, command
from handlers.types import Ctx, Reply

DESIGN_ROLES = frozenset({AdminRole.pool_admin, AdminRole.super})
DESIGN_POOLS = 3  # pools answered in one reply (a super administrator may have many)


@command("测算", roles=DESIGN_ROLES)
def _design(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    pools = scope.pools(ctx.session)
    if not pools:
        raise Refused("design_no_pool")
    answers = []
    for pool in pools[:DESIGN_POOLS]:
        try:
            result = for_pool(ctx.session, pool, ctx.today)
        except DesignError as exc:
            answers.append({"pool": pool, "error": str(exc)})
            continue
        d, sim = result.design, result.simulation.to_json()
        answers.append({"pool": pool, "error": None, "year": result.facts.year, "design": d,
                        "sim": sim, "p_exhaust": percent(sim["p_exhaust"]),
                        "url": chart_url(ctx.cfg, pool.id)})
    more = max(len(pools) - DESIGN_POOLS, 0)
    return [Reply(render("design_summary", answers=answers, more=more))]
