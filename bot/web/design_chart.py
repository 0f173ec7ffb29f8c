"""The quota designer's picture for `/测算`: `GET /design/<token>.png`.

The link is signed with the server's secret and names a pool (core.design.service.chart_url),
valid three days. The picture is drawn when the link is opened, from the same inputs as the
answer (the running year, its paid members, the same seed), so it shows the same figures. It
holds the fund's totals only, no person: like the monthly disclosure, no sign-in is asked. A
forged or expired link, or a pool that cannot be designed now, gets 404 and nothing else."""
from __future__ import annotations

import logging
from datetime import datetime

from flask import Blueprint, Response, current_app

from core.design import DesignError
from core.design.outputs import chart
from core.design.service import for_pool, read_chart_token
from core.fonts import FontError
from core.models import Pool

log = logging.getLogger("huzhu.design")
bp = Blueprint("design_chart", __name__)


@bp.get("/design/<token>.png")
def picture(token: str):
    x = current_app.extensions["huzhu"]
    pool_id = read_chart_token(x.cfg, token)
    if pool_id is None:
        return Response("not found", status=404, mimetype="text/plain")
    today = datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        pool = s.get(Pool, pool_id)
        if pool is None:
            return Response("not found", status=404, mimetype="text/plain")
        try:
            result = for_pool(s, pool, today)
        except DesignError:
            return Response("not found", status=404, mimetype="text/plain")
        s.rollback()
    try:
        data = chart(result.design, result.simulation)
    except FontError as exc:
        log.warning("design picture: %s", exc)
        return Response("no font", status=503, mimetype="text/plain")
    return Response(data, mimetype="image/png")  # the app's headers: no-store, nosniff, …
