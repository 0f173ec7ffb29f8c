"""`查病种 关键词` through the webhook: DRG groups by name or code with this year's quota of the
asker's pool, the threshold for the household's insurance types, how to claim; a short list;
a Chinese answer when nothing matches."""
from __future__ import annotations

from tests.factories import M, make_household

ASKER = "o_drg_asker"


def test_a_member_looks_up_groups_quotas_and_thresholds(villager, db, app_ctx):
    with db.session() as s:
        make_household(s, app_ctx.vault, [M("王大山"), M("李小花", "spouse", "employee")],
                       village="示范镇/东村", openid=ASKER)
    r = villager.text(ASKER, "查病种 阑尾").reply
    assert "GD25 阑尾切除术，不伴并发症或合并症：800.00 元" in r
    # a group the table quotes by its ADRG/MDC row has that quota too
    assert "GD13 伴穿孔、化脓、坏疽等阑尾切除术，伴并发症或合并症：6,400.00 元" in r
    assert "居民医保 3,000.00 元，职工医保 2,000.00 元" in r and "未参保" not in r
    assert "回复 3 申请补助" in r and "出院记录、费用清单、结算单" in r

    r = villager.text(ASKER, "查病种 fm19").reply
    assert "FM19 经皮冠状动脉支架植入：8,000.00 元" in r


def test_long_lists_are_cut_and_nothing_found_is_said(villager, db, app_ctx):
    r = villager.text("o_drg_nobody", "查病种 伴并发症").reply
    assert r.count("\n") <= 12
    assert "只列出前 6 个" in r and "请写得更具体些" in r
    # no household: the demo pool (the only one), every insurance type
    assert "居民医保 3,000.00 元，职工医保 2,000.00 元，未参保 6,000.00 元" in r
    r = villager.text("o_drg_nobody", "查病种 没有这种病").reply
    assert "没有找到“没有这种病”的病种" in r and "查病种 肺炎" in r
    r = villager.text("o_drg_nobody", "查病种 %").reply  # a literal %, not a wildcard
    assert "WB19" in r and "WR19" in r and "只列出" not in r
    assert "查病种 阑尾" in villager.text("o_drg_nobody", "查病种").reply
    assert "查病种 病名" in villager.text("o_drg_nobody", "0").reply
