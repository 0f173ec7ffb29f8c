"""Demo scene: the monthly payout. The approved claim's household registers its bank card by chat
(`银行卡`: card number, bank, holder, `确认`); the administrator previews the batch (/发放预览);
the scheduled run on the payout day (03:00) makes the batch and the bank file and tells the
administrator; the transfer done, /确认发放 marks it paid and the villager is told the amount and
the masked card; the fund report shows the payout.

Uses state["claim"] (approved by the review scene); without it (or if it is not approved), an
approved claim is made through the models. Leaves state["batch"].
"""
from __future__ import annotations

import os
import stat
from datetime import datetime, time
from pathlib import Path

from sqlalchemy import select
from stdnum import luhn

CARD_BODY = "622848001234567890"


def _approved_claim(x, state: dict) -> str:
    from core.models import Claim, ClaimStatus

    with x.db.session() as s:
        claim = (s.scalar(select(Claim).where(Claim.number == state["claim"]))
                 if state.get("claim") else None)
        if claim is not None and claim.status in (ClaimStatus.approved, ClaimStatus.in_payout):
            return claim.number
        from bot.devtools.scenes.s60_review import _household
        from core.claims import new_claim_number

        hh = _household(s, x, state["villager"])
        claim = Claim(number=new_claim_number(s), household_id=hh.id,
                      member_id=hh.members[0].id, status=ClaimStatus.approved,
                      drg_code="FM19", amount_fen=800000, out_of_pocket_fen=1811650,
                      stated={}, ocr={}, flags={}, reasons=[], trace=[])
        s.add(claim)
        s.flush()
        print(f"  (没有审核场景的已核准申请，已用服务建了一件：{claim.number}，8,000.00 元)")
        state["claim"] = claim.number
        return claim.number


def _pushes(t, openid: str, since: int, wait: float = 3.0) -> None:
    for call in t.v.wait_pushes(openid, since, wait):
        body = call.get("json") or {}
        if body.get("msgtype") == "text":
            print("  ⇢ " + body["text"]["content"].replace("\n", "\n    "))


def scene(t, x, state: dict) -> None:
    from core.reports import fund_report
    from bot.jobs.payouts import run_scheduled_payouts
    from core import bankcards, ledger
    from core.households import household_for_user
    from core.models import Pool
    from core.money import format_yuan
    from core.payouts import payout_day_for, service_fee_due

    villager, admin = state["villager"], state["admin"]
    print("\n【每月发放：登记银行卡、发放批次、银行文件、确认发放】")
    number = _approved_claim(x, state)
    today = datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        pool = s.scalar(select(Pool).where(Pool.code == "demo"))
        pool_id = pool.id
        hh = household_for_user(s, villager)
        has_card = bankcards.active_card(s, hh.id) is not None
        members = len(hh.members)
        if ledger.balance(s, pool_id) < 800000:
            ledger.post(s, pool_id, "funds", f"funds:demo-payout-{today:%Y%m}",
                        ledger.funds_lines("collective", 5_000_000), today, "村集体 演示拨款")
            print("\n$ huzhu funds add --pool demo --source collective 50000.00")
        day = payout_day_for(s, pool_id, today) or 5

    if not has_card:
        card = CARD_BODY + luhn.calc_check_digit(CARD_BODY)
        t.say("村民", villager, "银行卡", wait=0)
        t.say("村民", villager, "6228 4800", wait=0)  # too short: asked again, nothing kept
        t.say("村民", villager, " ".join(card[i:i + 4] for i in range(0, len(card), 4)), wait=0)
        t.say("村民", villager, "农行", wait=0)
        t.say("村民", villager, "1" if members else "王大山", wait=0)
        t.say("村民", villager, "确认", wait=0)

    t.say("管理员", admin, "/发放预览", wait=0)

    since = t.v.last_call_id()
    results = []
    if today.day >= day:  # the scheduler's job of this month's payout day, 03:00
        run_at = datetime.combine(today.replace(day=day), time(3, 0))
        print(f"\n【调度任务 payout.monthly：每月{day}日 03:00（{run_at:%Y-%m-%d %H:%M}）】")
        results = run_scheduled_payouts(x, run_at)
    if not results:  # before the payout day (or run already): the command does the same
        from core.payouts import month_of, run_payout

        print(f"\n$ huzhu payout run --pool demo --month {month_of(today)}")
        results = [run_payout(x.db, x.vault, x.cfg.data_dir, "demo", month_of(today),
                              "cli:demo", today)]
    r = results[0]
    if r.batch is None:
        print("  本月没有可以发放的补助。")
        return
    state["batch"] = r.batch
    print(f"  批次 {r.batch}：{r.lines} 笔，{format_yuan(r.total_fen)}，状态 {r.status}")
    path = Path(r.file)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    print(f"  银行文件 {path.name}（{path.stat().st_size} 字节，权限 {mode:o}：只有运行账号可读）")
    print("\n【管理员收到】")
    _pushes(t, admin, since)
    print("\n【村民收到】")
    _pushes(t, villager, since, 1.0)

    print("\n【银行转账完成后】")
    since = t.v.last_call_id()
    t.say("管理员", admin, f"/确认发放 {r.batch}", wait=0)
    print("\n【村民收到】")
    _pushes(t, villager, since)
    t.say("管理员", admin, f"/确认发放 {r.batch}", wait=0)  # again: nothing paid twice

    with x.db.session() as s:
        q = (today.month - 1) // 3 + 1
        fee, paid, _ = service_fee_due(s, pool_id, f"{today.year}Q{q}")
        doc = fund_report(s, s.get(Pool, pool_id), today)
    print(f"\n本季度已发放 {format_yuan(paid)}，季度结束后自动计提服务费 {format_yuan(fee)}"
          f"（payout.service_fee，按方案费率）")
    print("\n$ huzhu report fund --pool demo")
    print(f"  上年结转 {format_yuan(doc['carried_over_fen'])}；补助支出 "
          f"{format_yuan(doc['paid_fen'])}；服务费 {format_yuan(doc['fees_fen'])}；"
          f"追回 {format_yuan(doc['recovered_fen'])}；余额 {format_yuan(doc['balance_fen'])}")
    print(f"  (申请 {number} 已发放)")
