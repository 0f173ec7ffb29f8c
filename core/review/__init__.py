"""Review: a reviewer records a claim's facts, the fund's rule decides, the reviewer makes it final.

The service behind the reviewer commands (handlers/review.py; the /核定 arguments are read by
handlers/review_grammar.py into typed `Facts`) and `huzhu claims list`:

- `record(session, claim, facts, actor)` (/核定): gathers the member's history from the database,
  builds the rules of the scheme year the stay falls in, runs `core.adjudication.adjudicate`, and
  stores the facts and the computed decision (amount, reason codes, trace) on the claim, status
  `in_review`. Not final; may be repeated.
- `approve` (/通过): makes a computed approval final (`approved`), refused for a computed rejection.
- `reject` (/驳回): `rejected` with a computed reason code or a reviewer's own.
- `request_documents` (/补件): `need_documents` with the reviewer's text.

Each runs inside the caller's transaction: the status change with its audit row
(core.claims.transition) and the household's notification (outbox) commit together or not at all.
Problems with the arguments or the claim's state raise `ReviewError(code, **detail)` BEFORE
anything is changed.

The OCR read-out of a claim (`Claim.ocr`, written by the photo deliverer, core/claims.py) is read
from `claim.ocr["fields"]`: {field: {"value": ..., "confidence": 0..1, …}} with fields
out_of_pocket_fen (int fen), admission_date and discharge_date (ISO dates), insurance (resident |
employee | uninsured) and hospital (text); `claim.ocr["consistent"] is False` (the sheet's total
is not fund + out-of-pocket) makes the out-of-pocket amount untrusted.

The package, one module per job: `facts` (the typed facts and the readers of each value),
`readout` (the OCR read-out and the short form's facts), `decide` (a claim, its member's history
and the rule's decision), `actions`, `texts` (trace lines for replies), `queue` (/待审 and the
reminders), `listing`, `links` (signed links to a claim's photos), `errors`.
"""
from __future__ import annotations

from core.review.actions import (DOCUMENTS_FROM, RECORDABLE, REJECTABLE, approve, record, reject,
                                 request_documents)
from core.review.decide import decide, find_claim, history_of, is_computed, rules_of
from core.review.errors import ReviewError
from core.review.facts import (HOSPITAL_MAX, INSURANCE_WORDS, TEXT_MAX, Facts, check_dates,
                               make_facts, parse_amount, parse_claim_number, parse_date,
                               parse_drg, parse_insurance, stored_facts)
from core.review.links import LINK_VALID_SECONDS, document_url, read_document_token
from core.review.listing import claim_json, drg_count, drg_search, list_claims
from core.review.queue import (QUEUE_STATUSES, overdue, queue, queue_lines, remind_overdue,
                               reviewers_of)
from core.review.readout import (GOOD_CONFIDENCE, OCR_FIELDS, OCR_NEEDED, OcrFacts,
                                 facts_from_ocr, ocr_readout)
from core.review.texts import calculation_line, failed_steps, member_label, reason_title

__all__ = ["ReviewError", "Facts", "OcrFacts", "make_facts", "check_dates", "parse_amount",
           "parse_claim_number", "parse_date", "parse_drg", "parse_insurance", "stored_facts",
           "INSURANCE_WORDS", "HOSPITAL_MAX", "TEXT_MAX", "GOOD_CONFIDENCE", "OCR_FIELDS",
           "OCR_NEEDED", "ocr_readout", "facts_from_ocr", "find_claim", "history_of",
           "rules_of", "decide", "is_computed", "record", "approve", "reject",
           "request_documents", "RECORDABLE", "REJECTABLE", "DOCUMENTS_FROM", "QUEUE_STATUSES",
           "queue", "queue_lines", "overdue", "reviewers_of", "remind_overdue",
           "calculation_line", "failed_steps", "reason_title", "member_label", "claim_json",
           "list_claims", "drg_search", "drg_count", "LINK_VALID_SECONDS", "document_url",
           "read_document_token"]
