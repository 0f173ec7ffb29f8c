"""Exactly once: `huzhu payout run` SIGKILLed at random points, then run again;
two runs started at the same moment. Afterwards every claim is in exactly one live batch line,
is paid once after confirmation, and the ledger balances.

The seed of the random kill points is printed (and can be fixed with HUZHU_KILL_SEED)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import date, timedelta

from sqlalchemy import func, insert, select

from core.models import (BatchStatus, Claim, ClaimStatus, PayoutBatch, PayoutLine,
                         PayoutLineStatus, utcnow)
from core.payouts import confirm_batch, month_of
from tests.test_payouts import env_of, fund, household_with_card, invariants, run
from tests.factories import local_today

KILLS = 10
CLAIMS_PER_ROUND = 1000
_numbers = iter(range(80_000_001, 89_999_999))


def add_claims(db, household_id: int, member_id: int, n: int,
               amount_fen: int = 10_000) -> list[str]:
    """n approved claims, inserted in one statement (the dialogue is not under test)."""
    now = utcnow()
    rows = [{"number": f"C{next(_numbers):08d}", "household_id": household_id,
             "member_id": member_id, "status": ClaimStatus.approved, "amount_fen": amount_fen,
             "submitted_at": now, "created_at": now, "updated_at": now, "stated": {}, "ocr": {},
             "flags": {}, "reasons": [], "trace": []} for _ in range(n)]
    with db.session() as s:
        s.execute(insert(Claim), rows)
    return [r["number"] for r in rows]


def payout_cmd(month: str) -> list[str]:
    return [sys.executable, "-m", "bot.cli", "payout", "run", "--pool", "demo", "--month",
            month, "--json"]


def months(n: int) -> list[str]:
    first = date(2031, 1, 1)
    out = []
    for i in range(n):
        day = date(first.year + (first.month - 1 + i) // 12, (first.month - 1 + i) % 12 + 1, 1)
        out.append(month_of(day))
    return out


def batch_state(db, month: str) -> tuple[str, int, int] | None:
    """(status, lines, total) of the month's batch, checking that it is complete: its lines are
    exactly the claims marked in_payout for it and its total is their sum."""
    with db.session() as s:
        batch = s.scalar(select(PayoutBatch).where(PayoutBatch.month == month))
        if batch is None:
            return None
        lines = s.execute(select(func.count(PayoutLine.id),
                                 func.coalesce(func.sum(PayoutLine.amount_fen), 0))
                          .where(PayoutLine.batch_id == batch.id)).one()
        claims_in = s.scalar(select(func.count(Claim.id)).join(
            PayoutLine, PayoutLine.claim_id == Claim.id).where(
            PayoutLine.batch_id == batch.id, Claim.status == ClaimStatus.in_payout))
        assert lines[0] > 0 and claims_in == lines[0] and int(lines[1]) == batch.total_fen
        return batch.status.value, lines[0], batch.total_fen


def test_sigkill_at_random_points_leaves_nothing_or_a_whole_batch(db, app_ctx, cfg, capsys):
    seed = int(os.environ.get("HUZHU_KILL_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    home = household_with_card(db, app_ctx.vault)
    fund(db, 10_000_000_000)
    env = env_of(cfg)
    all_claims: list[str] = []
    used = months(KILLS + 1)

    # how long the command takes to start (imports, schema check) and to run whole sets the
    # range of kill points (below)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "bot.cli", "payout", "list", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    startup = time.monotonic() - t0
    assert out.returncode == 0 and json.loads(out.stdout) == [], out.stderr
    all_claims += add_claims(db, home["id"], home["member"], CLAIMS_PER_ROUND)
    t0 = time.monotonic()
    out = subprocess.run(payout_cmd(used[0]), env=env, capture_output=True, text=True,
                         timeout=120)
    full = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert batch_state(db, used[0]) == ("exported", CLAIMS_PER_ROUND, CLAIMS_PER_ROUND * 10_000)

    outcomes = []
    for month in used[1:]:
        all_claims += add_claims(db, home["id"], home["member"], CLAIMS_PER_ROUND)
        # from late in the start-up to 70% into the work: the later runs are faster than the
        # first (warm caches), and a kill point past their end would kill nothing
        delay = rng.uniform(0.75 * startup, startup + 0.7 * max(full - startup, 0.2))
        began = time.monotonic()
        proc = subprocess.Popen(payout_cmd(month), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            code = proc.wait(timeout=delay)
            # it finished before the kill point: the machine is faster now than when the first
            # run was timed (another suite was starting beside it), so later points come earlier
            took = time.monotonic() - began
            startup, full = min(startup, 0.8 * took), min(full, took)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            code = proc.wait(timeout=60)
        state = batch_state(db, month)  # nothing, or a complete batch (draft or exported)
        outcomes.append((round(delay, 2), code, state[0] if state else None))
        # run again to completion (in-process: the same code path as the command)
        again = run(app_ctx, month, date(int(month[:4]), int(month[5:]), 5))
        assert again.status == "exported" and os.path.exists(again.file)
        assert batch_state(db, month)[0] == "exported"
    with capsys.disabled():
        print(f"\nkill seed {seed}; start-up {startup:.2f}s, full run {full:.2f}s; "
              f"(delay, exit, state after kill): {outcomes}")
    assert any(code == -signal.SIGKILL for _, code, _ in outcomes)  # some runs were cut short

    # once more for every month: nothing new, every file in place (the last as a command)
    for month in used[:-1]:
        assert not run(app_ctx, month).created
    out = subprocess.run(payout_cmd(used[-1]), env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["created"] is False
    exports = cfg.data_dir / "exports"
    assert not [p for p in exports.iterdir() if p.name.endswith(".tmp")]

    with db.session() as s:
        numbers = [b for b in s.scalars(select(PayoutBatch.number).order_by(PayoutBatch.id))]
    assert len(numbers) == len(used)
    for number in numbers:
        with db.session() as s:
            confirm_batch(s, number, "test", local_today())
    with db.session() as s:
        counts = dict(s.execute(select(Claim.number, func.count(PayoutLine.id))
                                .join(PayoutLine, PayoutLine.claim_id == Claim.id)
                                .group_by(Claim.number)).all())
        assert sorted(counts) == sorted(all_claims) and set(counts.values()) == {1}
        assert s.scalar(select(func.count(Claim.id))
                        .where(Claim.status != ClaimStatus.paid)) == 0
        assert s.scalar(select(func.count(PayoutBatch.id))
                        .where(PayoutBatch.status != BatchStatus.confirmed)) == 0
        assert s.scalar(select(func.count(PayoutLine.id))
                        .where(PayoutLine.status != PayoutLineStatus.paid)) == 0
    invariants(db)


def test_two_runs_started_at_once_make_one_batch(db, app_ctx, cfg):
    """The same month twice at the same moment: one batch, both commands report it. Then two
    different months at once: the claims are split between them, none in both. (On SQLite the
    two processes are serialised by its write lock; on PostgreSQL they really overlap, and the
    unique (pool, month) constraint and FOR UPDATE on the claims decide.)"""
    home = household_with_card(db, app_ctx.vault)
    fund(db, 10_000_000_000)
    claims = add_claims(db, home["id"], home["member"], 400)
    env = env_of(cfg)
    procs = [subprocess.Popen(payout_cmd("2032-01"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        docs.append(json.loads(out)[0])
    assert docs[0]["batch"] == docs[1]["batch"]
    assert sorted(d["created"] for d in docs) == [False, True]
    assert {d["lines"] for d in docs} == {400}
    with db.session() as s:
        assert s.scalar(select(func.count(PayoutBatch.id))) == 1
    invariants(db)

    more = add_claims(db, home["id"], home["member"], 400)
    procs = [subprocess.Popen(payout_cmd(m), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for m in ("2032-02", "2032-03")]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with db.session() as s:
        per_claim = dict(s.execute(select(Claim.number, func.count(PayoutLine.id))
                                   .join(PayoutLine, PayoutLine.claim_id == Claim.id)
                                   .group_by(Claim.number)).all())
        batches = list(s.scalars(select(PayoutBatch.number)))
    assert sorted(per_claim) == sorted(claims + more) and set(per_claim.values()) == {1}
    for number in batches:
        with db.session() as s:
            confirm_batch(s, number, "test", local_today() - timedelta(days=1))
    with db.session() as s:
        assert s.scalar(select(func.count(Claim.id))
                        .where(Claim.status != ClaimStatus.paid)) == 0
    invariants(db)
