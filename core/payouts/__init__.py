"""Monthly payouts (发放): one batch per pool and month, the bank transfer file, confirmation,
bounced transfers, the service fee and recoveries (追回).

The run (`run_payout`), exactly once by construction, not by luck:

1. ONE transaction locks the pool's row (PostgreSQL FOR NO KEY UPDATE; SQLite's BEGIN IMMEDIATE
   serialises writers anyway), so a second run of the pool started at the same moment waits and
   then finds the batch (same month) or the claims gone to it (another month); inserts the batch
   (the unique (pool, month) constraint backs the lock up); writes a line per claim with a
   snapshot of its card; moves the claims `approved` → `in_payout` (an UPDATE guarded by the
   status: if any claim changed meanwhile the whole transaction is undone) with their audit rows
   and notifications; and commits. A process killed before the commit leaves nothing; after it,
   a complete `draft` batch. A partial unique index allows a claim in one live (not `failed`)
   line only, whatever happens.
2. After the commit the bank file is written from the stored lines to a temporary file, synced
   and renamed into place (0600, readable by its owner only): a file is complete or absent.
3. A second short transaction moves the batch `draft` → `exported` (a conditional update: only
   one process wins) and queues the administrators' summary.

Running again for the same pool and month returns the existing batch and regenerates its file if
it is missing (or finishes step 2–3 for a `draft` batch). Claims go to the batch oldest first as
far as the pool's balance (ledger, less lines of unconfirmed batches) covers; the rest wait, and
so do claims of households with no active card and claims with an open objection.

Claim status changes of a whole batch go through `core.claims.transition_bulk` (100,000 claims
in seconds) with the same effect as `core.claims.transition` per claim: the move is checked
against `claims.ALLOWED`, and each claim gets its audit row (`claim.<status>`) and its
household's notification, all in the same transaction. Single claims (a bounced transfer, a
recovery) use `transition` itself.

Ledger: confirmation posts one entry per batch (`payout:<batch>`, fund:cash → expense:subsidy);
a transfer that bounces after confirmation is reversed by `payout-return:<batch>:<claim>`; the
service fee `fee:<pool>:<period>` (expense:service_fee / payable:service_fee) is the scheme's rate
of the period's paid subsidies; a recovery `recovery:<claim>` (receivable:recovery /
income:recovery) and, when the money is back, `recovery-received:<claim>`. Refs are unique, so
every posting is idempotent.

The package, one module per job: `common` (names, look-ups, PayoutError), `plan` (what a run
would take), `run` (the run and the export step), `bank_file`, `confirm` (confirmation and bounced
transfers), `recoveries`, `service_fee`, `schedule` (which pools are due), `listing`. Which scheme
year a pool is in: core.scheme_years.
"""
from __future__ import annotations

from core.payouts.bank_file import (FILE_HEADER, bank_rows, batch_file, exports_dir,
                                    write_bank_file)
from core.payouts.common import (PayoutError, batch_number, check_month, find_batch, find_claim,
                                 find_pool, month_of, payout_day_for, pool_admin_openids)
from core.payouts.confirm import ConfirmResult, FailureResult, confirm_batch, record_failure
from core.payouts.listing import list_batches
from core.payouts.plan import Candidate, Plan, held_claim_ids, pending_fen, plan
from core.payouts.recoveries import recover_claim
from core.payouts.run import RunResult, export_batch, run_payout
from core.payouts.schedule import due_pools, scheduled_day, scheduled_run_done
from core.payouts.service_fee import last_period, period_bounds, post_service_fee, service_fee_due

__all__ = ["PayoutError", "Plan", "Candidate", "RunResult", "ConfirmResult", "FailureResult",
           "plan", "held_claim_ids", "pending_fen", "run_payout", "export_batch",
           "confirm_batch", "record_failure", "recover_claim", "post_service_fee",
           "service_fee_due", "period_bounds", "last_period", "due_pools", "scheduled_day",
           "scheduled_run_done", "list_batches", "batch_number", "check_month", "find_batch",
           "find_claim", "find_pool", "month_of", "payout_day_for", "pool_admin_openids",
           "FILE_HEADER", "bank_rows", "batch_file", "exports_dir", "write_bank_file"]
