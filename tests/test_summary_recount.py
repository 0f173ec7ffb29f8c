"""The fund's summary (fund_total: the ledger per pool, day, entry kind and account) stays what
the journal lines say, whatever mix of money moves the real services make: household payments
by WeChat Pay and in cash, income added, claims approved and rejected, monthly payouts
confirmed, transfers bounced before and after confirmation, service fees, recoveries owed and
received — each checked against a recount after every step. And the backfill migration fills
it for a database that already has entries."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select, text

from core import ledger, scheme_years, stats
from core.db import Database
from core.models import (Claim, ClaimStatus, FundTotal, Household, JournalEntry, PayoutBatch,
                         PayoutLine)
from core.payments import (apply_wechat_payment, due, order_for, record_offline,
                           record_offline_many)
from core.payouts import confirm_batch, record_failure
from core.payouts.recoveries import recover_claim
from core.payouts.service_fee import post_service_fee
from core.quarterly import quarter_of
from tests.factories import M, make_claim, make_household
from tests.test_payouts import TODAY, approved_claim, household_with_card, pid, run

APPID, MCHID = "wx_recount", "1900000001"


def assert_summary_exact(db, step: str) -> None:
    with db.session() as s:
        stored, counted = ledger.stored_totals(s), ledger.recount(s)
    assert stored == counted, f"fund_total differs from the journal after {step}"


def _unpaid_household(db, vault, rng) -> int:
    with db.session() as s:
        hh = make_household(s, vault, [M(f"张{rng.randrange(100, 999)}")]
                            + [M(f"李{i}", "child") for i in range(rng.randrange(3))],
                            enrolment="pending")
        return hh.id


def _pay_cash(db, app_ctx, rng):
    household_id = _unpaid_household(db, app_ctx.vault, rng)
    now = datetime.now(app_ctx.cfg.tz)
    with db.session() as s:
        hh = s.get(Household, household_id)
        _, q = due(s, hh, now.date())
        record_offline(s, hh, q.amount_fen, rng.choice(("cash", "transfer")), "test", now)


def _pay_cash_list(db, app_ctx, rng):
    """A village's cash list, recorded at once (`huzhu payments record-list`)."""
    ids = [_unpaid_household(db, app_ctx.vault, rng) for _ in range(rng.randrange(2, 5))]
    now = datetime.now(app_ctx.cfg.tz)
    with db.session() as s:
        payments = [(hid, due(s, s.get(Household, hid), now.date())[1].amount_fen)
                    for hid in ids]
        assert record_offline_many(s, payments, "cash", "test", now) == len(ids)


def _pay_wechat(db, app_ctx, rng):
    household_id = _unpaid_household(db, app_ctx.vault, rng)
    now = datetime.now(app_ctx.cfg.tz)
    with db.session() as s:
        order = order_for(s, s.get(Household, household_id), "test", now).order
        resource = {"transaction_id": f"42000{rng.randrange(10**12):012d}",
                    "out_trade_no": order.out_trade_no, "trade_state": "SUCCESS",
                    "appid": APPID, "mchid": MCHID, "success_time": now.isoformat(),
                    "amount": {"total": order.amount_fen, "currency": "CNY"}}
        outcome = apply_wechat_payment(s, resource, appid=APPID, mchid=MCHID,
                                       tz=app_ctx.cfg.tz)
        assert outcome.status == "applied"


def _add_income(db, app_ctx, rng):
    with db.session() as s:
        source = rng.choice(("donor", "collective", "government", "interest"))
        ledger.post(s, pid(s), "funds", f"recount-funds:{rng.randrange(10**9)}",
                    ledger.funds_lines(source, rng.randrange(100_00, 50_000_00)),
                    TODAY - timedelta(days=rng.randrange(0, 60)))


def _claims(db, app_ctx, rng):
    card = household_with_card(db, app_ctx.vault)
    for _ in range(rng.randrange(1, 4)):
        approved_claim(db, card["id"], rng.randrange(500_00, 20_000_00))
    with db.session() as s:
        make_claim(s, s.get(Household, card["id"]), status="rejected")


def _payout(db, app_ctx, rng, state, bounce: bool | None = None):
    """A month's batch made and confirmed (the next month not used yet, so that the claims
    approved so far are in it), a bounce either side."""
    state["month"] += 1
    day = (TODAY.replace(day=1) + timedelta(days=31 * state["month"])).replace(day=5)
    r = run(app_ctx, today=day)
    if not r.batch:
        return
    with db.session() as s:
        lines = list(s.scalars(select(PayoutLine).join(PayoutBatch)
                               .where(PayoutBatch.number == r.batch)))
        numbers = [s.get(Claim, line.claim_id).number for line in lines]
    bounce = rng.random() < 0.5 if bounce is None else bounce
    if len(numbers) > 1 and bounce:
        with db.session() as s:
            record_failure(s, r.batch, numbers.pop(), "户名不符", "test", day)
    with db.session() as s:
        confirm_batch(s, r.batch, "test", day + timedelta(days=1))
    if numbers and bounce:
        with db.session() as s:
            record_failure(s, r.batch, numbers[0], "账户已销户", "test", day + timedelta(days=3))


def _recover(db, app_ctx, rng):
    with db.session() as s:
        paid = list(s.scalars(select(Claim.number).where(Claim.status == ClaimStatus.paid)))
        owed = list(s.scalars(select(Claim.number)
                              .where(Claim.status == ClaimStatus.recovered)))
    if paid and (not owed or rng.random() < 0.7):
        with db.session() as s:
            recover_claim(s, rng.choice(paid), "重复报销", "test", TODAY,
                          received=rng.random() < 0.4)
    elif owed:
        with db.session() as s:
            recover_claim(s, rng.choice(owed), "", "test", TODAY, received=True)


def _fee(db, app_ctx, rng):
    """The service fee of a quarter in which subsidies were paid."""
    with db.session() as s:
        days = list(s.scalars(select(JournalEntry.booked_on)
                              .where(JournalEntry.kind == "payout")))
        if days:
            post_service_fee(s, pid(s), quarter_of(rng.choice(days)), "test")


@pytest.mark.parametrize("seed", [3, 11])
def test_fund_total_equals_a_recount_after_any_mix_of_money_moves(db, app_ctx, seed):
    rng = random.Random(seed)
    moves = [_pay_cash, _pay_cash_list, _pay_wechat, _add_income, _claims, _recover,
             _fee]
    state = {"month": 0}
    with db.session() as s:  # money for the payouts, and something to recover
        ledger.post(s, pid(s), "funds", "recount-start",
                    ledger.funds_lines("donor", 100_000_000), TODAY - timedelta(days=400))
    _claims(db, app_ctx, rng)
    _payout(db, app_ctx, rng, state, bounce=False)
    assert_summary_exact(db, "the first payout")
    _fee(db, app_ctx, rng)
    assert_summary_exact(db, "the first fee")
    for _ in range(2):
        _claims(db, app_ctx, rng)
    _payout(db, app_ctx, rng, state, bounce=True)  # a bounce before and after confirmation
    assert_summary_exact(db, "a payout with bounces")
    # every kind of move twice, in a random order, then a random few more
    plan = moves * 2 + [None] * 2
    rng.shuffle(plan)
    plan += [rng.choice(moves + [None]) for _ in range(4)]
    for step, move in enumerate(plan):
        if move is None:
            _payout(db, app_ctx, rng, state)
            name = "_payout"
        else:
            move(db, app_ctx, rng)
            name = move.__name__
        assert_summary_exact(db, f"step {step} ({name})")
    with db.session() as s:
        kinds = {k for (k,) in s.execute(select(FundTotal.kind).distinct())}
        # the figures the answers show come from the summary and match the lines
        figures = ledger.summary(s, pid(s))
        lines = s.execute(text("SELECT SUM(amount_fen) FROM journal_line l JOIN journal_entry e "
                               "ON e.id = l.entry_id WHERE l.account = 'expense:subsidy'")
                          ).scalar()
    assert kinds == {"contribution", "funds", "payout", "payout_return", "recovery", "fee"}
    assert figures["paid_fen"] == int(lines or 0)


def test_backfill_migrations_fill_the_summaries_from_the_rows_already_there(db, app_ctx):
    card = household_with_card(db, app_ctx.vault)
    approved_claim(db, card["id"], 3_000_00)
    with db.session() as s:
        make_household(s, app_ctx.vault, [M("赵一"), M("赵二", "child")], enrolment="pending")
        ledger.post(s, pid(s), "funds", "backfill-a", ledger.funds_lines("donor", 10_000_00),
                    TODAY - timedelta(days=3))
        ledger.post(s, pid(s), "funds", "backfill-b", ledger.funds_lines("donor", 2_000_00),
                    TODAY - timedelta(days=3))
    r = run(app_ctx)
    with db.session() as s:
        confirm_batch(s, r.batch, "test", TODAY)
    with db.session() as s:
        totals, tally = ledger.stored_totals(s), stats.stored_tally(s)
        assert totals == ledger.recount(s) and len(totals) >= 4
        assert tally == stats.recount_tally(s) and len(tally) == 4
        year = scheme_years.for_report(s, pid(s), TODAY)
        figures = ledger.summary(s, pid(s), until=TODAY + timedelta(days=1))
        villages = stats.participation(s, pid(s), year.id)
    # a database from before the summaries: their tables and revisions (and the later ones of
    # that line) taken away, upgraded
    with db.engine.begin() as c:
        c.execute(text("DROP TABLE household_tally"))
        c.execute(text("DROP TABLE fund_total"))
        c.execute(text("DROP INDEX ix_claim_member"))
        c.execute(text("UPDATE alembic_version SET version_num = 'scaleq_01' "
                       "WHERE version_num = 'scaleq_04'"))
    Database(db.engine.url.render_as_string(hide_password=False)).upgrade()
    with db.session() as s:
        assert ledger.stored_totals(s) == totals
        assert stats.stored_tally(s) == tally
        assert ledger.summary(s, pid(s), until=TODAY + timedelta(days=1)) == figures
        assert stats.participation(s, pid(s), year.id) == villages
    assert figures["paid_fen"] == 3_000_00 and figures["balance_fen"] == 9_000_00
    assert sum(v["persons"] for v in villages) == 4
    assert sum(v["persons_paid"] for v in villages) == 2


# ---------------------------------------------------------------------------------------------
# participation: household_tally

def participation_from_rows(s, pool_id: int, year_id: int) -> list[dict]:
    """Per village, counted from the households, members and enrolments themselves."""
    rows = s.execute(text("""
        SELECT v.id, COUNT(DISTINCT h.id), COUNT(m.id), COUNT(e.id),
               SUM(CASE WHEN e.status = 'paid' THEN 1 ELSE 0 END),
               COUNT(DISTINCT CASE WHEN e.id IS NOT NULL THEN h.id END),
               COUNT(DISTINCT CASE WHEN e.status = 'paid' THEN h.id END)
        FROM village v
        LEFT JOIN household h ON h.village_id = v.id AND h.status = 'active'
        LEFT JOIN member m ON m.household_id = h.id
        LEFT JOIN enrolment e ON e.member_id = m.id AND e.scheme_year_id = :y
        WHERE v.pool_id = :p GROUP BY v.id ORDER BY v.id"""), {"p": pool_id, "y": year_id})
    keys = ("households", "persons", "persons_enrolled", "persons_paid", "households_enrolled",
            "households_paid")
    return [{"village_id": r[0], **{k: int(v or 0) for k, v in zip(keys, r[1:])}}
            for r in rows]


def _ids(rng, n: int) -> list[str]:
    from tests.factories import make_id

    return [make_id(date(1940 + rng.randrange(60), 1 + rng.randrange(12), 1 + rng.randrange(28)))
            for _ in range(n)]


@pytest.mark.parametrize("seed", [5])
def test_household_tally_equals_a_recount_after_imports_signups_and_payments(db, app_ctx,
                                                                              tmp_path, seed):
    from core.households import NewMember, add_member, register_household
    from core.importer import import_households
    from core.models import InsuranceType, Relation, Village
    from tests.test_households_import import write_list

    rng = random.Random(seed)
    now = datetime.now(app_ctx.cfg.tz)

    def check(step: str) -> None:
        with db.session() as s:
            assert stats.stored_tally(s) == stats.recount_tally(s), \
                f"household_tally differs from the rows after {step}"
            year = scheme_years.for_report(s, pid(s), TODAY)
            got = [{k: v[k] for k in ("village_id", "households", "persons",
                                      "persons_enrolled", "persons_paid",
                                      "households_enrolled", "households_paid")}
                   for v in stats.participation(s, pid(s), year.id)]
            assert got == participation_from_rows(s, pid(s), year.id), step

    def import_list():  # ID numbers never seen: new households
        villages = ["示范镇/东村", "示范镇/西村"]
        rows, ids = [], _ids(rng, 6)
        for h in range(2):
            head = "孙" + rng.choice("甲乙丙丁戊己庚辛") + rng.choice("一二三四五六七八")
            for k, idn in enumerate(ids[3 * h:3 * h + 3]):
                rows.append([villages[h], "", head, head if k == 0 else head + "子女孙"[k], idn,
                             "户主" if k == 0 else "子女", "居民医保", "", ""])
        path = write_list(tmp_path / f"list-{rng.randrange(10**6)}.xlsx", rows)
        with db.session() as s:
            assert import_households(s, app_ctx.vault, path, actor="test", today=TODAY).ok

    def sign_up():
        idn = _ids(rng, 2)
        with db.session() as s:
            village = s.scalar(select(Village).where(Village.full_name == "示范镇/西村"))
            register_household(s, app_ctx.vault, village=village, members=[
                NewMember("周大", idn[0], date(1960, 1, 1), Relation.head,
                          InsuranceType.resident)], phone=None, openid=None, actor="test",
                today=TODAY)

    def add_one():
        with db.session() as s:
            hh = s.scalars(select(Household).order_by(Household.id.desc())).first()
            add_member(s, app_ctx.vault, hh, NewMember(
                "周小", _ids(rng, 1)[0], date(1990, 1, 1), Relation.child,
                InsuranceType.resident), "test", TODAY)

    def pay():
        with db.session() as s:
            unpaid = [h for h in s.scalars(select(Household).order_by(Household.id))
                      if stats.household_balance(s, h, scheme_years.for_report(
                          s, h.pool_id, TODAY))["members"][0]["enrolment"] == "pending"]
            if unpaid:
                hh = rng.choice(unpaid)
                _, q = due(s, hh, now.date())
                record_offline(s, hh, q.amount_fen, "cash", "test", now)

    def pay_list():  # a village's cash list, recorded at once
        with db.session() as s:
            unpaid = [h for h in s.scalars(select(Household).order_by(Household.id))
                      if stats.household_balance(s, h, scheme_years.for_report(
                          s, h.pool_id, TODAY))["members"][0]["enrolment"] == "pending"]
            chosen = rng.sample(unpaid, min(len(unpaid), 2))
            if chosen:
                record_offline_many(s, [(h.id, due(s, h, now.date())[1].amount_fen)
                                        for h in chosen], "cash", "test", now)

    moves = [import_list, sign_up, add_one, pay, pay, pay_list] * 2
    rng.shuffle(moves)
    for step, move in enumerate([import_list] + moves):
        move()
        check(f"step {step} ({move.__name__})")
    with db.session() as s:
        year = scheme_years.for_report(s, pid(s), TODAY)
        figures = stats.participation(s, pid(s), year.id)
    assert sum(v["persons_paid"] for v in figures) > 0
    assert sum(v["households"] for v in figures) >= 5
