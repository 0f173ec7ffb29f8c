"""Demo scene: transparency. The villager asks for the balance (5) and the fund (6); the village
gets a group chat; the month's disclosure goes to the group (markdown and poster) and to the
village's followers; the administrator looks at /统计 and sends a /公告; the year report is
written.

Uses state["claim"] (approved by the review scene, paid by the payout scene); when the payout
scene is not there, the approved claim is paid here through the models (a confirmed batch and its
ledger entry), and with no claim at all a household with a paid claim is made.
"""
from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

import requests
from sqlalchemy import select

GROUP_KEY = "demo-east-village-group"


def _paid_claim(x, state: dict, month: str) -> None:
    """Make sure the month has a paid subsidy to disclose (see the module's docstring)."""
    from core import ledger
    from core.models import (BankCard, BatchStatus, Claim, ClaimStatus, PayoutBatch, PayoutLine,
                             PayoutLineStatus, utcnow)

    today = datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        claim = (s.scalar(select(Claim).where(Claim.number == state["claim"]))
                 if state.get("claim") else None)
        if claim is None:
            from bot.devtools.scenes.s60_review import _household
            from core.claims import new_claim_number

            hh = _household(s, x, state["villager"])
            claim = Claim(number=new_claim_number(s), household_id=hh.id,
                          member_id=hh.members[0].id, status=ClaimStatus.approved,
                          drg_code="FM19", amount_fen=800000, out_of_pocket_fen=1811650,
                          stated={}, ocr={}, flags={}, reasons=[], trace=[])
            s.add(claim)
            s.flush()
            state["claim"] = claim.number
        if claim.status is not ClaimStatus.approved:
            return
        batch = s.scalar(select(PayoutBatch).where(PayoutBatch.pool_id == claim.household.pool_id,
                                                   PayoutBatch.month == month))
        if batch is not None:
            return  # the payout scene's batch: leave it to its own commands
        if ledger.balance(s, claim.household.pool_id) < claim.amount_fen:
            ledger.post(s, claim.household.pool_id, "funds", f"funds:demo-{month}",
                        ledger.funds_lines("government", 5000000), today, "government 演示拨款")
            print("\n$ huzhu funds add --pool demo --source government 50000.00")
        card = s.scalar(select(BankCard).where(BankCard.household_id == claim.household_id))
        batch = PayoutBatch(number=f"B-demo-{month}", pool_id=claim.household.pool_id,
                            month=month, status=BatchStatus.confirmed, total_fen=claim.amount_fen,
                            confirmed_at=utcnow())
        s.add(batch)
        s.flush()
        s.add(PayoutLine(batch_id=batch.id, claim_id=claim.id, amount_fen=claim.amount_fen,
                         card_bank=card.bank_name if card else "农业银行",
                         card_holder="demo", card_number_enc=card.number_enc if card else "-",
                         card_number_masked=card.number_masked if card else "****",
                         status=PayoutLineStatus.paid))
        claim.status = ClaimStatus.paid
        ledger.post(s, batch.pool_id, "payout", f"payout:{batch.number}",
                    {ledger.CASH: -claim.amount_fen, ledger.SUBSIDY: claim.amount_fen}, today,
                    "演示：补助发放")
        state["batch"] = batch.number
        print(f"  (没有发放场景：申请 {claim.number} 已直接记为本月发放，批次 {batch.number})")


def _group_posts(emulator: str, since: int, last: str, wait: float = 20.0) -> list[dict]:
    """The group posts after call `since`: waits for the `last` kind to come ("image": the
    poster, drawn after the markdown is posted, slower on a busy machine; "markdown"), then
    for nothing more to come."""
    deadline = time.monotonic() + wait
    seen: list[dict] = []
    while time.monotonic() < deadline:
        calls = requests.get(f"{emulator}/_emulator/calls", params={"since": since},
                             timeout=5).json()
        now = [c for c in calls if c["path"] in ("/cgi-bin/webhook/send",
                                                 "/cgi-bin/message/mass/sendall")]
        came = any((c.get("json") or {}).get("msgtype") == last for c in now)
        if came and len(now) == len(seen):
            break
        seen = now
        time.sleep(0.5)
    return seen


def _show_posts(calls: list[dict]) -> None:
    for c in calls:
        body = c.get("json") or {}
        if c["path"] == "/cgi-bin/message/mass/sendall":
            print(f"  ⇉ 群发给村里的关注者（{len(c.get('recipients') or [])} 人）：")
            print("    " + body["text"]["content"].replace("\n", "\n    "))
        elif body.get("msgtype") == "markdown":
            print("  ▣ 村互助群收到：")
            print("    " + body["markdown"]["content"].replace("\n", "\n    "))
        elif body.get("msgtype") == "image":
            print("  ▣ 村互助群收到：[公示海报 图片]")


def scene(t, x, state: dict) -> None:
    from core.yearbook import write_year_xlsx
    from bot.jobs.transparency import disclose
    from bot.clients.poster import year_charts
    from core import disclosure
    from core.groups import GroupError, add_group
    from core.models import Pool, Village
    from core.stats import percent, year_for, year_report

    villager, admin = state["villager"], state["admin"]
    today = datetime.now(x.cfg.tz).date()
    month = disclosure.month_of(today)
    print("\n【公开透明：余额、基金公示、月度公示、公告】")
    _paid_claim(x, state, month)
    t.say("村民", villager, "5", wait=0)
    t.say("村民", villager, "6", wait=0)

    with x.db.session() as s:
        east = s.scalar(select(Village).where(Village.full_name == "示范镇/东村"))
        pool_id = s.scalar(select(Pool.id).where(Pool.code == "demo"))
        try:
            add_group(s, east, GROUP_KEY, "cli:demo")
        except GroupError:
            pass
    print(f"\n$ huzhu groups add --village 示范镇/东村 --key {GROUP_KEY}")
    print(f"\n$ huzhu report disclosure --pool demo --month {month} --post")
    since = t.v.last_call_id()
    result = disclose(x, pool_id, month, actor="cli:demo")
    if not result["posted"]:  # published when the batch was confirmed, before the group existed
        print("  （确认发放时已公示过；新加的群再发一次）")
        result = disclose(x, pool_id, month, actor="cli:demo", force=True)
    print(f"  已排队：{result['messages']} 条群消息，{result['groups']} 个群")
    _show_posts(_group_posts(t.v.emulator, since, "image"))

    t.say("管理员", admin, "/统计", wait=0)
    t.say("管理员", admin, "/公告 本月互助补助已发放，名单见村互助群。下月5日前请缴清下一年度的费用。",
          wait=0)
    since = t.v.last_call_id()
    t.say("管理员", admin, "确认", wait=0)
    _show_posts(_group_posts(t.v.emulator, since, "markdown"))

    with x.db.session() as s:
        year = year_for(s, pool_id, today)
        report = year_report(s, pool_id, year)
    out = x.cfg.data_dir / "exports"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"year-demo-{year.start.isoformat()}"
    print("\n$ huzhu report year --pool demo")
    pct = {k: percent(Decimal(report[k])) if report[k] else "—"
           for k in ("utilisation", "benefit_rate", "burden_reduction", "participation_rate")}
    print(f"  参加率 {pct['participation_rate']}，基金使用率 {pct['utilisation']}，"
          f"受益率 {pct['benefit_rate']}，减负比例 {pct['burden_reduction']}")
    print(f"  wrote {write_year_xlsx(report, out / f'{stem}.xlsx')}")
    for d in year_charts(report, out, stem):
        print(f"  wrote {d.path}")
