"""Demo scene 30: a household signs up in chat (参加互助, the SPEC order, summary, 确认), the head
binds a son who works in town as a proxy (绑定家人 / 绑定 <code>), and a village's list is
imported in bulk. Leaves state["household"] (the number) and state["proxy"] (the son's openid)."""
from __future__ import annotations

import re
import tempfile
from datetime import date, datetime
from pathlib import Path

from stdnum.cn import ric


def _id(born: date, seq: int) -> str:
    body = f"320582{born:%Y%m%d}{seq:03d}"
    return body + ric.calc_check_digit(body + "0")


def scene(t, x, state: dict) -> None:
    villager = state["villager"]
    son = state.setdefault("proxy", "o_demo_son")
    head_id, spouse_id = _id(date(1956, 3, 12), 31), _id(date(1958, 10, 2), 42)
    print("\n【村民登记参加互助】")
    # insurance 1 (居民医保), then the category: 1 无 (the demo scheme names 低保 and 特困)
    for text in ("1", "1", "王大山", head_id, "13800138000", "1", "1", "1", "李小花", spouse_id,
                 "1", "1", "1", "2"):
        r = t.say("村民", villager, text, wait=0)
    r = t.say("村民", villager, "确认", wait=0)
    m = re.search(r"户号 (H\d+)", r.reply)
    if m:
        state["household"] = m.group(1)

    print("\n【户主绑定在城里打工的儿子，让他代办】")
    r = t.say("村民", villager, "绑定家人 儿子小明", wait=0)
    code = re.search(r"绑定码：(\d{6})", r.reply)
    if code:
        t.v.subscribe(son, wait=0)
        t.say("儿子", son, f"绑定 {code.group(1)}", wait=0)
        t.say("村民", villager, "家人", wait=1.5)

    print("\n【村里把名单整理成表格，一次导入】")
    _bulk_import(x)


def _bulk_import(x) -> None:
    from openpyxl import Workbook

    from core.importer import COLUMNS, import_households

    rows = [
        ["示范镇/西村", "", "赵铁柱", "赵铁柱", _id(date(1949, 7, 1), 51), "户主", "居民医保", "", "13900139000"],
        ["示范镇/西村", "", "赵铁柱", "孙桂兰", _id(date(1951, 2, 9), 62), "配偶", "居民医保", "低保", ""],
        ["示范镇/南村", "", "钱进", "钱进", _id(date(1980, 5, 20), 73), "户主", "职工医保", "", "13700137000"],
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "西村南村名单.xlsx"
        wb = Workbook()
        ws = wb.active
        ws.title = "名单"
        ws.append(list(COLUMNS))
        for row in rows:
            ws.append(row)
        wb.save(path)
        today = datetime.now(x.cfg.tz).date()
        for attempt in (1, 2):
            with x.db.session() as s:
                result = import_households(s, x.vault, path, actor="cli:demo", today=today)
            print(f"\n$ huzhu households import {path.name}")
            if result.changed:
                print(f"{path.name}: 导入完成。新户 {result.households_new} 户，新成员 "
                      f"{result.members_new} 人，新登记（待缴费）{result.enrolments_new} 人。")
            else:
                print(f"{path.name}: 没有任何改动——文件中的 {result.unchanged} 人本年度都已登记在同一户"
                      f"（这份名单已经导入过）。")
