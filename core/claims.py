"""Claims: the status machine of SPEC "Statuses" and the household's side of a claim.

The allowed moves are declared once, in `ALLOWED`. Every status change goes through
`transition`, which checks the move against it, writes the audit row and queues the household's
notification — all in the caller's transaction; a whole payout batch goes through
`transition_bulk`, the same check and the same rows for a set of claims in one UPDATE.

The household's side (the claim dialogue, handlers/claim.py, and the photo deliverer,
bot/outbox/media.py, call these; each works in the caller's transaction):

- `eligibility(session, member, today)` → (scheme year, None) or (None, "unpaid" | "not_enrolled")
- `start_claim(session, household, member, actor, today)` → a `collecting` Claim (C + 8 digits)
- `add_document(session, claim, kind=None, media_id=, source_key=, actor=)` → (ClaimDocument,
  created); `source_key` is the inbound message's dedupe key, so a retried message gives one
  document; queues `media.download` {document_id, media_id, openid} in the outbox
- `document_stored(session, document_id, sha256=, phash=, size=, content_type=, ocr_text=,
  guess_kind=, guess_confidence=, fields=, ocr_seconds=, actor=)` — the deliverer's result:
  hashes, OCR text (ID and card numbers masked), kind (when the photo had no label), OCR
  read-out, duplicate flags; tells the sender what is still missing, or asks which it is
- `discard_document(session, document_id, reason, actor)` — a refused or lost photo
- `set_document_kind(session, document, kind, actor)` — the household's answer 1/2/3
- `record_stated(session, claim, actor, out_of_pocket_fen=, discharge_date=)` → claim.stated
- `submit(session, claim, actor, today)` — `collecting` or `need_documents` → `submitted` once
  the three kinds are there, with the review due date (scheme claims.review_working_days
  Chinese working days, core/workdays.py)
- `progress(session, household, limit=3)` → ([ClaimProgress] newest first, total) for 查询进度

What the claim records hold for the reviewer:
- `claim.documents`: kind (None while unknown), sha256/phash/size/content_type (None while the
  photo is being downloaded), ocr_text; the file is `core.media.path_for(DATA_DIR, sha256,
  content_type)`.
- `claim.ocr = {"fields": {name: {value, confidence, text, document}}, "consistent": bool|None,
  "documents": {"<id>": {guess, confidence, seconds, fields}}}` — fields of the settlement sheet:
  total_fen, fund_paid_fen, out_of_pocket_fen (ints, fen), admission_date, discharge_date (ISO
  dates), hospital, insurance (resident|employee|uninsured); `ocr_value(claim, name)` reads one.
- `claim.stated = {"out_of_pocket_fen": int, "discharge_date": "YYYY-MM-DD"}` as typed.
- `claim.flags["possible_duplicate"] = [other claim numbers]` (same SHA-256, or pHash distance
  ≤ 4, as a document of another claim), with `flags["duplicate_matches"]` saying how.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterable

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from core import outbox, scheme_years
from core.audit import audit
from core.bulk import insert_many
from core.crypto import mask_name, scrub
from core.defaults import REVIEW_WORKING_DAYS
from core.errors import DomainError
from core.media import phash_bands, phash_distance
from core.messages import environment, render
from core.models import (AuditLog, BankCard, Claim, ClaimDocument, ClaimStatus as S,
                         DocumentKind, DocumentPhashBand, Enrolment, EnrolmentStatus, Household,
                         HouseholdLink, Member, OutboxMessage, OutboxStatus, SchemeYear, utcnow)
from core.notices import claim_variables, words
from core.notify import (NOTICE, linked_openids, notice_row, notify_household,
                         queue_notice)
from core.workdays import review_due_date

ALLOWED: dict[S, frozenset[S]] = {
    S.collecting: frozenset({S.submitted}),
    S.submitted: frozenset({S.in_review, S.need_documents, S.rejected}),
    S.in_review: frozenset({S.in_review, S.need_documents, S.approved, S.rejected}),
    S.need_documents: frozenset({S.submitted, S.rejected}),
    S.approved: frozenset({S.in_payout, S.rejected}),
    S.in_payout: frozenset({S.paid, S.payout_failed}),
    S.payout_failed: frozenset({S.approved}),
    # paid → payout_failed: a transfer the bank returns after /确认发放 (core.payouts)
    S.paid: frozenset({S.recovered, S.payout_failed}),
    # rejected → appealed: the household's 复核, once (core.appeals); a reviewer keeps the
    # rejection (维持) or has the rule decide again (改判 → in_review)
    S.rejected: frozenset({S.appealed}),
    S.appealed: frozenset({S.rejected, S.in_review}),
    S.recovered: frozenset(),
}


class TransitionError(DomainError, ValueError):
    """A status move the table (ALLOWED) does not allow: the caller's mistake, never a user's."""

    def __init__(self, claim: Claim | str, to: S, status: S | None = None):
        number = claim if isinstance(claim, str) else claim.number
        status = status or claim.status
        super().__init__("transition_not_allowed", claim=number, status=status.value,
                         to=to.value)
        self.claim, self.to = claim, to

    def __str__(self) -> str:
        d = self.details
        return f"claim {d['claim']}: {d['status']} → {d['to']} not allowed"


def can_transition(claim: Claim, to: S) -> bool:
    return to in ALLOWED[claim.status]


def transition(session: Session, claim: Claim, to: S, actor: str, *,
               notify: str | None = None, detail: dict | None = None,
               notify_except: str | None = None, event: str | None = None,
               variables: dict | None = None, **context) -> Claim:
    """Move a claim to `to`. `notify` names a template (templates/messages/<notify>.j2) sent to
    every user linked to the household, rendered with `claim`, `member_name` (masked),
    `reason_texts` (the claim's reason codes explained), `has_card` and `context`.
    `notify_except`: an openid that has just been told in its passive reply. With `event` (a
    notice event of core/notices.py) and its `variables`, the text goes as one notice for the
    household (core/notify.py)."""
    if not can_transition(claim, to):
        raise TransitionError(claim, to)
    before = {"status": claim.status.value, "amount_fen": claim.amount_fen}
    if to is S.rejected:  # the appeal window counts from here; another reviewer decides it
        claim.rejected_at, claim.rejected_by = utcnow(), actor
    claim.status = to
    audit(session, actor, f"claim.{to.value}", "claim", claim.number, before,
          {"status": to.value, "amount_fen": claim.amount_fen, **(detail or {})})
    if notify:
        ctx = {**notify_context(session, claim), **context}
        if notify_except is None:
            notify_household(session, claim.household_id, notify, claim=claim, event=event,
                             variables=variables, **ctx)
        else:
            text = render(notify, claim=claim, **ctx)
            others = [o for o in linked_openids(session, claim.household_id)
                      if o != notify_except]
            if event is not None and others:
                queue_notice(session, claim.household_id, event, text, variables or {}, others)
            elif event is None:
                for openid in others:
                    outbox.send_text(session, openid, text)
    session.flush()
    return claim


def transition_bulk(session: Session, claim_ids: Select, items: list[dict], frm: S, to: S,
                    actor: str, *, now: datetime, what: str, notify: str | None = None,
                    detail: dict | None = None, households: Select | None = None,
                    event: str | None = None) -> None:
    """Move many claims `frm` → `to` at once, with the effect of `transition` per claim (the
    payout's batches: 100,000 claims in seconds). The move is checked against ALLOWED; one
    UPDATE, guarded by the status, moves the claims whose ids `claim_ids` (a SELECT) gives;
    each gets its audit row (`claim.<to>`) and, with `notify` (a template rendered with the
    item), one outbox text per user linked to its household — all in the caller's transaction.

    `items`: one dict per claim that must move, with claim_number, household_id, amount_fen
    and what the template shows. Should the UPDATE move another number of claims (one changed
    meanwhile), RuntimeError before anything else is written: the caller's transaction is to be
    undone, never half a batch. `households` (a SELECT of their household ids) lets the links
    be read in one query; `what` names the set in errors ("batch B202603-demo"). With `event`
    each household gets one notice row instead (core/notify.py; its variables from the item:
    claim_number, amount_fen, result, next_step), also when no WeChat user is linked."""
    if to not in ALLOWED[frm]:
        raise TransitionError(what, to, frm)
    moved = session.execute(
        update(Claim).where(Claim.id.in_(claim_ids), Claim.status == frm)
        .values(status=to, updated_at=now).execution_options(synchronize_session=False)
    ).rowcount
    if moved != len(items):
        raise RuntimeError(f"{what}: {moved} of {len(items)} claims were still {frm.value}; "
                           "nothing was done, run it again")
    extra = detail or {}

    def audits():
        for it in items:
            yield {"entity_id": it["claim_number"],
                   "before": {"status": frm.value, "amount_fen": it["amount_fen"]},
                   "after": {"status": to.value, "amount_fen": it["amount_fen"], **extra}}

    insert_many(session, AuditLog, audits(),
                {"at": now, "actor": actor, "action": f"claim.{to.value}", "entity": "claim"})
    if notify is None:
        return
    tpl = environment().get_template(f"messages/{notify}.j2")
    links = _links(session, (it["household_id"] for it in items), households)
    if event is not None:
        def notices():
            for it in items:
                row = notice_row(it["household_id"], event, tpl.render(**it).strip(), {
                    "claim": it["claim_number"], "amount": it["amount_fen"],
                    "result": it.get("result") or words("result", event),
                    "next_step": it.get("next_step") or words("next_step", event),
                    "household": it.get("household_number")},
                    links.get(it["household_id"], []), now)
                yield {"household_id": row["household_id"], "payload": row["payload"]}

        insert_many(session, OutboxMessage, notices(),
                    {"kind": NOTICE, "status": OutboxStatus.pending, "attempts": 0,
                     "next_attempt_at": now, "created_at": now, "event": event})
        return

    def messages():
        for it in items:
            openids = links.get(it["household_id"])
            if not openids:
                continue
            text = tpl.render(**it).strip()
            for openid in openids:
                yield {"recipient": openid,
                       "payload": {"openid": openid,
                                   "message": {"type": "text", "content": text}}}

    insert_many(session, OutboxMessage, messages(),
                {"kind": "wechat.send", "status": OutboxStatus.pending, "attempts": 0,
                 "next_attempt_at": now, "created_at": now})


def _links(session: Session, household_ids: Iterable[int],
           households: Select | None = None) -> dict[int, list[str]]:
    """Linked openids per household: of the given households, or of those a SELECT gives
    (one query)."""
    found: dict[int, list[str]] = {}
    if households is not None:
        for hid, openid in session.execute(
                select(HouseholdLink.household_id, HouseholdLink.openid)
                .where(HouseholdLink.household_id.in_(households)).order_by(HouseholdLink.id)):
            found.setdefault(hid, []).append(openid)
        return found
    ids = sorted(set(household_ids))
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        for hid, openid in session.execute(
                select(HouseholdLink.household_id, HouseholdLink.openid)
                .where(HouseholdLink.household_id.in_(chunk)).order_by(HouseholdLink.id)):
            found.setdefault(hid, []).append(openid)
    return found


def notify_context(session: Session, claim: Claim) -> dict:
    """What every claim notification may use besides `claim`."""
    from core.adjudication import REASONS, exclusion_reason

    labels = {}
    if claim.scheme_year_id is not None and any(c not in REASONS for c in claim.reasons or []):
        rules = session.get(SchemeYear, claim.scheme_year_id).scheme.claims
        labels = {code: rules.label_of(code) for code in rules.exclusions}
    reasons = [REASONS[c] if c in REASONS else exclusion_reason(c, labels.get(c[9:]))
               for c in (claim.reasons or []) if c in REASONS or c.startswith("excluded_")]
    return {
        "member_name": mask_name(claim.member.name) if claim.member else "",
        "reason_texts": [f"{r.title}：{r.text}{r.remedy}" for r in reasons],
        "has_card": has_bank_card(session, claim.household_id),
    }


def has_bank_card(session: Session, household_id: int) -> bool:
    return session.scalar(select(BankCard.id).where(BankCard.household_id == household_id,
                                                    BankCard.active.is_(True)).limit(1)) is not None


# ---------------------------------------------------------------------------------------------
# Documents: the three kinds a claim needs

REQUIRED_KINDS = (DocumentKind.discharge_record, DocumentKind.itemized_bill,
                  DocumentKind.settlement_sheet)
OPEN_STATUSES = (S.collecting, S.need_documents)
DUPLICATE_DISTANCE = 4


class ClaimError(DomainError, ValueError):
    """A claim cannot do this now; `code` says why (for the reply)."""


def is_pending(doc: ClaimDocument) -> bool:
    """Not downloaded and checked yet."""
    return doc.sha256 is None


def required_kinds(claim: Claim | None) -> tuple[DocumentKind, ...]:
    """The kinds this claim needs: the scheme's claims.documents for the member's insurance
    type (the uninsured may send 出院记录, 费用清单 and 发票 instead of the 结算单), else the
    three of REQUIRED_KINDS."""
    if claim is None or claim.scheme_year_id is None or claim.member is None:
        return REQUIRED_KINDS
    session = object_session(claim)
    year = session.get(SchemeYear, claim.scheme_year_id) if session is not None else None
    if year is None:
        return REQUIRED_KINDS
    return tuple(DocumentKind(k) for k in
                 year.scheme.claims.documents_for(claim.member.insurance.value))


def member_kinds(session: Session, member: Member, today: date) -> tuple[DocumentKind, ...]:
    """The kinds a new claim of this member would need (the year it may claim under)."""
    year, _ = eligibility(session, member, today)
    if year is None:
        return REQUIRED_KINDS
    return tuple(DocumentKind(k) for k in
                 year.scheme.claims.documents_for(member.insurance.value))


def received_kinds(claim: Claim) -> list[DocumentKind]:
    have = {d.kind for d in claim.documents if d.kind is not None}
    return [k for k in required_kinds(claim) if k in have]


def missing_kinds(claim: Claim) -> list[DocumentKind]:
    have = set(received_kinds(claim))
    return [k for k in required_kinds(claim) if k not in have]


def pending_documents(claim: Claim) -> list[ClaimDocument]:
    return [d for d in claim.documents if is_pending(d)]


def unclassified_documents(claim: Claim) -> list[ClaimDocument]:
    """Downloaded photos whose kind OCR could not tell: the household is asked (1/2/3)."""
    return [d for d in claim.documents if not is_pending(d) and d.kind is None]


def status_context(claim: Claim) -> dict:
    """For the templates' "what is still missing" block (claim_status.j2)."""
    return {"claim": claim, "received": received_kinds(claim), "missing": missing_kinds(claim),
            "required": list(required_kinds(claim)),
            "processing": len(reading_documents(claim)),
            "asking": len(unclassified_documents(claim))}


# ---------------------------------------------------------------------------------------------
# Starting a claim

def eligibility(session: Session, member: Member,
                today: date) -> tuple[SchemeYear | None, str | None]:
    """(the scheme year the member may claim under, None), or (None, why not): "unpaid" (the
    member's enrolment is not paid yet) or "not_enrolled". Only a paid enrolment may claim."""
    # the year running today (or the last one that ended) and the one before it: a stay that
    # ended late in the previous year may still be claimed early in the next
    years = scheme_years.claimable(session, member.household.pool_id, today)
    unpaid = False
    for year in years:
        enrolment = session.scalar(select(Enrolment).where(Enrolment.member_id == member.id,
                                                           Enrolment.scheme_year_id == year.id))
        if enrolment is None:
            continue
        if enrolment.status is EnrolmentStatus.paid:
            return year, None
        if enrolment.status is EnrolmentStatus.pending and year is years[0]:
            unpaid = True
    return None, "unpaid" if unpaid else "not_enrolled"


def new_claim_number(session: Session) -> str:
    """C + 8 random digits (unguessable; checked unique, and the column is unique too)."""
    while True:
        number = f"C{secrets.randbelow(90_000_000) + 10_000_000}"
        if session.scalar(select(Claim.id).where(Claim.number == number)) is None:
            return number


def start_claim(session: Session, household: Household, member: Member, actor: str,
                today: date) -> Claim:
    if member.household_id != household.id:
        raise ClaimError("not_member")
    year, why = eligibility(session, member, today)
    if year is None:
        raise ClaimError(why)
    for attempt in range(5):
        claim = Claim(number=new_claim_number(session), household_id=household.id,
                      member_id=member.id, scheme_year_id=year.id, status=S.collecting,
                      stated={}, ocr={}, flags={}, reasons=[], trace=[], created_by=actor)
        # Another transaction may be giving the same number at this moment (not yet committed,
        # so the check above could not see it): the unique number then refuses this one, and a
        # new number is drawn. Seen building 100,000 claims in three processes at once.
        try:
            with session.begin_nested():
                session.add(claim)
                session.flush()
            break
        except IntegrityError:
            if attempt == 4:
                raise
    audit(session, actor, "claim.collecting", "claim", claim.number, None,
          {"status": S.collecting.value, "member_id": member.id, "scheme_year_id": year.id})
    return claim


def open_claim(session: Session, member: Member) -> Claim | None:
    """The member's claim still collecting photos, if any (the newest)."""
    return session.scalar(select(Claim).where(Claim.member_id == member.id,
                                              Claim.status == S.collecting)
                          .order_by(Claim.id.desc()).limit(1))


def claims_needing_documents(session: Session, household_id: int) -> list[Claim]:
    return list(session.scalars(select(Claim).where(Claim.household_id == household_id,
                                                    Claim.status == S.need_documents)
                                .order_by(Claim.id)))


def collecting_claims(session: Session, household_id: int) -> list[Claim]:
    return list(session.scalars(select(Claim).where(Claim.household_id == household_id,
                                                    Claim.status == S.collecting)
                                .order_by(Claim.id.desc())))


def lock(session: Session, claim_id: int) -> Claim:
    """The claim, row-locked on PostgreSQL (FOR NO KEY UPDATE: photos may still be added to it
    meanwhile); SQLite write transactions are serial already."""
    return session.get(Claim, claim_id, with_for_update={"key_share": True},
                       populate_existing=True)


# ---------------------------------------------------------------------------------------------
# Photos

def add_document(session: Session, claim: Claim, *, kind: DocumentKind | None,
                 media_id: str | None, source_key: str | None,
                 actor: str | None) -> tuple[ClaimDocument, bool]:
    """Record a photo and queue its download. The same inbound message (source_key) twice gives
    the one document it gave the first time."""
    if source_key:
        existing = session.scalar(select(ClaimDocument)
                                  .where(ClaimDocument.source_key == source_key))
        if existing is not None:
            return existing, False
    if claim.status not in OPEN_STATUSES:
        raise ClaimError("closed", status=claim.status.value)
    doc = ClaimDocument(claim=claim, kind=kind, media_id=media_id, source_key=source_key)
    session.add(doc)
    session.flush()
    audit(session, actor or "system", "claim.document_added", "claim", claim.number, None,
          {"document_id": doc.id, "kind": kind.value if kind else None})
    outbox.enqueue(session, "media.download", {"document_id": doc.id, "media_id": media_id,
                                               "openid": actor})
    return doc, True


def set_document_kind(session: Session, doc: ClaimDocument, kind: DocumentKind,
                      actor: str) -> None:
    before = doc.kind.value if doc.kind else None
    doc.kind = kind
    claim = doc.claim
    audit(session, actor, "claim.document_kind", "claim", claim.number,
          {"document_id": doc.id, "kind": before}, {"document_id": doc.id, "kind": kind.value})
    if kind is DocumentKind.settlement_sheet:
        _promote_fields(claim, doc.id)
    session.flush()


def _promote_fields(claim: Claim, document_id: int) -> None:
    """The settlement sheet's read-out becomes the claim's (the newest sheet wins per field)."""
    ocr = dict(claim.ocr or {})
    doc_entry = (ocr.get("documents") or {}).get(str(document_id))
    if not doc_entry or not doc_entry.get("fields"):
        return
    fields = dict(ocr.get("fields") or {})
    for name, value in doc_entry["fields"].items():
        fields[name] = {**value, "document": document_id}
    ocr["fields"] = fields
    ocr["consistent"] = _consistent(fields)
    claim.ocr = ocr


def _consistent(fields: dict) -> bool | None:
    try:
        t, f, o = (fields[k]["value"] for k in ("total_fen", "fund_paid_fen", "out_of_pocket_fen"))
    except KeyError:
        return None
    return t == f + o


def ocr_value(claim: Claim, name: str):
    """One field of the OCR read-out (None when not read)."""
    entry = ((claim.ocr or {}).get("fields") or {}).get(name)
    return entry.get("value") if entry else None


def find_duplicates(session: Session, doc: ClaimDocument) -> list[dict]:
    """Documents of OTHER claims with the same SHA-256 or a pHash within 4 bits: the candidates
    read by the indexes (the hash; the pHash's bands, DocumentPhashBand), each compared
    exactly, so a month of 300,000 photos does not read every stored photo for each."""
    if doc.sha256 is None:
        return []
    ids = select(ClaimDocument.id).where(ClaimDocument.sha256 == doc.sha256)
    if doc.phash:
        bands = phash_bands(doc.phash, DUPLICATE_DISTANCE)
        ids = ids.union(select(DocumentPhashBand.document_id).where(
            or_(*(and_(DocumentPhashBand.band == b, DocumentPhashBand.value == v)
                  for b, v in bands))))
    rows = session.execute(
        select(ClaimDocument.id, ClaimDocument.sha256, ClaimDocument.phash, Claim.number)
        .join(Claim, Claim.id == ClaimDocument.claim_id)
        .where(ClaimDocument.claim_id != doc.claim_id, ClaimDocument.id.in_(ids))
        .order_by(ClaimDocument.id))
    matches = []
    for other_id, sha, ph, number in rows:
        if sha == doc.sha256:
            matches.append({"claim": number, "document": other_id, "match": "sha256"})
        elif ph and doc.phash:
            distance = int(phash_distance(ph, doc.phash))
            if distance <= DUPLICATE_DISTANCE:
                matches.append({"claim": number, "document": other_id, "match": "phash",
                                "distance": distance})
    return matches


def store_phash_bands(session: Session, doc: ClaimDocument) -> None:
    """The look-up rows of a stored photo's pHash (find_duplicates reads them)."""
    if doc.phash:
        session.add_all(DocumentPhashBand(document_id=doc.id, band=b, value=v)
                        for b, v in phash_bands(doc.phash, DUPLICATE_DISTANCE))


def _flag_duplicates(session: Session, claim: Claim, doc: ClaimDocument, actor: str) -> None:
    matches = find_duplicates(session, doc)
    if not matches:
        return
    flags = dict(claim.flags or {})
    numbers = list(flags.get("possible_duplicate") or [])
    for m in matches:
        if m["claim"] not in numbers:
            numbers.append(m["claim"])
    detail = list(flags.get("duplicate_matches") or [])
    detail += [{**m, "own_document": doc.id} for m in matches]
    flags["possible_duplicate"] = numbers
    flags["duplicate_matches"] = detail
    claim.flags = flags
    audit(session, actor, "claim.flagged", "claim", claim.number, None,
          {"possible_duplicate": numbers, "document_id": doc.id})


def document_stored(session: Session, document_id: int, *, sha256: str, phash: str, size: int,
                    content_type: str, ocr_text: str | None, guess_kind: str | None,
                    guess_confidence: float, fields: dict, ocr_seconds: float | None,
                    actor: str | None) -> str:
    """Record a downloaded photo. Returns what happened: "stored", "repeated" (the same photo
    is already in this claim: dropped), or "gone" / "done" (nothing to do). Pushes to `actor`
    the kind and what is still missing when the photo had no label, or asks which it is."""
    doc = session.get(ClaimDocument, document_id)
    if doc is None:
        return "gone"
    claim = lock(session, doc.claim_id)
    session.refresh(doc)
    if doc.sha256 is not None:
        return "done"
    same = [d for d in claim.documents if d.id != doc.id and d.sha256 == sha256]
    if same:
        claim.documents.remove(doc)
        session.delete(doc)
        session.flush()
        if actor:
            outbox.send_text(session, actor, render("claim_photo_repeated",
                                                    **status_context(claim)))
        return "repeated"
    labelled = doc.kind is not None
    doc.sha256, doc.phash, doc.size, doc.content_type = sha256, phash, size, content_type
    # a settlement sheet prints the patient's ID number: never stored unmasked
    doc.ocr_text = scrub(ocr_text) if ocr_text else ocr_text
    fields = {name: {**f, "text": scrub(f.get("text") or "")} for name, f in fields.items()}
    if not labelled and guess_kind:
        doc.kind = DocumentKind(guess_kind)
    ocr = dict(claim.ocr or {})
    documents = dict(ocr.get("documents") or {})
    documents[str(doc.id)] = {"guess": guess_kind, "confidence": guess_confidence,
                              "seconds": round(ocr_seconds, 3) if ocr_seconds else None,
                              "fields": fields}
    ocr["documents"] = documents
    claim.ocr = ocr
    if doc.kind is DocumentKind.settlement_sheet:
        _promote_fields(claim, doc.id)
    _flag_duplicates(session, claim, doc, actor or "system")
    store_phash_bands(session, doc)
    session.flush()
    if actor and not labelled:
        if doc.kind is None:
            text = render("claim_photo_ask_kind", **status_context(claim))
        else:
            text = render("claim_photo_classified", kind=doc.kind, **status_context(claim))
        outbox.send_text(session, actor, text)
    return "stored"


def discard_document(session: Session, document_id: int, reason: str,
                     actor: str | None, *, tell: bool = True) -> bool:
    """Drop a photo that was refused (reason: empty, too_large, not_image, unsupported_type),
    could not be downloaded ("lost") or that the household did not want ("deleted"); with
    `tell`, the sender is told why and what is still missing."""
    doc = session.get(ClaimDocument, document_id)
    if doc is None:
        return False
    claim = lock(session, doc.claim_id)
    action = "claim.document_deleted" if reason == "deleted" else "claim.document_refused"
    audit(session, actor or "system", action, "claim", claim.number,
          {"document_id": doc.id, "kind": doc.kind.value if doc.kind else None},
          {"reason": reason})
    if doc in claim.documents:
        claim.documents.remove(doc)
    session.delete(doc)
    session.flush()
    if actor and tell:
        outbox.send_text(session, actor, render("claim_photo_refused", reason=reason,
                                                **status_context(claim)))
    return True


# ---------------------------------------------------------------------------------------------
# What the household typed, and submitting

def record_stated(session: Session, claim: Claim, actor: str, *,
                  out_of_pocket_fen: int | None = None,
                  discharge_date: date | None = None) -> None:
    stated = dict(claim.stated or {})
    if out_of_pocket_fen is not None:
        stated["out_of_pocket_fen"] = int(out_of_pocket_fen)
    if discharge_date is not None:
        stated["discharge_date"] = discharge_date.isoformat()
    audit(session, actor, "claim.stated", "claim", claim.number, dict(claim.stated or {}), stated)
    claim.stated = stated
    session.flush()


def review_days(session: Session, claim: Claim) -> int:
    """The scheme's claims.review_working_days (the default for a claim with no year yet)."""
    year = scheme_years.of_claim(session, claim)
    return year.scheme.claims.review_working_days if year else REVIEW_WORKING_DAYS


def reading_documents(claim: Claim) -> list[ClaimDocument]:
    """Unlabelled photos not read yet: OCR will say which kind each is (or ask the household)."""
    return [d for d in pending_documents(claim) if d.kind is None]


def check_submittable(claim: Claim) -> None:
    """Raise ClaimError("unclassified" | "missing" | "closed") unless ready. Photos still being
    read never hold a claim back: the three kinds are there when the labelled photos and the
    photos OCR is still reading can make them up (the read-out, or the household's answer when
    OCR cannot tell, or the reviewer, labels them afterwards)."""
    if claim.status not in OPEN_STATUSES:
        raise ClaimError("closed", status=claim.status.value)
    if unclassified_documents(claim):
        raise ClaimError("unclassified", count=len(unclassified_documents(claim)))
    missing = missing_kinds(claim)
    if len(missing) > len(reading_documents(claim)):
        raise ClaimError("missing", missing=missing)


def check_filing_deadline(session: Session, claim: Claim, today: date) -> None:
    """claims.file_within_days: a claim whose stated discharge date is more than N days ago is
    refused, ClaimError("filed_late", last_day=…); without a stated date the reviewer's /核定
    checks it."""
    discharged = (claim.stated or {}).get("discharge_date")
    year = scheme_years.of_claim(session, claim)
    days = year.scheme.claims.file_within_days if year else None
    if not discharged or days is None:
        return
    last_day = date.fromisoformat(discharged) + timedelta(days=days)
    if today > last_day:
        raise ClaimError("filed_late", last_day=last_day, days=days)


def submit(session: Session, claim: Claim, actor: str, today: date, *,
           notify_except: str | None = None) -> Claim:
    """`collecting` → `submitted` (or back from `need_documents`), due in the scheme's review
    working days; the household's other linked users are told."""
    claim = lock(session, claim.id)
    check_submittable(claim)
    resubmitted = claim.status is S.need_documents
    if not resubmitted:
        check_filing_deadline(session, claim, today)
    claim.submitted_at = utcnow()
    claim.due_date = review_due_date(today, review_days(session, claim))
    if not resubmitted:
        from core.confirmations import hold_for_village, needs_village

        if needs_village(session, claim):  # claims.uninsured_via_village: /确认申请 first
            hold_for_village(session, claim)
    transition(session, claim, S.submitted, actor, notify="claim_submitted",
               notify_except=notify_except, resubmitted=resubmitted,
               event="claim_submitted", variables=claim_variables(
                   claim, "claim_resubmitted" if resubmitted else "claim_submitted",
                   "claim_submitted", date=claim.due_date),
               detail={"due_date": claim.due_date.isoformat(), "resubmitted": resubmitted,
                       "awaits_village": claim.awaits_village})
    return claim


# ---------------------------------------------------------------------------------------------
# Progress (查询进度)

@dataclass(frozen=True)
class ClaimProgress:
    number: str
    member_name: str  # masked
    status: str
    amount_fen: int | None  # when decided
    due_date: date | None
    missing: tuple[str, ...]  # document kinds still missing (collecting)
    note: str | None
    reasons: tuple[str, ...]  # titles of the reasons (rejected)
    has_card: bool
    created_at: object
    awaits_village: bool = False  # submitted, waiting for the village's /确认申请


DECIDED = (S.approved, S.in_payout, S.paid, S.payout_failed, S.recovered)


def progress(session: Session, household: Household,
             limit: int = 3) -> tuple[list[ClaimProgress], int]:
    """The household's newest claims (at most `limit`) and how many there are in all."""
    from core.review.texts import reason_title

    claims = list(session.scalars(select(Claim).where(Claim.household_id == household.id)
                                  .order_by(Claim.created_at.desc(), Claim.id.desc())))
    card = has_bank_card(session, household.id)
    out = []
    for c in claims[:limit]:
        out.append(ClaimProgress(
            number=c.number, member_name=mask_name(c.member.name), status=c.status.value,
            amount_fen=c.amount_fen if c.status in DECIDED else None, due_date=c.due_date,
            missing=tuple(k.value for k in missing_kinds(c)) if c.status is S.collecting else (),
            note=c.note, reasons=tuple(reason_title(r, c) for r in (c.reasons or [])),
            has_card=card, created_at=c.created_at, awaits_village=c.awaits_village))
    return out, len(claims)
