"""Demo scene: the household pays with WeChat Pay (Native QR, the emulator pays and calls back),
a neighbour pays cash to the village administrator (/收款), and the fund report."""
from __future__ import annotations

import json
import time
from datetime import datetime

import requests
from sqlalchemy import select

from core.crypto import mask_id
from core.models import (Enrolment, EnrolmentStatus, Household, HouseholdLink, InsuranceType,
                         LinkRole, Member, Pool, Relation, Village)
from core.scheme import enrolment_scheme_year


def _household(x, openid: str, village: str, people: list[tuple[str, str, str, str | None]],
               number: str) -> str:
    """A signed-up household with pending enrolments (when the sign-up scene has not made one)."""
    with x.db.session() as s:
        v = s.scalar(select(Village).where(Village.full_name == village))
        hh = Household(number=number, pool_id=v.pool_id, village_id=v.id, phone_enc=x.vault.encrypt("13800000000"),
                       phone_masked="138****0000")
        s.add(hh)
        s.flush()
        year = enrolment_scheme_year(s, v.pool_id, datetime.now(x.cfg.tz).date())
        for name, id_number, relation, category in people:
            m = Member(household_id=hh.id, name=name, id_number_enc=x.vault.encrypt(id_number),
                       id_number_hash=x.vault.lookup_hash(id_number),
                       id_number_masked=mask_id(id_number), birth_year=int(id_number[6:10]),
                       relation=Relation(relation), insurance=InsuranceType.resident,
                       category=category)
            s.add(m)
            s.flush()
            s.add(Enrolment(member_id=m.id, scheme_year_id=year.id,
                            id_number_hash=m.id_number_hash, status=EnrolmentStatus.pending))
        s.add(HouseholdLink(household_id=hh.id, openid=openid, role=LinkRole.head))
        return hh.number


def _pushed(t, openid: str, since: int, wait: float = 4.0) -> None:
    for call in t.v.wait_pushes(openid, since, wait):
        body = call.get("json") or {}
        if body.get("msgtype") == "text":
            print("  ⇢ " + body["text"]["content"].replace("\n", "\n    "))
        elif body.get("msgtype") == "image":
            print("  ⇢ [图片：付款码]")


def scene(t, x, state: dict) -> None:
    from core.reports import fund_report

    server, emulator = t.v.server, t.v.emulator
    # the server listens on a port chosen at start: the notify URL and links follow it
    x.cfg.values["PAY_NOTIFY_URL"] = f"{server}/pay/notify"
    x.cfg.values["PUBLIC_URL"] = server
    villager, admin = state["villager"], state["admin"]
    if "household" not in state:
        state["household"] = _household(x, villager, "示范镇/东村", [
            ("王大山", "110101196005170119", "head", None),
            ("李小花", "110101196203080122", "spouse", None),
            ("王小明", "110101199001010138", "child", None)], "H100001")

    print("\n【村民缴费：微信支付】")
    since = t.v.last_call_id()
    r = t.say("村民", villager, "2", wait=0)
    # the outbox makes the order at WeChat Pay and pushes its code (the image) after the reply
    _pushed(t, villager, since)
    from core.models import PaymentOrder
    waited = time.monotonic() + 10
    while True:
        with x.db.session() as s:
            order = s.scalar(select(PaymentOrder).join(Household).where(
                Household.number == state["household"]).order_by(PaymentOrder.id.desc()))
            out_trade_no = order.out_trade_no if order is not None else None
            coded = order is not None and order.code_url is not None
        if out_trade_no is None or coded or time.monotonic() > waited:
            break
        time.sleep(0.2)
    if out_trade_no is None or "需付" not in r.reply:
        print("  (没有可付的订单，跳过微信支付)")
    else:
        print(f"\n$ curl -X POST {emulator}/_emulator/pay/{out_trade_no}   # 模拟村民扫码付款")
        since = t.v.last_call_id()
        paid = requests.post(f"{emulator}/_emulator/pay/{out_trade_no}",
                             json={"openid": villager}, timeout=20).json()
        print(f"  微信支付回调 /pay/notify → HTTP {paid['status']}")
        _pushed(t, villager, since)

    print("\n【邻居交现金给村管理员：/收款】")
    neighbour = "o_demo_neighbour"
    number = _household(x, neighbour, "示范镇/东村", [
        ("赵老汉", "110101195011110142", "head", None),
        ("钱阿婆", "110101195212120152", "spouse", "低保")], "H100002")
    t.say("村民", neighbour, "0", wait=0)
    t.say("管理员", admin, f"/收款 {number} 100", wait=0)
    t.say("管理员", admin, f"/收款 {number} 50 现金", wait=0)
    since = t.v.last_call_id()
    t.say("管理员", admin, "确认", wait=0)
    _pushed(t, neighbour, since)

    with x.db.session() as s:
        pool = s.scalar(select(Pool).where(Pool.code == "demo"))
        report = fund_report(s, pool, datetime.now(x.cfg.tz).date())
    print("\n$ huzhu report fund --pool demo --json")
    print(json.dumps(report, ensure_ascii=False, indent=2))
