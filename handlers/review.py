"""Reviewer commands (SPEC "Administrator commands"): /待审 /查看 /核定 /通过 /驳回 /补件, and
/病种 to look up a DRG group.

Roles: reviewers, pool administrators and super administrators review and decide within their
scope (a reviewer bound to a pool: that pool; bound to none: every pool). Village administrators
may look (/待审, /查看 for their villages) but not decide: the decision belongs to the reviewer
(the seeds' third-party service) and the pool. Every command writes an audit row; a refusal
(out of scope, unknown claim, bad arguments, a state that does not allow it) is audited by
handlers.admin and changes nothing else.
"""
from __future__ import annotations

from core.adjudication import INSURANCE_NAMES, REVIEWER_REJECTION_CODES
from core import scheme_years
from core.admins import Scope
from core.audit import audit
from core.catalog import group_names
from core.review.texts import exclusion_labels
from core.messages import render
from core.models import AdminRole, Claim
from core.claims import has_bank_card
from core.review import (ReviewError, approve, calculation_line, document_url, facts_from_ocr,
                         failed_steps, find_claim, ocr_readout, queue, queue_lines, reason_title,
                         record, reject, request_documents, stored_facts)
from handlers.admin import Refused, command, usage
from handlers.review_grammar import parse_record
from handlers.types import Ctx, Reply

VIEW_ROLES = frozenset({AdminRole.reviewer, AdminRole.village_admin, AdminRole.pool_admin,
                        AdminRole.super})
DECIDE_ROLES = frozenset({AdminRole.reviewer, AdminRole.pool_admin, AdminRole.super})
# who confirms what waits for the village (handlers/admin_village.py)
CONFIRM_ROLES = frozenset({AdminRole.village_admin, AdminRole.pool_admin, AdminRole.super})
QUEUE_LIMIT = 15

_BAD_INPUT = {"bad_args", "bad_drg", "bad_amount", "bad_date", "dates_order", "future_date",
              "bad_insurance", "bad_reason", "text_required", "text_too_long", "ocr_missing"}


def _refused(e: ReviewError, name: str, number: str | None = None,
             claim: Claim | None = None) -> Refused:
    """A ReviewError as the refusal the admin reads (with the usage line for bad input)."""
    context = dict(e.details, code=e.code, usage=usage(name), name=name)
    context.setdefault("number", number)
    if e.code == "unknown_claim":
        return Refused("review_unknown_claim", **context)
    if e.code in _BAD_INPUT:
        return Refused("review_bad_input", reviewer_codes=_reviewer_codes(claim), **context)
    return Refused("review_not_allowed", reviewer_codes=_reviewer_codes(claim), **context)


def _reviewer_codes(claim: Claim | None = None) -> list[dict]:
    """The codes a reviewer may reject with: documents and fraud, then the exclusions of the
    claim's scheme (the built-in kinds without a claim)."""
    order = ["incomplete_documents", "unreadable_documents", "fraud"]
    labels = exclusion_labels(claim)
    if labels:
        order += [f"excluded_{code}" for code in labels]
    else:
        order += sorted(c for c in REVIEWER_REJECTION_CODES if c not in order)
    return [{"code": c, "title": reason_title(c, claim)} for c in order]


def _claim(ctx: Ctx, scope: Scope, name: str, number: str, decide: bool) -> Claim:
    """The claim named in a command, within the admin's scope (for deciding: the pools held
    as reviewer or administrator; for looking: also a village administrator's villages)."""
    try:
        claim = find_claim(ctx.session, number, lock=decide)
    except ReviewError as e:
        raise _refused(e, name)
    household = claim.household
    covered = (scope.covers_pool(household.pool_id) if decide
               else scope.covers_village(household.village))
    if not covered:
        raise Refused("review_out_of_scope", number=claim.number)
    return claim


def _can_decide(scope: Scope) -> bool:
    return bool(scope.roles & DECIDE_ROLES)


# ---------------------------------------------------------------------------------------------

@command("待审", roles=VIEW_ROLES)
def queue_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    from core.confirmations import waiting

    claims, total = queue(ctx.session, scope, limit=QUEUE_LIMIT)
    village = (waiting(ctx.session, scope) if scope.roles & CONFIRM_ROLES
               else {"households": [], "claims": [], "more": 0})
    audit(ctx.session, ctx.openid, "review.queue", "claim", None, None,
          {"total": total, "shown": [c.number for c in claims]})
    return [Reply(render("review_queue", claims=queue_lines(claims, ctx.today), total=total,
                         can_decide=_can_decide(scope), village=village))]


@command("查看", roles=VIEW_ROLES, min_args=1)
def view_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    claim = _claim(ctx, scope, "查看", args[0], decide=False)
    member = claim.member
    documents = [{"kind": d.kind.value if d.kind else "other",
                  "url": document_url(ctx.cfg, d.id, ctx.openid),
                  "received": bool(d.sha256)} for d in claim.documents]
    readout = ocr_readout(claim)
    facts = stored_facts(claim)
    drg_name = group_names(ctx.session, [claim.drg_code]).get(claim.drg_code) if claim.drg_code \
        else None
    audit(ctx.session, ctx.openid, "review.view", "claim", claim.number, None,
          {"documents": len(documents)})
    replies = [Reply(render(
        "review_claim", claim=claim, member=_masked(member.name),
        member_id=member.id_number_masked, member_insurance=INSURANCE_NAMES[member.insurance.value],
        household=claim.household, today=ctx.today,
        submitted=_local_date(ctx, claim.submitted_at), documents=documents, readout=readout,
        appealed=_local_date(ctx, claim.appealed_at),
        stated=_stated(claim.stated or {}), duplicates=_duplicates(claim.flags or {}), facts=facts,
        drg_name=drg_name,
        insurance_names=INSURANCE_NAMES, can_decide=_can_decide(scope),
        calculation=calculation_line(claim.trace or []),
        titles=[reason_title(c, claim) for c in claim.reasons or []]))]
    if claim.trace:
        replies.append(Reply(render("review_trace", claim=claim,
                                    lines=[s["text"] for s in claim.trace])))
    return replies


def _stated(stated: dict) -> dict:
    """What the household typed (claim.stated), ready to show: an amount in fen, a date."""
    from datetime import date

    out = {}
    if isinstance(stated.get("out_of_pocket_fen"), int):
        out["out_of_pocket_fen"] = stated["out_of_pocket_fen"]
    if stated.get("discharge_date"):
        try:
            out["discharge_date"] = date.fromisoformat(str(stated["discharge_date"]))
        except ValueError:
            pass
    return out


def _duplicates(flags: dict) -> list[dict]:
    """flags["possible_duplicate"] (other claims' numbers) with how each matched
    (flags["duplicate_matches"]: the same file, or a similar picture)."""
    numbers = flags.get("possible_duplicate") or []
    if isinstance(numbers, str):
        numbers = [numbers]
    elif not isinstance(numbers, list):
        numbers = []
    matches = [m for m in flags.get("duplicate_matches") or [] if isinstance(m, dict)]
    out = []
    for number in numbers:
        hows = {m.get("match") for m in matches if m.get("claim") == number}
        out.append({"number": str(number), "same_file": "sha256" in hows,
                    "similar": "phash" in hows})
    return out


def _local_date(ctx: Ctx, when):
    from core.outbox import as_utc

    return as_utc(when).astimezone(ctx.cfg.tz).date() if when else None


def _masked(name: str) -> str:
    from core.crypto import mask_name

    return mask_name(name)


@command("核定", roles=DECIDE_ROLES, min_args=2)
def record_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    claim = _claim(ctx, scope, "核定", args[0], decide=True)
    short = len(args) == 2
    insurance_from_member = False
    try:
        form = parse_record(args[1:], ctx.today)
        if form.short:
            found = facts_from_ocr(claim, form.drg_code, ctx.today)
            if found.facts is None:
                raise ReviewError("ocr_missing", missing=list(found.missing))
            facts, insurance_from_member = found.facts, found.insurance_from_member
        else:
            facts = form.facts
        decision = record(ctx.session, claim, facts, ctx.openid, today=ctx.today,
                          source="ocr" if short else "reviewer")
    except ReviewError as e:
        raise _refused(e, "核定", claim.number)
    names = group_names(ctx.session, [facts.drg_code])
    return [Reply(render(
        "review_decision", claim=claim, facts=facts, decision=decision, short=short,
        insurance_from_member=insurance_from_member, drg_name=names.get(facts.drg_code),
        insurance=INSURANCE_NAMES[facts.insurance], calculation=calculation_line(claim.trace),
        titles=[reason_title(c, claim) for c in decision.reasons],
        steps=failed_steps(claim.trace, decision.reasons)))]


@command("通过", roles=DECIDE_ROLES, min_args=1)
def approve_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    claim = _claim(ctx, scope, "通过", args[0], decide=True)
    try:
        approve(ctx.session, claim, ctx.openid, today=ctx.today)
    except ReviewError as e:
        raise _refused(e, "通过", claim.number)
    return [Reply(render("review_approved", claim=claim,
                         has_card=has_bank_card(ctx.session, claim.household_id)))]


@command("驳回", roles=DECIDE_ROLES, min_args=2)
def reject_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    claim = _claim(ctx, scope, "驳回", args[0], decide=True)
    text = " ".join(args[2:]).strip() or None
    try:
        reasons = reject(ctx.session, claim, args[1], text, ctx.openid, today=ctx.today)
    except ReviewError as e:
        raise _refused(e, "驳回", claim.number, claim)
    return [Reply(render("review_rejected", claim=claim,
                         titles=[reason_title(c, claim) for c in reasons]))]


@command("补件", roles=DECIDE_ROLES, min_args=2)
def documents_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    claim = _claim(ctx, scope, "补件", args[0], decide=True)
    try:
        request_documents(ctx.session, claim, " ".join(args[1:]), ctx.openid)
    except ReviewError as e:
        raise _refused(e, "补件", claim.number)
    return [Reply(render("review_need_documents", claim=claim))]


@command("病种", roles=VIEW_ROLES, min_args=1)
def drg_command(ctx: Ctx, scope: Scope, args: list[str]) -> list[Reply]:
    from core.review import drg_search

    text = " ".join(args)
    pools = scope.pools(ctx.session)
    year = scheme_years.running(ctx.session, pools[0].id, ctx.today) if pools else None
    found = drg_search(ctx.session, text, year)
    audit(ctx.session, ctx.openid, "review.drg_search", None, None, None,
          {"text": text[:40], "found": len(found)})
    return [Reply(render("review_drg", text=text, groups=found,
                         pool=pools[0] if pools else None, has_year=year is not None))]

