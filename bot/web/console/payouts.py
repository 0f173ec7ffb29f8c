"""Payouts: the next batch's preview, the batches, a batch's lines with confirm and failed
transfer forms (the chat's /确认发放 and /发放失败), and the bank file — downloaded by a POST
that names the batch number typed again, audited."""
from __future__ import annotations

from pathlib import Path

from flask import request, send_file
from sqlalchemy import select

from bot.web.console import bp
from bot.web.console.common import (app_ctx, console_text, db, g, handler_ctx, not_found,
                                    page, run_command)
from core.audit import audit
from core.models import AdminRole, Claim, Household, PayoutBatch, PayoutLine, Village
from core.payouts import (PayoutError, bank_rows, batch_file, find_batch, list_batches,
                          write_bank_file)

PAYOUT_ROLES = {AdminRole.village_admin, AdminRole.pool_admin, AdminRole.super}


def _scope():
    """The payout scope of the chat commands, widened by auditor grants for reading; None for
    an administrator the chat gives no payouts (a reviewer): every page 404."""
    from handlers.admin_payouts import PayoutScope, payout_scope

    ctx = handler_ctx()
    ps = payout_scope(ctx)
    who = g.who
    if AdminRole.auditor in who.scope.roles:
        ps = PayoutScope(ps.everything or who.scope.everything,
                         ps.pool_ids | who.scope.pool_ids, ps.village_ids)
    if not (who.scope.roles & (PAYOUT_ROLES | {AdminRole.auditor})):
        return ctx, None
    return ctx, ps


def _batch(number: str):
    from handlers.admin_payouts import covers_batch

    ctx, ps = _scope()
    if ps is None:
        return None
    try:
        batch = find_batch(db(), number)
    except PayoutError:
        return None
    return batch if covers_batch(ctx, ps, batch) else None


@bp.get("/payouts")
def payouts():
    from handlers.admin_payouts import preview

    ctx, ps = _scope()
    if ps is None:
        return not_found()
    shown = preview(ctx, sample=20, ps=ps)
    pools = {s["pool"].code for s in shown}
    batches = [b for b in list_batches(db()) if b["pool"] in pools]
    audit(db(), g.who.openid, "payout.preview", "pool", None, None,
          {"pools": [{"pool": s["pool"].code, "lines": s["lines"], "total_fen": s["total_fen"]}
                     for s in shown], "via": "console"})
    return page("payouts.html", pools=shown, batches=batches)


def _batch_page(batch: PayoutBatch, result: str | None = None, http: int = 200):
    lines = db().execute(
        select(PayoutLine, Claim.number, Household.number, Village.name)
        .join(Claim, Claim.id == PayoutLine.claim_id)
        .join(Household, Household.id == Claim.household_id)
        .join(Village, Village.id == Household.village_id)
        .where(PayoutLine.batch_id == batch.id).order_by(PayoutLine.id)).all()
    summary = next((b for b in list_batches(db()) if b["batch"] == batch.number), None)
    can_pay = bool(g.who.chat_scope.roles & PAYOUT_ROLES)
    return page("batch.html", http=http, batch=batch, lines=lines, summary=summary,
                result=result, can_pay=can_pay)


@bp.get("/payouts/<number>")
def batch(number: str):
    b = _batch(number)
    if b is None:
        return not_found()
    return _batch_page(b)


@bp.post("/payouts/<number>/confirm")
def confirm(number: str):
    b = _batch(number)
    if b is None:
        return not_found()
    result = run_command("确认发放", [b.number])
    db().expire_all()
    return _batch_page(db().get(PayoutBatch, b.id), result)


@bp.post("/payouts/<number>/failed")
def failed(number: str):
    b = _batch(number)
    if b is None:
        return not_found()
    claim = request.form.get("claim", "").strip()
    result = run_command("发放失败", [b.number, claim, *request.form.get("text", "").split()])
    db().expire_all()
    return _batch_page(db().get(PayoutBatch, b.id), result)


@bp.post("/payouts/<number>/file")
def bank_file(number: str):
    b = _batch(number)
    if b is None:
        return not_found()
    typed = request.form.get("number", "").strip().upper()
    if typed != b.number.upper():
        audit(db(), g.who.openid, "admin.refused", "payout_batch", b.number, None,
              {"why": "number_mismatch", "via": "console"})
        return _batch_page(b, console_text("batch_number_again"), 400)
    if not (g.who.chat_scope.roles & PAYOUT_ROLES):
        return not_found()
    x = app_ctx()
    path = Path(b.file_path) if b.file_path else batch_file(x.cfg.data_dir, b)
    if not path.is_file():  # written again from the stored lines, as the run does
        path = batch_file(x.cfg.data_dir, b)
        write_bank_file(path, b.number, bank_rows(db(), x.vault, b.id))
    audit(db(), g.who.openid, "payout.file_download", "payout_batch", b.number, None,
          {"file": path.name, "via": "console"})
    return send_file(path, as_attachment=True, download_name=f"{b.number}.xlsx",
                     mimetype="application/vnd.openxmlformats-officedocument."
                              "spreadsheetml.sheet", max_age=0, conditional=False)
