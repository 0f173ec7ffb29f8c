"""Appeals (复核) end to end through the webhook: a household asks for a second look at a
rejection (`复核 申请号 理由`, or a plain reply to the rejection message), the pool's reviewers
are told, another reviewer keeps the rejection (`/复核 … 维持`) or has the rule decide again
(`/复核 … 改判`); late, second and someone else's appeals are refused and change nothing."""
from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from sqlalchemy import select, update

from core.config import SCHEMES_DIR
from core.models import AuditLog, Claim, ClaimStatus, SchemeYear, utcnow
from core.scheme import SchemeError, load_scheme
from tests.factories import M, make_household
from tests.test_claims_cli import run
from tests.test_review import (REVIEWER, TODAY, VILLAGER, bind, claim_audits, claim_row, cn, full,
                               home, new_claim, pushes_after)  # noqa: F401 (fixture)

OTHER = "o_reviewer_two"
OUTSIDER = "o_vil_outsider"


def reject_excluded(villager, number: str) -> str:
    villager.text(REVIEWER, full(number))  # 8,000.00 computed
    return villager.text(REVIEWER, f"/驳回 {number} excluded_non_disease 像是体检").reply


def reject_below(villager, number: str) -> str:
    villager.text(REVIEWER, full(number, amount="1000.00"))  # below the 3,000.00 threshold
    return villager.text(REVIEWER, f"/驳回 {number} below_threshold").reply


def refused_audits(db, actor: str) -> list[dict]:
    with db.session() as s:
        return [a.after for a in s.scalars(select(AuditLog).where(
            AuditLog.actor == actor, AuditLog.action == "admin.refused").order_by(AuditLog.id))]


def test_an_appeal_reopened_by_another_reviewer_is_decided_again(villager, db, home, app_ctx,
                                                                 cfg):
    number = new_claim(db, home)
    since = villager.last_call_id()
    reject_excluded(villager, number)
    told = "\n".join(pushes_after(villager, VILLAGER, since))
    assert "没有通过审核" in told and f"复核 {number} 理由" in told
    assert cn(TODAY + timedelta(days=15)) in told  # the scheme's default 15 days

    bind(villager, db, OTHER, "reviewer", pool="demo")
    villager.text(OTHER, "/帮助")
    since = villager.last_call_id()
    r = villager.text(VILLAGER, f"复核 {number.lower()} 去医院是因为胸口疼，不是体检")
    assert f"已收到您对王*山的补助申请 {number} 的复核申请" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.appealed
    assert "胸口疼" in claim.appeal_reason and claim.appealed_by == VILLAGER
    for reviewer in (REVIEWER, OTHER):
        msg = "\n".join(pushes_after(villager, reviewer, since))
        assert f"【复核】补助申请 {number}" in msg and "胸口疼" in msg and "王*山" in msg
        assert "王大山" not in msg

    # seen wherever statuses are listed
    assert "复核中" in villager.text(VILLAGER, "4").reply
    queue = villager.text(OTHER, "/待审").reply
    assert number in queue and "家庭申请复核" in queue and f"/复核 {number} 维持 或 改判" in queue
    listed = json.loads(run(cfg, "claims", "list", "--status", "appealed", "--json").stdout)
    assert [c["number"] for c in listed] == [number] and listed[0]["status"] == "appealed"
    assert "/复核 申请号 维持|改判" in villager.text(OTHER, "/帮助").reply
    view = villager.text(OTHER, f"/查看 {number}").reply
    assert f"家庭申请复核（{cn(TODAY)}）" in view and "胸口疼" in view
    assert f"/复核 {number} 改判" in view

    # the reviewer who rejected it may not decide it: the pool has another
    r = villager.text(REVIEWER, f"/复核 {number} 改判")
    assert "是你驳回的" in r.reply and "其他审核员" in r.reply
    assert claim_row(db, number).status is ClaimStatus.appealed
    assert refused_audits(db, REVIEWER)[-1]["why"] == "appeal_admin_refused"
    r = villager.text(OTHER, f"/复核 {number} 也许")
    assert "/复核 申请号 维持|改判" in r.reply
    assert claim_row(db, number).status is ClaimStatus.appealed

    since = villager.last_call_id()
    r = villager.text(OTHER, f"/复核 {number} 改判 病历显示急性胸痛")
    assert "改判" in r.reply and "补助 8,000.00 元" in r.reply and f"/通过 {number}" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.in_review and claim.amount_fen == 800000
    assert claim.reasons == [] and claim.exclusion is None
    told = "\n".join(pushes_after(villager, VILLAGER, since))
    assert f"补助申请 {number} 复核完毕：审核员改判" in told and "急性胸痛" in told
    assert "approved" not in told

    villager.text(OTHER, f"/通过 {number}")
    assert claim_row(db, number).status is ClaimStatus.approved
    assert claim_audits(db, number) == ["claim.in_review", "claim.rejected", "claim.appealed",
                                        "claim.in_review", "claim.approved"]


def test_a_plain_reply_to_a_rejection_is_taken_as_the_appeal_and_kept(villager, db, home):
    number = new_claim(db, home)
    reject_below(villager, number)

    r = villager.text(VILLAGER, "结算单上的自付金额是五千多，你们看错了")
    assert "没有看懂" not in r.reply
    assert f"补助申请 {number} 没有通过有异议吗" in r.reply and "回复 1 申请复核" in r.reply
    assert claim_row(db, number).status is ClaimStatus.rejected  # asked first, nothing yet
    assert "请回复 1" in villager.text(VILLAGER, "嗯").reply
    r = villager.text(VILLAGER, "1")
    assert "复核申请" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.appealed
    assert "自付金额是五千多" in claim.appeal_reason

    # one reviewer in the pool: the one who rejected it decides
    r = villager.text(REVIEWER, f"/复核 {number} 改判")
    assert "仍不予补助：未达起付标准" in r.reply
    assert claim_row(db, number).status is ClaimStatus.in_review
    villager.text(REVIEWER, f"/驳回 {number} below_threshold")
    assert claim_row(db, number).status is ClaimStatus.rejected

    # a second appeal is refused with the date of the first; so is a plain reply now
    r = villager.text(VILLAGER, f"复核 {number} 再看一次")
    assert f"已在 {cn(TODAY)} 申请过复核" in r.reply and "只能复核一次" in r.reply
    assert "没有看懂" in villager.text(VILLAGER, "还是不对").reply
    assert claim_row(db, number).status is ClaimStatus.rejected


def test_keeping_the_rejection_tells_the_household(villager, db, home):
    number = new_claim(db, home)
    reject_below(villager, number)
    since = villager.last_call_id()
    villager.text(VILLAGER, f"复核 {number} 请再看看 身份证{home['full_id']} 电话13912345678")
    stored = claim_row(db, number).appeal_reason
    told = "\n".join(pushes_after(villager, REVIEWER, since))
    for text in (stored, told):  # personal numbers in the reason are masked
        assert "请再看看" in text and home["full_id"] not in text and "13912345678" not in text
    assert "139****5678" in stored
    since = villager.last_call_id()
    r = villager.text(REVIEWER, f"/复核 {number} 维持 自付 1,000 元，未到起付线")
    assert "维持驳回" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.rejected and claim.reasons == ["below_threshold"]
    assert "复核：维持驳回" in claim.trace[-1]["text"]
    told = "\n".join(pushes_after(villager, VILLAGER, since))
    assert "复核完毕：维持原来的审核结果" in told and "未到起付线" in told
    r = villager.text(REVIEWER, f"/复核 {number} 维持")
    assert "不在复核中" in r.reply and "未通过" in r.reply
    assert refused_audits(db, REVIEWER)[-1]["why"] == "appeal_admin_refused"


def test_late_unknown_and_other_households_appeals_are_refused(villager, db, home, app_ctx):
    number = new_claim(db, home)
    other = new_claim(db, home)
    reject_below(villager, number)
    with db.session() as s:
        make_household(s, app_ctx.vault, [M("赵四海")], village="示范镇/西村", openid=OUTSIDER)

    r = villager.text(OUTSIDER, f"复核 {number} 我也觉得不对")
    assert f"没有找到您家的补助申请“{number}”" in r.reply
    assert "没有看懂" in villager.text(OUTSIDER, "我也觉得不对").reply
    assert "复核 申请号 理由" in villager.text(VILLAGER, "复核").reply
    assert "请写明为什么要复核" in villager.text(VILLAGER, f"复核 {number}").reply
    r = villager.text(VILLAGER, f"复核 {other} 快点审")
    assert "没有被驳回" in r.reply and "已提交，等待审核" in r.reply
    assert "没有找到您家的补助申请" in villager.text(VILLAGER, "复核 C99999999 试试").reply
    assert claim_row(db, number).status is ClaimStatus.rejected

    with db.session() as s:  # rejected 16 days ago: the 15 days are over
        s.execute(update(Claim).where(Claim.number == number)
                  .values(rejected_at=utcnow() - timedelta(days=16)))
    r = villager.text(VILLAGER, f"复核 {number} 我才看到")
    assert "复核期限是驳回后 15 天" in r.reply
    assert cn(TODAY - timedelta(days=1)) in r.reply
    assert "没有看懂" in villager.text(VILLAGER, "我才看到通知").reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.rejected and claim.appealed_at is None
    assert "没有申请" in villager.text(REVIEWER, "/复核 C99999999 维持").reply


def test_appeal_days_come_from_the_scheme(villager, db, home):
    text = (SCHEMES_DIR / "demo.yaml").read_text(encoding="utf-8")
    assert "appeal_days" not in text
    data = text.replace("  review_working_days: 5", "  review_working_days: 5\n  appeal_days: 30")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.yaml"
        path.write_text(data, encoding="utf-8")
        (Path(tmp) / "demo-quotas.csv").write_text(
            (SCHEMES_DIR / "demo-quotas.csv").read_text(encoding="utf-8"), encoding="utf-8")
        scheme = load_scheme(path, today=TODAY)
        bad = Path(tmp) / "bad.yaml"
        bad.write_text(data.replace("appeal_days: 30", "appeal_days: 0"), encoding="utf-8")
        with pytest.raises(SchemeError, match=r"claims.appeal_days"):
            load_scheme(bad, today=TODAY)
    assert scheme.claims.appeal_days == 30
    with db.session() as s:
        year = s.scalar(select(SchemeYear))
        rules = dict(year.rules)
        rules["claims"] = {**rules["claims"], "appeal_days": 30}
        year.rules = rules
    number = new_claim(db, home)
    reject_below(villager, number)
    with db.session() as s:
        s.execute(update(Claim).where(Claim.number == number)
                  .values(rejected_at=utcnow() - timedelta(days=20)))
    r = villager.text(VILLAGER, f"复核 {number} 二十天了还能复核吗")
    assert "复核申请" in r.reply
    assert claim_row(db, number).status is ClaimStatus.appealed


def test_reopened_without_recorded_facts_waits_for_a_new_record(villager, db, home):
    number = new_claim(db, home)
    villager.text(REVIEWER, f"/驳回 {number} unreadable_documents 照片太模糊")
    r = villager.voice(VILLAGER, "照片我重新拍了。")  # a voice reply is an answer too
    assert f"补助申请 {number} 没有通过有异议吗" in r.reply and "照片我重新拍了" in r.reply
    villager.text(VILLAGER, "取消")
    assert claim_row(db, number).status is ClaimStatus.rejected
    villager.text(VILLAGER, f"复核 {number} 我重新拍了清楚的照片")
    r = villager.text(REVIEWER, f"/复核 {number} 改判")
    assert "还没有核定过事实" in r.reply and f"/核定 {number}" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.in_review and claim.amount_fen is None
    assert claim.reasons == []
    assert "补助 8,000.00 元" in villager.text(REVIEWER, full(number)).reply
    villager.text(REVIEWER, f"/通过 {number}")
    assert claim_row(db, number).status is ClaimStatus.approved
