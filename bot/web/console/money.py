"""Payments (exceptions with resolve; offline payments with the chat's exact-amount rule, in two
steps like `/收款` and its 确认) and the fund (the report of `huzhu report fund`, monthly
charts, the year report, the quarterly report as xlsx)."""
from __future__ import annotations

import io
from datetime import timedelta
from functools import lru_cache

import yaml
from flask import request, send_file
from sqlalchemy import select

from bot.web.console import bp
from bot.web.console.common import (console_text, db, g, handler_ctx, message, not_found, page,
                                     today)
from core import scheme_years
from core.audit import audit
from core.config import TEMPLATES_DIR
from core.models import AdminRole, PaymentException, PaymentOrder, Pool
from core.payments import PaymentError, resolve_exception
from core.quarterly import (PeriodError, monthly, parse_quarter, quarter_of, quarter_report,
                            write_quarter_xlsx)
from core.reports import fund_report
from core.stats import year_report

PAYMENT_ROLES = {AdminRole.village_admin, AdminRole.pool_admin, AdminRole.super}


def _exceptions() -> list[tuple[PaymentException, object]]:
    """Open exceptions whose household is in the scope (unknown households: every pool's
    administrators only)."""
    scope = g.who.scope
    out = []
    rows = db().execute(select(PaymentException, PaymentOrder)
                        .outerjoin(PaymentOrder,
                                   PaymentOrder.out_trade_no == PaymentException.out_trade_no)
                        .where(PaymentException.resolved_at.is_(None))
                        .order_by(PaymentException.id)).all()
    for exc, order in rows:
        household = order.household if order is not None else None
        if (scope.everything if household is None else scope.covers_village(household.village)):
            out.append((exc, household))
    return out


def _payments_page(result: str | None = None, confirm: dict | None = None, http: int = 200):
    if not (g.who.scope.roles & (PAYMENT_ROLES | {AdminRole.auditor})):
        return not_found()
    return page("payments.html", http=http, exceptions=_exceptions(), result=result,
                confirm=confirm, can_pay=bool(g.who.chat_scope.roles & PAYMENT_ROLES),
                form=request.form if request.method == "POST" else {})


@bp.get("/payments")
def payments():
    return _payments_page()


@bp.post("/payments/exceptions/<int:exception_id>/resolve")
def resolve(exception_id: int):
    if not (g.who.chat_scope.roles & PAYMENT_ROLES):
        return not_found()
    if exception_id not in {e.id for e, _ in _exceptions()}:
        return not_found()
    note = request.form.get("note", "").strip()[:200]
    if not note:
        return _payments_page(console_text("exception_note_missing"), http=400)
    try:
        resolve_exception(db(), exception_id, g.who.openid, note)
    except PaymentError:
        return not_found()
    return _payments_page(console_text("exception_resolved", number=exception_id))


@bp.post("/payments/offline")
def offline():
    from handlers.admin import Refused
    from handlers.admin_payments import confirmed, refusal, summary

    ctx = handler_ctx()
    f = request.form
    number, amount, channel = (f.get("household", "").strip(), f.get("amount", "").strip(),
                               f.get("channel", "现金"))
    try:
        data, text = summary(ctx, number, amount, channel)
    except Refused as r:
        return _payments_page(refusal(ctx, {"household": number, "amount_fen": amount,
                                            "channel": channel}, r))
    if f.get("confirm") != "1":
        return _payments_page(confirm={**data, "text": text, "channel_word": channel})
    g.wake = True
    return _payments_page(confirmed(ctx, data))


# -- the fund ----------------------------------------------------------------------------------

def _pools() -> list[Pool]:
    return g.who.scope.pools(db())


def _pool() -> Pool | None:
    pools = _pools()
    code = request.args.get("pool", "")
    if not code:
        return pools[0] if pools else None
    return next((p for p in pools if p.code == code), None)


@lru_cache(maxsize=1)
def quarter_labels() -> dict:
    with open(TEMPLATES_DIR / "console" / "quarter_labels.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@bp.get("/fund")
def fund():
    pool = _pool()
    if pool is None:
        return not_found()
    day = today()
    report = fund_report(db(), pool, day)
    year = scheme_years.running(db(), pool.id, day) or scheme_years.for_report(db(), pool.id,
                                                                               day)
    months, yearly = [], None
    if year is not None:
        months = monthly(db(), pool.id, year.start, min(year.end, day) + timedelta(days=1))
        yearly = year_report(db(), pool.id, year)
    peak = max([m["income_fen"] for m in months] + [m["paid_fen"] for m in months] + [1])
    audit(db(), g.who.openid, "report.fund", "pool", pool.code, None, {"via": "console"})
    return page("fund.html", pool=pool, pools=_pools(), report=report, months=months,
                peak=peak, yearly=yearly, quarter=quarter_of(day))


@bp.get("/fund/quarterly.xlsx")
def quarterly():
    pool = _pool()
    if pool is None:
        return not_found()
    try:
        year, q = parse_quarter(request.args.get("quarter", ""))
    except PeriodError as e:
        return message(console_text("quarter_bad.title"), str(e), http=400, link="/admin/fund")
    report = quarter_report(db(), pool.id, year, q)
    buf = io.BytesIO()
    write_quarter_xlsx(report, buf, quarter_labels())
    buf.seek(0)
    audit(db(), g.who.openid, "report.quarterly", "pool", pool.code, None,
          {"quarter": report["quarter"], "via": "console"})
    return send_file(buf, as_attachment=True,
                     download_name=f"{pool.code}-{report['quarter']}.xlsx",
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                     max_age=0)
