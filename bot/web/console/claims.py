"""The claims queue and the claim page: the photos side by side, the OCR read-out beside the
fields it fills, the DRG search, the rule's trace, and the forms for 核定 / 通过 / 驳回 / 补件 /
复核 — each form runs the chat command (common.run_command)."""
from __future__ import annotations

from flask import request, send_file
from sqlalchemy import select

from bot.web.console import bp
from bot.web.console.common import (app_ctx, db, g, not_found, page, require, run_command, today)
from core import console_queries as cq
from core import scheme_years
from core.adjudication import INSURANCE_NAMES, REVIEWER_REJECTION_CODES
from core.audit import audit
from core.catalog import group_names
from core.media import path_for
from core.models import AdminRole, Claim, ClaimDocument, ClaimStatus as S
from core.review import (DOCUMENTS_FROM, RECORDABLE, REJECTABLE, ReviewError, calculation_line, drg_search, find_claim, ocr_readout,
                         reason_title, stored_facts)

DECIDE_ROLES = frozenset({AdminRole.reviewer, AdminRole.pool_admin, AdminRole.super})
ACTIONS = {"record": "核定", "approve": "通过", "reject": "驳回", "documents": "补件",
           "appeal": "复核"}


def _statuses(value: str):
    if not value:
        return cq.WAITING
    try:
        return (S(value),)
    except ValueError:
        return cq.WAITING


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@bp.get("/claims")
def claims():
    who = g.who
    status = request.args.get("status", "")
    village_id = _int(request.args.get("village"))
    villages = cq.village_choices(db(), who.scope)
    if village_id is not None and village_id not in {v.id for v in villages}:
        return not_found()
    listing = cq.claims(db(), who.scope, _statuses(status), village_id,
                        offset=max(_int(request.args.get("offset"), 0), 0))
    audit(db(), who.openid, "review.queue", "claim", None, None,
          {"total": listing.total, "via": "console"})
    return page("claims.html", listing=listing, status=status, village_id=village_id,
                villages=villages, statuses=[st.value for st in S], today=today(),
                duplicates=lambda c: _dups(c.flags or {}))


def _dups(flags: dict) -> list[str]:
    numbers = flags.get("possible_duplicate") or []
    return [numbers] if isinstance(numbers, str) else [str(n) for n in numbers] \
        if isinstance(numbers, list) else []


def _visible_claim(number: str) -> Claim | None:
    try:
        claim = find_claim(db(), number)
    except ReviewError:
        return None
    if not g.who.scope.covers_village(claim.household.village):
        audit(db(), g.who.openid, "admin.refused", "claim", claim.number, None,
              {"why": "out_of_scope", "via": "console"})
        return None
    return claim


def _form_values(claim: Claim, readout: dict) -> dict:
    """The 核定 form's values: the recorded facts, else the good OCR values, else what the
    household typed."""
    facts = stored_facts(claim)
    if facts is not None:
        return {"drg": facts.drg_code, "amount": f"{facts.out_of_pocket_fen / 100:.2f}",
                "admission": facts.admission_date.isoformat(),
                "discharge": facts.discharge_date.isoformat(),
                "insurance": facts.insurance, "hospital": facts.hospital or ""}

    def good(field):
        entry = readout.get(field) or {}
        return entry.get("value") if entry.get("good") else None

    stated = claim.stated or {}
    fen = good("out_of_pocket_fen") or stated.get("out_of_pocket_fen")
    admission, discharge = good("admission_date"), good("discharge_date")
    return {"drg": request.args.get("code", ""),
            "amount": f"{fen / 100:.2f}" if isinstance(fen, int) else "",
            "admission": admission.isoformat() if admission else "",
            "discharge": discharge.isoformat() if discharge
            else str(stated.get("discharge_date") or ""),
            "insurance": good("insurance") or claim.member.insurance.value,
            "hospital": good("hospital") or ""}


def _claim_page(claim: Claim, result: str | None = None, http: int = 200):
    who = g.who
    readout = ocr_readout(claim)
    values = _form_values(claim, readout)
    if request.args.get("code"):
        values["drg"] = request.args["code"][:16]
    search = request.args.get("drg", "").strip()[:40]
    found = []
    if search:
        year = scheme_years.of_claim(db(), claim) or scheme_years.running(
            db(), claim.household.pool_id, today())
        found = drg_search(db(), search, year, limit=12)
    drg_name = group_names(db(), [claim.drg_code]).get(claim.drg_code) if claim.drg_code \
        else None
    from bot.discover import load_handlers
    from handlers.admin import COMMANDS

    load_handlers()
    can_decide = bool(who.chat_scope.roles & DECIDE_ROLES) and \
        who.chat_scope.covers_pool(claim.household.pool_id)
    audit(db(), who.openid, "review.view", "claim", claim.number, None,
          {"documents": len(claim.documents), "via": "console"})
    reviewer_codes = ["incomplete_documents", "unreadable_documents", "fraud"]
    reviewer_codes += sorted(c for c in REVIEWER_REJECTION_CODES if c not in reviewer_codes)
    return page("claim.html", http=http, claim=claim, result=result, readout=readout,
                values=values, search=search, found=found, drg_name=drg_name,
                insurance_names=INSURANCE_NAMES, can_decide=can_decide,
                calculation=calculation_line(claim.trace or []),
                titles=[reason_title(c) for c in claim.reasons or []],
                computed=[(c, reason_title(c)) for c in claim.reasons or []],
                reviewer_codes=[(c, reason_title(c)) for c in reviewer_codes],
                appeals="复核" in COMMANDS, duplicates=_dups(claim.flags or {}),
                forms={"record": claim.status in RECORDABLE,
                       "approve": claim.status is S.in_review and claim.amount_fen is not None,
                       "reject": claim.status in REJECTABLE,
                       "documents": claim.status in DOCUMENTS_FROM,
                       "appeal": claim.status.value == "appealed"},
                today=today())


@bp.get("/claims/<number>")
def claim(number: str):
    claim = _visible_claim(number)
    if claim is None:
        return not_found()
    return _claim_page(claim)


@bp.get("/claims/<number>/photos/<int:document_id>")
def photo(number: str, document_id: int):
    claim = _visible_claim(number)
    doc = db().get(ClaimDocument, document_id)
    require(claim is not None and doc is not None and doc.claim_id == claim.id)
    require(doc.sha256 and doc.content_type)
    try:
        path = path_for(app_ctx().cfg.data_dir, doc.sha256, doc.content_type)
    except KeyError:
        path = None
    require(path is not None and path.is_file())
    audit(db(), g.who.openid, "review.document", "claim_document", doc.id, None,
          {"claim": claim.number, "kind": doc.kind.value if doc.kind else None,
           "via": "console"})
    return send_file(path, mimetype=doc.content_type, max_age=0, conditional=False)


def _args(action: str, number: str) -> list[str]:
    f = request.form
    if action == "record":
        drg = f.get("drg", "").strip()
        if f.get("short") == "1":
            return [number, drg]
        return [number, drg, f.get("amount", "").strip(), f.get("admission", "").strip(),
                f.get("discharge", "").strip(),
                f.get("insurance", "").strip(),
                *f.get("hospital", "").split()]
    if action == "approve":
        return [number]
    if action == "reject":
        return [number, f.get("reason", "").strip(), *f.get("text", "").split()]
    if action == "documents":
        return [number, *f.get("text", "").split()]
    if action == "appeal":
        return [number, f.get("outcome", "").strip(), *f.get("text", "").split()]
    return [number]


@bp.post("/claims/<number>/<action>")
def act(number: str, action: str):
    claim = _visible_claim(number)
    if claim is None or action not in ACTIONS:
        return not_found()
    result = run_command(ACTIONS[action], _args(action, claim.number))
    db().flush()
    db().expire_all()
    claim = db().scalar(select(Claim).where(Claim.number == claim.number))
    return _claim_page(claim, result=result)
