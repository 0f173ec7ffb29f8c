"""Payouts on the command line:

    huzhu payout run [--pool P] [--month YYYY-MM] [--json]   the month's batch and bank file
    huzhu payout confirm BATCH [--json]                       the transfer is done: mark paid
    huzhu payout fail BATCH CLAIM --reason TEXT               a transfer bounced (as /发放失败)
    huzhu payout list [--pool P] [--json]                     {batch, pool, month, status,
                                                              total_fen, lines, …}
    huzhu payout fee [--pool P] [--period 2026Q1] [--json]    post the service fee of a period
    huzhu claims recover CLAIM --reason TEXT [--received]     追回: recovered, a receivable;
                                                              --received: the money is back
"""
from __future__ import annotations

import getpass
import sys
from datetime import datetime

from bot.cli import app_context, print_json, subcommands
from core.money import format_yuan


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register(sub) -> None:
    p = sub.add_parser("payout", help="monthly payouts to bank cards")
    psub = p.add_subparsers(dest="payout_command", required=True)
    q = psub.add_parser("run", help="make this month's batch and its bank file (idempotent)")
    q.add_argument("--pool", help="pool code (default: every pool)")
    q.add_argument("--month", help="YYYY-MM (default: this month)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_run)
    q = psub.add_parser("confirm", help="the bank transfer is done: lines and claims paid")
    q.add_argument("batch")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_confirm)
    q = psub.add_parser("fail", help="a transfer bounced: the claim goes back to the queue")
    q.add_argument("batch")
    q.add_argument("claim")
    q.add_argument("--reason", required=True)
    q.set_defaults(func=cmd_fail)
    q = psub.add_parser("list", help="payout batches")
    q.add_argument("--pool")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)
    q = psub.add_parser("fee", help="post the service fee owed for a period")
    q.add_argument("--pool", help="pool code (default: every pool)")
    q.add_argument("--period", help="2026Q1, 2026-03 or 2026 (default: the last one ended, "
                                    "by the scheme's service_fee.every)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_fee)

    csub = subcommands(sub, "claims", "claims for subsidy")
    q = csub.add_parser("recover", help="追回: a paid subsidy to be paid back")
    q.add_argument("claim")
    q.add_argument("--reason", help="why (told to the household); required unless only "
                                    "--received is recorded for a recovered claim")
    q.add_argument("--received", action="store_true",
                   help="the money is back in the fund")
    q.set_defaults(func=cmd_recover)


def _fail(e) -> int:
    detail = " ".join(f"{k}={v}" for k, v in getattr(e, "detail", {}).items())
    print(f"huzhu: {getattr(e, 'code', e)} {detail}".rstrip(), file=sys.stderr)
    return 2


def cmd_run(args) -> int:
    from sqlalchemy import select

    from core.models import Pool
    from core.payouts import PayoutError, check_month, month_of, run_payout

    x = app_context()
    today = datetime.now(x.cfg.tz).date()
    month = args.month or month_of(today)
    try:
        check_month(month)
    except PayoutError as e:
        return _fail(e)
    with x.db.session() as s:
        pools = [args.pool] if args.pool else list(s.scalars(select(Pool.code).order_by(Pool.id)))
    results = []
    for code in pools:
        try:
            r = run_payout(x.db, x.vault, x.cfg.data_dir, code, month, _actor(), today)
        except PayoutError as e:
            return _fail(e)
        results.append(r)
    if args.json:
        print_json([r.to_json() for r in results])
        return 0
    for r in results:
        if r.batch is None:
            f = r.figures
            print(f"{r.pool} {r.month}: nothing to pay (waiting: {f.get('waiting_balance', 0)} "
                  f"for balance, {f.get('waiting_card', 0)} for a card, {f.get('held', 0)} held)")
            continue
        how = "made" if r.created else "exists"
        print(f"{r.pool} {r.month}: batch {r.batch} {how}, {r.status}, {r.lines} lines, "
              f"{format_yuan(r.total_fen)}; bank file {r.file}"
              + (" (written)" if r.file_written else ""))
    return 0


def cmd_confirm(args) -> int:
    from core import ledger
    from core.payouts import PayoutError, confirm_batch

    x = app_context()
    today = datetime.now(x.cfg.tz).date()
    try:
        with x.db.session() as s:
            r = confirm_batch(s, args.batch, _actor(), today)
            balance = ledger.balance(s, r.pool_id)
    except PayoutError as e:
        return _fail(e)
    x.waker.wake()
    doc = {"batch": r.batch, "already": r.already, "paid": r.paid, "paid_fen": r.paid_fen,
           "failed": r.failed, "balance_fen": balance}
    if args.json:
        print_json(doc)
    elif r.already:
        print(f"batch {r.batch} was confirmed already; nothing changed")
    else:
        print(f"batch {r.batch} confirmed: {r.paid} paid, {format_yuan(r.paid_fen)}; "
              f"{r.failed} failed; balance {format_yuan(balance)}")
    return 0


def cmd_fail(args) -> int:
    from core.payouts import PayoutError, record_failure

    x = app_context()
    today = datetime.now(x.cfg.tz).date()
    try:
        with x.db.session() as s:
            r = record_failure(s, args.batch, args.claim, args.reason, _actor(), today)
    except PayoutError as e:
        return _fail(e)
    print(f"claim {r.claim} of batch {r.batch}: transfer failed, back to approved"
          + ("; the subsidy was reversed in the ledger" if r.after_confirm else "")
          + ("; card deactivated" if r.card_deactivated else ""))
    return 0


def cmd_list(args) -> int:
    from core.payouts import list_batches

    x = app_context()
    with x.db.session() as s:
        rows = list_batches(s, args.pool)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no payout batches")
    for r in rows:
        print(f"{r['batch']:<20} {r['pool']:<10} {r['month']} {r['status']:<9} "
              f"{r['lines']:>6} lines {format_yuan(r['total_fen']):>18}  "
              f"paid {r['paid_lines']} failed {r['failed_lines']}")
    return 0


def cmd_fee(args) -> int:
    from sqlalchemy import select

    from core import ledger
    from core.models import Pool
    from core.payouts import PayoutError, last_period, post_service_fee
    from core.scheme_years import latest_started

    x = app_context()
    today = datetime.now(x.cfg.tz).date()
    out = []
    try:
        with x.db.session() as s:
            q = select(Pool).order_by(Pool.id)
            if args.pool:
                q = q.where(Pool.code == args.pool)
            pools = list(s.scalars(q))
            if args.pool and not pools:
                raise PayoutError("unknown_pool", pool=args.pool)
            for pool in pools:
                year = latest_started(s, pool.id, today)
                if year is None:
                    continue
                period = args.period or last_period(year.scheme.service_fee.every, today)
                entry = post_service_fee(s, pool.id, period, _actor())
                fee = sum(line.amount_fen for line in entry.lines
                          if line.account == ledger.FEE) if entry else 0
                out.append({"pool": pool.code, "period": period, "fee_fen": fee,
                            "ref": entry.ref if entry else None})
    except PayoutError as e:
        return _fail(e)
    if args.json:
        print_json(out)
    for r in out if not args.json else []:
        print(f"{r['pool']} {r['period']}: service fee {format_yuan(r['fee_fen'])}"
              + ("" if r["ref"] else " (nothing paid in the period)"))
    return 0


def cmd_recover(args) -> int:
    from core.payouts import PayoutError, recover_claim

    x = app_context()
    today = datetime.now(x.cfg.tz).date()
    if not args.reason and not args.received:
        print("huzhu: --reason is required", file=sys.stderr)
        return 2
    try:
        with x.db.session() as s:
            claim = recover_claim(s, args.claim, args.reason or "", _actor(), today,
                                  received=args.received)
            number, amount = claim.number, claim.amount_fen
    except PayoutError as e:
        return _fail(e)
    x.waker.wake()
    print(f"claim {number}: recovered, {format_yuan(amount)} "
          + ("received back into the fund" if args.received else "owed to the fund"))
    return 0
