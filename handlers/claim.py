"""申请补助 — the claim dialogue of SPEC "Claim".

Member choice (numbered, skipped for a one-member household; only a member with a paid enrolment
may claim, anyone else is told why and what to do), then photos in any order: a photo is answered
at once with what is still missing when it was labelled (`出院记录` / `费用清单` / `结算单` sent
before it), else with "recognising…" and, a second later, a push from the photo deliverer
(bot/outbox/media.py) saying what it was and what is still missing — or asking `1 出院记录
2 费用清单 3 结算单` when OCR cannot tell. Optional texts: the out-of-pocket amount and the
discharge date (stored in claim.stated). `提交` once all three kinds are there or can be made up by
photos still being read (never waiting for OCR): the claim number and the review due date; the
dialogue then stays in `labels` while photos are read, to take the answer when OCR cannot tell.

An image sent outside any dialogue starts this dialogue (the router does so for the dialogue
named "claim"). A claim the reviewer sent back (`need_documents`) takes new photos the same way
and `提交` sends it back to `submitted`.
"""
from __future__ import annotations

import re
from datetime import date, timedelta

from sqlalchemy import func, select

from core import claims as svc
from core.claims import ClaimError
from core.crypto import mask_name
from core.households import household_for_user
from core.messages import render
from core.models import AuditLog, Claim, ClaimDocument, ClaimStatus as S, DocumentKind, Member
from core.money import parse_yuan
from handlers.dialogue import Dialogue, Step, pass_on, register, say
from handlers.types import Ctx, Incoming

K = DocumentKind
LABELS = {"出院记录": K.discharge_record, "出院小结": K.discharge_record,
          "出院证明": K.discharge_record,
          "费用清单": K.itemized_bill, "住院费用清单": K.itemized_bill, "费用明细": K.itemized_bill,
          "清单": K.itemized_bill,
          "结算单": K.settlement_sheet, "医保结算单": K.settlement_sheet,
          "报销单": K.settlement_sheet, "医保报销单": K.settlement_sheet,
          "发票": K.invoice, "住院发票": K.invoice, "收费票据": K.invoice}
NUMBERS = {"1": K.discharge_record, "2": K.itemized_bill, "3": K.settlement_sheet}
SUBMIT_WORDS = ("提交", "提交申请")
DELETE_WORDS = ("删除", "删掉", "不要了")
CLAIM_WORDS = ("申请补助", "MENU_CLAIM", "补件")
PROGRESS_NUMBER = "4"
MAX_PENDING = 10  # photos kept while the member is not chosen yet

_AMOUNT = re.compile(r"^(?:个人)?(?:自付|自付金额|自费|花了|共)?[:：]?\s*"
                     r"(\d{1,3}(?:[,，]\d{3})+|\d+)(?:\.(\d{1,2}))?\s*(?:元|块)?$")
_DATE = re.compile(r"^(?:出院)?(?:日期|时间)?[:：]?(?:(\d{4})[-./年](\d{1,2})[-./月]|(\d{1,2})月)"
                   r"(\d{1,2})[日号]?(?:出院)?$")


# ---------------------------------------------------------------------------------------------
# helpers

def _member_label(member: Member) -> str:
    return mask_name(member.name)


def _claim(ctx: Ctx, data: dict) -> Claim | None:
    claim_id = data.get("claim")
    return ctx.session.get(Claim, claim_id) if claim_id else None


def _member(ctx: Ctx, data: dict) -> Member | None:
    member_id = data.get("member")
    return ctx.session.get(Member, member_id) if member_id else None


def _status(claim: Claim | None, required=None) -> dict:
    """claim, received, missing, required, processing, asking: for claim_status.j2 (before the
    claim exists: the kinds `required`, else the three of every scheme)."""
    if claim is None:
        kinds = list(required or svc.REQUIRED_KINDS)
        return {"claim": None, "received": [], "missing": kinds, "required": kinds,
                "processing": 0, "asking": 0}
    return svc.status_context(claim)


def _ask_photos(ctx: Ctx, member: Member | None, claim: Claim | None) -> str:
    required = svc.member_kinds(ctx.session, member, ctx.today) if member else None
    return render("claim_ask_photos", member_name=_member_label(member) if member else "",
                  resumed=claim is not None, **_status(claim, required))


def _ensure_claim(ctx: Ctx, data: dict) -> Claim:
    claim = _claim(ctx, data)
    if claim is None:
        member = _member(ctx, data)
        claim = svc.start_claim(ctx.session, member.household, member, ctx.openid, ctx.today)
        data["claim"] = claim.id
    return claim


def _add_photo(ctx: Ctx, data: dict, media_id: str | None, key: str,
               label: DocumentKind | None) -> str:
    claim = _ensure_claim(ctx, data)
    svc.add_document(ctx.session, claim, kind=label, media_id=media_id, source_key=key,
                     actor=ctx.openid)
    if label is None:
        return render("claim_photo_pending", **_status(claim))
    return render("claim_photo_received", kind=label, **_status(claim))


def _photo_step(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    label = data.pop("label", None)
    text = _add_photo(ctx, data, msg.media_id, msg.key, K(label) if label else None)
    return say(text, state="photos", data=data)


def _closed(claim: Claim) -> Step:
    return say(render("claim_closed", claim=claim))


# ---------------------------------------------------------------------------------------------
# entry

def entry(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    household = household_for_user(ctx.session, ctx.openid)
    if household is None:
        return say(render("claim_no_household"))
    text = msg.text if msg.kind != "image" else ""
    # a claim the reviewer sent back takes the photos first
    waiting = svc.claims_needing_documents(ctx.session, household.id)
    if waiting:
        claim = waiting[0]
        data = {"claim": claim.id, "member": claim.member_id}
        if msg.kind == "image" or text in SUBMIT_WORDS or text in LABELS:
            return photos(ctx, msg, data)
        return say(render("claim_need_documents_start", claim=claim,
                          member_name=_member_label(claim.member)), state="photos", data=data)
    # `提交` after the dialogue ended: the household's claim still collecting photos
    if text in SUBMIT_WORDS:
        collecting = svc.collecting_claims(ctx.session, household.id)
        if collecting:
            claim = collecting[0]
            return photos(ctx, msg, {"claim": claim.id, "member": claim.member_id})
    data = {}
    if text in LABELS:
        data["label"] = LABELS[text].value
    if msg.kind == "image":
        data["pending"] = [{"media_id": msg.media_id, "key": msg.key, "label": None}]
    members = list(household.members)
    if len(members) == 1:
        return _choose(ctx, members[0], data, single=True)
    return say(render("claim_choose_member", members=_member_rows(members), again=False),
               state="member", data=data)


def _member_rows(members: list[Member]) -> list[dict]:
    return [{"name": _member_label(m), "relation": m.relation.value} for m in members]


def _choose(ctx: Ctx, member: Member, data: dict, single: bool) -> Step:
    year, why = svc.eligibility(ctx.session, member, ctx.today)
    if year is None:
        text = render("claim_not_eligible", member_name=_member_label(member), why=why,
                      choose_again=not single)
        return say(text) if single else say(text, state="member", data=data)
    claim = svc.open_claim(ctx.session, member)
    data = {**data, "member": member.id, "claim": claim.id if claim else None}
    pending = data.pop("pending", [])
    texts = [_ask_photos(ctx, member, claim)]
    last = None
    for p in pending:  # photos sent before the member was chosen; a label names the first
        label = data.pop("label", None)
        last = _add_photo(ctx, data, p["media_id"], p["key"], K(label) if label else None)
    if last:
        texts.append(last)
    return say(*texts, state="photos", data=data)


def member(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    household = household_for_user(ctx.session, ctx.openid)
    if household is None:
        return say(render("claim_no_household"))
    members = list(household.members)
    if msg.kind == "image":
        pending = list(data.get("pending") or [])
        if len(pending) < MAX_PENDING:
            pending.append({"media_id": msg.media_id, "key": msg.key, "label": None})
        data = {**data, "pending": pending}
        return say(render("claim_choose_member", members=_member_rows(members), again=False),
                   state="member", data=data)
    text = msg.text
    if text in LABELS:
        return say(render("claim_choose_member", members=_member_rows(members), again=False),
                   state="member", data={**data, "label": LABELS[text].value})
    chosen = None
    if text.isdigit() and 1 <= int(text) <= len(members):
        chosen = members[int(text) - 1]
    else:
        chosen = next((m for m in members if m.name == text), None)
    if chosen is None:
        return say(render("claim_choose_member", members=_member_rows(members), again=True),
                   state="member", data=data)
    return _choose(ctx, chosen, data, single=False)


# ---------------------------------------------------------------------------------------------
# photos, labels, answers, stated values, 提交

def photos(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    try:
        return _photos(ctx, msg, data)
    except ClaimError as exc:  # the claim or the enrolment changed while the user was sending
        if exc.code == "closed":
            return _closed(_claim(ctx, data))
        if exc.code in ("unpaid", "not_enrolled"):
            m = _member(ctx, data)
            return say(render("claim_not_eligible", member_name=_member_label(m), why=exc.code,
                              choose_again=False))
        raise


def _photos(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    claim = _claim(ctx, data)
    if claim is not None and claim.status not in svc.OPEN_STATUSES:
        return _closed(claim)
    if msg.kind == "image":
        return _photo_step(ctx, msg, data)
    text = msg.text
    if text in SUBMIT_WORDS:
        return _submit(ctx, claim, data)
    asked = svc.unclassified_documents(claim) if claim else []
    if text in DELETE_WORDS and asked:
        svc.discard_document(ctx.session, asked[0].id, "deleted", ctx.openid, tell=False)
        return say(render("claim_photo_deleted", **_status(claim)), state="photos", data=data)
    numbered = dict(zip("123456", svc.required_kinds(claim))) if claim else NUMBERS
    kind = LABELS.get(text) or (numbered.get(text) if asked else None)
    if kind is not None and asked:
        svc.set_document_kind(ctx.session, asked[0], kind, ctx.openid)
        if len(asked) > 1:
            return say(render("claim_kind_set", kind=kind, **_status(claim)),
                       render("claim_photo_ask_kind", **_status(claim)), state="photos",
                       data=data)
        return say(render("claim_kind_set", kind=kind, **_status(claim)), state="photos",
                   data=data)
    if kind is not None:
        return say(render("claim_label_noted", kind=kind), state="photos",
                   data={**data, "label": kind.value})
    if text in CLAIM_WORDS:
        return say(_ask_photos(ctx, _member(ctx, data), claim), state="photos", data=data)
    if text == PROGRESS_NUMBER:  # 4 查询进度 from the menu: answered, the claim stays open
        household = household_for_user(ctx.session, ctx.openid)
        items, total = svc.progress(ctx.session, household)
        return say(render("claim_progress", items=items, total=total), state="photos",
                   data=data)
    if text in NUMBERS or (text.isdigit() and len(text) == 1):
        return _hint(claim, data, "number", text)
    stated = _stated(ctx, text)
    if stated is not None:
        if "problem" in stated:
            return _hint(claim, data, stated["problem"], text)
        claim = _ensure_claim(ctx, data)
        svc.record_stated(ctx.session, claim, ctx.openid, **stated)
        return say(render("claim_stated", **stated, **_status(claim)), state="photos", data=data)
    return _hint(claim, data, None, text)


def _hint(claim: Claim | None, data: dict, problem: str | None, text: str) -> Step:
    return say(render("claim_photos_hint", problem=problem, text=text[:20], **_status(claim)),
               state="photos", data=data)


def _stated(ctx: Ctx, text: str) -> dict | None:
    """{"out_of_pocket_fen": fen} or {"discharge_date": date}, {"problem": …} when it looks
    like one but is wrong, None when it is neither."""
    compact = text.replace(" ", "")
    m = _DATE.match(compact)
    if m:
        year = int(m.group(1)) if m.group(1) else ctx.today.year
        month = int(m.group(2) or m.group(3))
        try:
            day = date(year, month, int(m.group(4)))
        except ValueError:
            return {"problem": "date"}
        if not m.group(1) and day > ctx.today:
            day = day.replace(year=year - 1)
        if day > ctx.today or day < ctx.today - timedelta(days=3 * 366):
            return {"problem": "date"}
        return {"discharge_date": day}
    m = _AMOUNT.match(compact)
    if m:
        try:
            fen = parse_yuan(f"{m.group(1).replace('，', '').replace(',', '')}"
                             f"{'.' + m.group(2) if m.group(2) else ''}")
        except ValueError:
            return {"problem": "amount"}
        if fen < 100 or fen > 1_000_000_000:
            return {"problem": "amount"}
        return {"out_of_pocket_fen": fen}
    return None


def _new_documents_since_request(ctx: Ctx, claim: Claim) -> int:
    """Photos kept since the reviewer asked for more (the last change to need_documents)."""
    asked_at = ctx.session.scalar(
        select(AuditLog.at).where(AuditLog.entity == "claim", AuditLog.entity_id == claim.number,
                                  AuditLog.action == "claim.need_documents")
        .order_by(AuditLog.id.desc()).limit(1))
    query = select(func.count(ClaimDocument.id)).where(ClaimDocument.claim_id == claim.id)
    if asked_at is not None:
        query = query.where(ClaimDocument.created_at >= asked_at)
    return ctx.session.scalar(query) or 0


def _submit(ctx: Ctx, claim: Claim | None, data: dict) -> Step:
    if claim is None:
        return say(render("claim_submit_not_ready", code="missing", **_status(None)),
                   state="photos", data=data)
    if claim.status is S.need_documents and not _new_documents_since_request(ctx, claim):
        return say(render("claim_submit_not_ready", code="nothing_new", **_status(claim)),
                   state="photos", data=data)
    resubmitted = claim.status is S.need_documents
    try:
        svc.submit(ctx.session, claim, ctx.openid, ctx.today, notify_except=ctx.openid)
    except ClaimError as exc:
        if exc.code == "closed":
            return _closed(claim)
        late = exc.details if exc.code == "filed_late" else {}
        return say(render("claim_submit_not_ready", code=exc.code, **late, **_status(claim)),
                   state="photos", data=data)
    reading = len(svc.reading_documents(claim))
    reply = render("claim_submitted_reply", claim=claim, claim_resubmitted=resubmitted,
                   reading=reading)
    if reading:  # the read-out follows; a photo OCR cannot tell is asked about here
        return say(reply, state="labels", data={"claim": claim.id})
    return say(reply)


def labels(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    """After `提交` with photos still being read: the answer to "which document is this"
    (1/2/3, a label, 删除) when OCR could not tell; anything else goes its way as if the
    dialogue had ended, and it ends once no photo is being read or asked about."""
    claim = _claim(ctx, data)
    if claim is None or claim.status in svc.OPEN_STATUSES:
        return pass_on()
    asked = svc.unclassified_documents(claim)
    reading = svc.reading_documents(claim)
    text = msg.text if msg.kind != "image" else ""
    kind = LABELS.get(text) or NUMBERS.get(text)
    if not asked or kind is None and text not in DELETE_WORDS:
        return pass_on("labels" if asked or reading else None, data)
    if kind is None:
        svc.discard_document(ctx.session, asked[0].id, "deleted", ctx.openid, tell=False)
        text = render("claim_photo_deleted", **_status(claim))
    else:
        svc.set_document_kind(ctx.session, asked[0], kind, ctx.openid)
        text = render("claim_kind_set", kind=kind, **_status(claim))
    if len(asked) > 1:
        return say(text, render("claim_photo_ask_kind"), state="labels", data=data)
    return say(text, state="labels" if reading else None, data=data)


register(Dialogue("claim", entry, {"member": member, "photos": photos, "labels": labels},
                  words=("提交", "出院记录", "费用清单", "结算单", "发票")))
