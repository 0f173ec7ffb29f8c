"""Reviewer commands end to end: a bound administrator sends /待审 /查看 /核定 /通过 /驳回 /补件
through the webhook; the household's linked user sees the notifications the emulator received;
scope refusals are audited; bad arguments change nothing."""
from __future__ import annotations

import copy
from datetime import date, timedelta

import pytest
import requests
from sqlalchemy import func, select

from core.admins import create_invite
from core.models import (AuditLog, Claim, ClaimStatus, Enrolment, EnrolmentStatus, Member,
                         OutboxMessage, SchemeYear, utcnow)
from core.scheme import load_scheme, scheme_year_on, store_scheme
from core.config import SCHEMES_DIR
from tests.factories import local_today, M, make_claim, make_household
from tests.test_review_links import open_in_wechat

TODAY = local_today()
ADMISSION = TODAY - timedelta(days=20)
DISCHARGE = TODAY - timedelta(days=12)
VILLAGER = "o_vil_review"
REVIEWER = "o_reviewer"


# ---------------------------------------------------------------------------------------------
# helpers

def bind(villager, db, openid: str, role: str, **scope) -> None:
    with db.session() as s:
        code = create_invite(s, role, "cli:test", **scope)
    assert "绑定成功" in villager.text(openid, f"/绑定 {code}").reply


def claim_row(db, number: str) -> Claim:
    with db.session() as s:
        claim = s.scalar(select(Claim).where(Claim.number == number))
        s.expunge(claim)
        return claim


def audits(db, actor: str, action: str | None = None) -> list[AuditLog]:
    with db.session() as s:
        q = select(AuditLog).where(AuditLog.actor == actor).order_by(AuditLog.id)
        if action:
            q = q.where(AuditLog.action == action)
        rows = list(s.scalars(q))
        for r in rows:
            s.expunge(r)
        return rows


def claim_audits(db, number: str) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(AuditLog.action).where(
            AuditLog.entity == "claim", AuditLog.entity_id == number,
            AuditLog.action.like("claim.%")).order_by(AuditLog.id)))


def pushes_after(villager, openid: str, since: int, seconds: float = 4.0) -> list[str]:
    calls = villager.wait_pushes(openid, since, seconds)
    out = []
    for call in calls:
        body = call.get("json") or {}
        if body.get("msgtype") == "text":
            out.append(body["text"]["content"])
    return out


def d(day: date) -> str:
    return day.isoformat()


def cn(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


@pytest.fixture
def home(app_ctx, db, villager):
    """A household of 示范镇/东村 whose head (王大山) is linked to VILLAGER, paid this year; the
    villager has written recently (so pushes reach them); a reviewer of the demo pool."""
    people = [M("王大山"), M("李小花", "spouse")]
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, people, village="示范镇/东村", openid=VILLAGER)
        ids = {"household": hh.id, "number": hh.number, "head": hh.members[0].id,
               "spouse": hh.members[1].id, "id_number": hh.members[0].id_number_masked,
               "full_id": people[0].id_number}
    villager.text(VILLAGER, "0")
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    return ids


def new_claim(db, home, member: str = "head", **kw) -> str:
    from core.models import Household

    with db.session() as s:
        hh = s.get(Household, home["household"])
        claim = make_claim(s, hh, s.get(Member, home[member]), **kw)
        return claim.number


def full(number: str, drg="FM19", amount="12000.00", admission=ADMISSION, discharge=DISCHARGE,
         insurance="居民医保", hospital="县人民医院") -> str:
    return f"/核定 {number} {drg} {amount} {d(admission)} {d(discharge)} {insurance} {hospital}"


GOOD_FIELDS = {"total_fen": {"value": 3000000, "confidence": 0.96},
               "fund_paid_fen": {"value": 1800000, "confidence": 0.96},
               "out_of_pocket_fen": {"value": 1200000, "confidence": 0.97},
               "admission_date": {"value": d(ADMISSION), "confidence": 0.95},
               "discharge_date": {"value": d(DISCHARGE), "confidence": 0.93},
               "insurance": {"value": "employee", "confidence": 0.92},
               "hospital": {"value": "县人民医院", "confidence": 0.91}}


def ocr(fields=GOOD_FIELDS, consistent=True, **changes) -> dict:
    """claim.ocr as the photo deliverer writes it (core/claims.py)."""
    fields = {**fields, **changes}
    return {"fields": {k: v for k, v in fields.items() if v is not None},
            "consistent": consistent, "documents": {}}


# ---------------------------------------------------------------------------------------------
# the whole path

def test_queue_view_record_approve_and_the_household_is_told(villager, db, home, cfg):
    number = new_claim(db, home, due_date=TODAY + timedelta(days=5))

    queue = villager.text(REVIEWER, "/待审").reply
    assert number in queue and "王*山" in queue and cn(TODAY + timedelta(days=5)) in queue

    view = villager.text(REVIEWER, f"/查看 {number}").reply
    assert "王*山" in view and home["id_number"] in view
    assert "王大山" not in view and home["full_id"] not in view
    assert "出院记录：http" in view and "结算单：http" in view and "费用清单：http" in view

    since = villager.last_call_id()
    r = villager.text(REVIEWER, full(number))
    assert "补助 8,000.00 元" in r.reply and f"/通过 {number}" in r.reply
    assert "未定案" in r.reply and "病种 FM19 定额 8,000.00 元" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.in_review and claim.amount_fen == 800000
    assert claim.reasons == [] and claim.drg_code == "FM19" and claim.hospital == "县人民医院"
    assert (claim.admission_date, claim.discharge_date, claim.out_of_pocket_fen) == (
        ADMISSION, DISCHARGE, 1200000)
    assert [s["step"] for s in claim.trace][-1] == "decision"
    told = pushes_after(villager, VILLAGER, since)
    assert len(told) == 1 and number in told[0] and "正在审核" in told[0]

    since = villager.last_call_id()
    r = villager.text(REVIEWER, f"/通过 {number}")
    assert "已通过" in r.reply and "8,000.00 元" in r.reply
    assert claim_row(db, number).status is ClaimStatus.approved
    told = pushes_after(villager, VILLAGER, since)
    approval = next(t for t in told if "审核通过" in t)
    assert "补助 8,000.00 元" in approval and "病种 FM19 定额 8,000.00 元" in approval
    assert "不超过单次最高 50,000.00 元 和个人自付 12,000.00 元" in approval
    # no bank card on file: the household is asked to send 银行卡
    assert any("银行卡" in t and "回复" in t for t in told)
    assert not any("王大山" in t or home["full_id"] in t for t in told)

    assert claim_audits(db, number) == ["claim.in_review", "claim.approved"]
    approved = audits(db, REVIEWER, "claim.approved")[0]
    assert approved.before["status"] == "in_review" and approved.after["amount_fen"] == 800000
    actions = {a.action for a in audits(db, REVIEWER)}
    assert {"review.queue", "review.view", "claim.in_review", "claim.approved"} <= actions


def test_record_may_be_repeated_and_the_household_is_told_once(villager, db, home):
    number = new_claim(db, home)
    since = villager.last_call_id()
    villager.text(REVIEWER, full(number, amount="5000.00"))
    r = villager.text(REVIEWER, full(number, drg="AA19", amount="60000.00"))
    assert "补助 40,000.00 元" in r.reply
    assert claim_row(db, number).amount_fen == 4000000
    told = pushes_after(villager, VILLAGER, since, 3)
    assert len([t for t in told if "正在审核" in t]) == 1
    assert claim_audits(db, number) == ["claim.in_review", "claim.in_review"]


def test_continuous_member_gets_the_bonus(villager, db, home, app_ctx):
    """A previous scheme year ending the day before this one, the member paid in it: +10%."""
    with db.session() as s:
        year = scheme_year_on(s, "demo", TODAY)
        rules = copy.deepcopy(year.rules)
        prev_end = year.start - timedelta(days=1)
        prev_start = prev_end - timedelta(days=364)
        rules["year"] = {"start": d(prev_start), "end": d(prev_end)}
        prev = SchemeYear(pool_id=year.pool_id, start=prev_start, end=prev_end,
                          enrolment_opens=prev_start, enrolment_closes=prev_start, rules=rules)
        s.add(prev)
        s.flush()
        head = s.get(Member, home["head"])
        s.add(Enrolment(member_id=head.id, scheme_year_id=prev.id,
                        id_number_hash=head.id_number_hash, status=EnrolmentStatus.paid,
                        paid_at=utcnow()))
    head_claim = new_claim(db, home)
    spouse_claim = new_claim(db, home, member="spouse")
    r = villager.text(REVIEWER, full(head_claim))
    assert "连续参加 +10% → 8,800.00 元" in r.reply and "补助 8,800.00 元" in r.reply
    r = villager.text(REVIEWER, full(spouse_claim))
    assert "没有连续参加加成" in r.reply and "补助 8,000.00 元" in r.reply


# ---------------------------------------------------------------------------------------------
# rejections

def test_approval_is_refused_for_a_computed_rejection_then_rejected(villager, db, home):
    number = new_claim(db, home)
    r = villager.text(REVIEWER, full(number, amount="2500.00"))
    assert "不予补助：未达起付标准" in r.reply
    assert f"/驳回 {number} below_threshold" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.in_review and claim.amount_fen is None
    assert claim.reasons == ["below_threshold"]

    r = villager.text(REVIEWER, f"/通过 {number}")
    assert "不能通过" in r.reply and "未达起付标准" in r.reply
    assert claim_row(db, number).status is ClaimStatus.in_review
    refused = audits(db, REVIEWER, "admin.refused")
    assert refused and refused[-1].entity_id == "通过"

    since = villager.last_call_id()
    r = villager.text(REVIEWER, f"/驳回 {number} below_threshold")
    assert "已驳回" in r.reply and "未达起付标准" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.rejected and claim.reasons == ["below_threshold"]
    assert claim.amount_fen is None
    told = pushes_after(villager, VILLAGER, since)
    rejection = next(t for t in told if "没有通过审核" in t)
    assert "个人自付 2,500.00 元 未达到居民医保起付标准 3,000.00 元" in rejection
    assert "重新拍照上传结算单" in rejection  # what could change it
    assert "审核过程" in rejection
    assert claim_audits(db, number) == ["claim.in_review", "claim.rejected"]


def test_reviewer_s_own_reason_with_a_text(villager, db, home):
    number = new_claim(db, home)
    since = villager.last_call_id()
    r = villager.text(REVIEWER, f"/驳回 {number} unreadable_documents 结算单照片太模糊")
    assert "已驳回" in r.reply and "材料看不清" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.rejected and claim.reasons == ["unreadable_documents"]
    assert claim.note == "结算单照片太模糊"
    assert claim.trace[-1]["step"] == "reviewer"
    told = pushes_after(villager, VILLAGER, since)
    rejection = next(t for t in told if "没有通过审核" in t)
    assert "照片看不清" in rejection and "重新拍照" in rejection and "结算单照片太模糊" in rejection


def test_exclusion_rejection_records_the_exclusion(villager, db, home):
    number = new_claim(db, home)
    r = villager.text(REVIEWER, f"/驳回 {number} excluded_work_injury")
    assert "已驳回" in r.reply and "工伤" in r.reply
    claim = claim_row(db, number)
    assert claim.reasons == ["excluded_work_injury"] and claim.exclusion == "work_injury"


def test_rejection_codes_that_do_not_apply_are_refused(villager, db, home):
    number = new_claim(db, home)
    r = villager.text(REVIEWER, f"/驳回 {number} no_such_reason")
    assert "没有“no_such_reason”这个原因代码" in r.reply and "incomplete_documents" in r.reply
    assert "/驳回 申请号 原因代码" in r.reply
    # a computed reason before any /核定, or one the decision does not give
    r = villager.text(REVIEWER, f"/驳回 {number} below_threshold")
    assert "不是申请" in r.reply and "核定结果" in r.reply
    villager.text(REVIEWER, full(number))
    r = villager.text(REVIEWER, f"/驳回 {number} below_threshold")
    assert "不是申请" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.in_review and claim.amount_fen == 800000
    assert claim_audits(db, number) == ["claim.in_review"]


def test_ask_for_documents(villager, db, home):
    number = new_claim(db, home, documents=("discharge_record", "itemized_bill"))
    r = villager.text(REVIEWER, f"/补件 {number}")
    assert "/补件 申请号 说明" in r.reply
    assert claim_row(db, number).status is ClaimStatus.submitted

    since = villager.last_call_id()
    r = villager.text(REVIEWER, f"/补件 {number} 请补拍医保结算单")
    assert "请补拍医保结算单" in r.reply and number in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.need_documents and claim.note == "请补拍医保结算单"
    told = pushes_after(villager, VILLAGER, since)
    assert any("需要补充材料" in t and "请补拍医保结算单" in t for t in told)
    # a claim waiting for documents is not decided
    r = villager.text(REVIEWER, full(number))
    assert "待补交材料" in r.reply and "不能核定" in r.reply
    assert claim_row(db, number).status is ClaimStatus.need_documents


# ---------------------------------------------------------------------------------------------
# history: annual cap, overlapping stays, a decision that changed

def test_annual_cap_across_claims(villager, db, home):
    new_claim(db, home, status="approved", amount_fen=9_500_000, drg_code="AA19",
              admission_date=ADMISSION - timedelta(days=40),
              discharge_date=ADMISSION - timedelta(days=30))
    number = new_claim(db, home)
    r = villager.text(REVIEWER, full(number))
    assert "本年已核定 95,000.00 元，尚余 5,000.00 元 → 5,000.00 元" in r.reply
    assert claim_row(db, number).amount_fen == 500000

    full_cap = new_claim(db, home, member="spouse", status="paid", amount_fen=10_000_000,
                         admission_date=ADMISSION - timedelta(days=40),
                         discharge_date=ADMISSION - timedelta(days=35))
    assert full_cap
    second = new_claim(db, home, member="spouse")
    r = villager.text(REVIEWER, full(second))
    assert "不予补助：已达年度上限" in r.reply
    assert claim_row(db, second).reasons == ["annual_cap_reached"]


def test_a_decision_reads_the_persons_claims_by_index_not_every_claim(villager, db, home):
    """/核定 reads the person's other claims (annual cap, overlapping stays). A province files
    100,000 claims a month: the read goes by the claim's member (index ix_claim_member), not
    through every claim there is."""
    if not db.is_postgres:
        pytest.skip("a plan check on PostgreSQL's statistics; SQLite reads by its indexes too")
    from sqlalchemy import text

    from core.review.decide import history_of
    from core.scheme_years import of_claim

    earlier = new_claim(db, home, status="approved", amount_fen=100_000,
                        admission_date=ADMISSION - timedelta(days=40),
                        discharge_date=ADMISSION - timedelta(days=30))
    number = new_claim(db, home)
    with db.session() as s:  # other people's claims: a month of a province, in miniature
        s.execute(text(
            "INSERT INTO claim (number, household_id, member_id, status, stated, ocr, flags, "
            "reasons, trace, created_at, updated_at) "
            "SELECT 'F' || i, :household, :member, 'paid', '{}', '{}', '{}', '[]', '[]', "
            "now(), now() FROM generate_series(1, 20000) AS i"),
            {"household": home["household"], "member": home["spouse"]})
    # current statistics of every table the read joins, as autovacuum keeps them (not what
    # earlier tests on this database left)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("ANALYZE claim, member, household"))
    with db.session() as s:
        claim = s.scalar(select(Claim).where(Claim.number == number))
        scans = text("SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_xact_user_tables "
                     "WHERE relname = 'claim'")
        before = s.scalar(scans)
        history = history_of(s, claim, of_claim(s, claim))
        assert s.scalar(scans) == before
    assert [c.number for c in history.other_claims] == [earlier]


def test_overlapping_stay_is_a_duplicate(villager, db, home):
    other = new_claim(db, home, status="in_review", admission_date=ADMISSION + timedelta(days=2),
                      discharge_date=DISCHARGE + timedelta(days=1))
    number = new_claim(db, home)
    r = villager.text(REVIEWER, full(number))
    assert "住院时间重复" in r.reply and other in r.reply
    assert claim_row(db, number).reasons == ["duplicate"]


def test_approval_rechecks_the_rule_when_another_claim_was_approved_since(villager, db, home):
    number = new_claim(db, home)
    villager.text(REVIEWER, full(number))
    new_claim(db, home, status="approved", amount_fen=9_800_000,
              admission_date=ADMISSION - timedelta(days=50),
              discharge_date=ADMISSION - timedelta(days=45))
    r = villager.text(REVIEWER, f"/通过 {number}")
    assert "情况有变化" in r.reply and "2,000.00 元" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.in_review and claim.amount_fen == 800000
    r = villager.text(REVIEWER, full(number))
    assert "补助 2,000.00 元" in r.reply
    assert "已通过" in villager.text(REVIEWER, f"/通过 {number}").reply


def test_not_enrolled_member(villager, db, app_ctx):
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("赵四")], village="示范镇/东村",
                            openid="o_unpaid", enrolment="pending")
        number = make_claim(s, hh).number
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    r = villager.text(REVIEWER, full(number))
    assert "未参加或未缴费" in r.reply
    assert claim_row(db, number).reasons == ["not_enrolled"]


# ---------------------------------------------------------------------------------------------
# bad arguments change nothing

@pytest.mark.parametrize("args, words", [
    ("8000 12000.00 {a} {d} 居民医保", "病种代码“8000”不对"),
    ("FM19 一万 {a} {d} 居民医保", "个人自付金额“一万”不对"),
    ("FM19 12000.123 {a} {d} 居民医保", "个人自付金额“12000.123”不对"),
    ("FM19 12000.00 2026-13-01 {d} 居民医保", "入院日期“2026-13-01”不对"),
    ("FM19 12000.00 {a} 昨天 居民医保", "出院日期“昨天”不对"),
    ("FM19 12000.00 {d} {a} 居民医保", "早于入院日期"),
    ("FM19 12000.00 {a} {future} 居民医保", "还没有到"),
    ("FM19 12000.00 {a} {d} 新农合", "医保类型“新农合”不对"),
    ("FM19 12000.00 {a}", "参数不全"),
])
def test_bad_record_arguments_get_the_usage_and_change_nothing(villager, db, home, args, words):
    number = new_claim(db, home)
    text = "/核定 {n} ".format(n=number) + args.format(
        a=d(ADMISSION), d=d(DISCHARGE), future=d(TODAY + timedelta(days=3)))
    r = villager.text(REVIEWER, text)
    assert words in r.reply, r.reply
    assert "没有做任何改动" in r.reply and "/核定 申请号 DRG 个人自付" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.submitted and claim.amount_fen is None
    assert claim.drg_code is None and claim.trace == []
    assert claim_audits(db, number) == []
    assert audits(db, REVIEWER, "admin.refused")[-1].entity_id == "核定"


def test_unknown_claim_and_missing_arguments(villager, db, home):
    r = villager.text(REVIEWER, full("C99999999"))
    assert "没有申请“C99999999”" in r.reply and "/核定 申请号" in r.reply
    r = villager.text(REVIEWER, "/查看 12345")
    assert "没有申请“12345”" in r.reply
    r = villager.text(REVIEWER, "/通过")
    assert "格式不对" in r.reply and "/通过 申请号" in r.reply
    for cmd in ("/通过 C99999999", "/驳回 C99999999 fraud", "/补件 C99999999 补拍"):
        assert "没有申请“C99999999”" in villager.text(REVIEWER, cmd).reply


def test_unknown_drg_well_formed_is_the_rule_s_rejection(villager, db, home):
    number = new_claim(db, home)
    r = villager.text(REVIEWER, full(number, drg="ZZ99"))
    assert "病种不在定额表" in r.reply and "病种目录中没有这个代码" in r.reply
    assert claim_row(db, number).reasons == ["unknown_drg"]


# ---------------------------------------------------------------------------------------------
# the short form

def test_short_form_uses_a_good_ocr_read_out(villager, db, home):
    number = new_claim(db, home, ocr=ocr())
    r = villager.text(REVIEWER, f"/核定 {number} fm19")
    assert "按照片识别结果" in r.reply and "补助 8,000.00 元" in r.reply
    assert "职工医保" in r.reply
    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.in_review and claim.amount_fen == 800000
    assert (claim.out_of_pocket_fen, claim.admission_date, claim.discharge_date) == (
        1200000, ADMISSION, DISCHARGE)
    assert claim.insurance.value == "employee" and claim.hospital == "县人民医院"
    assert audits(db, REVIEWER, "claim.in_review")[-1].after["source"] == "ocr"


def test_short_form_falls_back_to_the_registered_insurance(villager, db, home):
    number = new_claim(db, home, ocr=ocr(insurance=None))
    r = villager.text(REVIEWER, f"/核定 {number} FM19")
    assert "居民医保（按登记）" in r.reply
    assert claim_row(db, number).insurance.value == "resident"


def test_short_form_says_what_is_missing_and_changes_nothing(villager, db, home):
    weak = ocr(out_of_pocket_fen={"value": 1200000, "confidence": 0.55})
    number = new_claim(db, home, ocr=weak)
    r = villager.text(REVIEWER, f"/核定 {number} FM19")
    assert "没有可靠地识别出：个人自付金额" in r.reply and "完整格式" in r.reply
    assert "入院日期" not in r.reply.split("完整格式")[0]
    bare = new_claim(db, home)
    r = villager.text(REVIEWER, f"/核定 {bare} FM19")
    assert "个人自付金额、入院日期、出院日期" in r.reply
    # total ≠ fund + out-of-pocket on the sheet: the amount is not trusted
    inconsistent = new_claim(db, home, ocr=ocr(consistent=False))
    r = villager.text(REVIEWER, f"/核定 {inconsistent} FM19")
    assert "没有可靠地识别出：个人自付金额" in r.reply
    for n in (number, bare, inconsistent):
        claim = claim_row(db, n)
        assert claim.status is ClaimStatus.submitted and claim.amount_fen is None
    view = villager.text(REVIEWER, f"/查看 {number}").reply
    assert "识别结果" in view and "55%，不可靠" in view


# ---------------------------------------------------------------------------------------------
# scope

def test_scope_refusals_are_audited_and_change_nothing(villager, db, home, app_ctx):
    number = new_claim(db, home)  # 示范镇/东村
    bind(villager, db, "o_va_west", "village_admin", village="示范镇/西村")
    bind(villager, db, "o_va_east", "village_admin", village="示范镇/东村")
    with db.session() as s:
        from core.catalog import SAMPLE_CATALOG, import_catalog

        import_catalog(s, SAMPLE_CATALOG)
        store_scheme(s, load_scheme(SCHEMES_DIR / "tangqiao-2020.yaml"))
    bind(villager, db, "o_other_pool", "pool_admin", pool="tangqiao")

    r = villager.text("o_va_west", f"/查看 {number}")
    assert "不在你管理的范围内" in r.reply
    assert number not in villager.text("o_va_west", "/待审").reply
    r = villager.text("o_other_pool", full(number))
    assert "不在你管理的范围内" in r.reply
    r = villager.text("o_other_pool", f"/驳回 {number} fraud")
    assert "不在你管理的范围内" in r.reply
    # a village administrator looks at its own villages' claims but does not decide
    assert number in villager.text("o_va_east", "/待审").reply
    assert "王*山" in villager.text("o_va_east", f"/查看 {number}").reply
    r = villager.text("o_va_east", f"/通过 {number}")
    assert "不能使用" in r.reply
    r = villager.text("o_nobody", full(number))
    assert "还没有绑定管理员" in r.reply

    claim = claim_row(db, number)
    assert claim.status is ClaimStatus.submitted and claim.amount_fen is None
    assert claim_audits(db, number) == []
    assert [a.after["why"] for a in audits(db, "o_va_west", "admin.refused")] == [
        "review_out_of_scope"]
    assert [a.after["why"] for a in audits(db, "o_other_pool", "admin.refused")] == [
        "review_out_of_scope", "review_out_of_scope"]
    assert [a.after["why"] for a in audits(db, "o_va_east", "admin.refused")] == ["role"]
    assert [a.after["why"] for a in audits(db, "o_nobody", "admin.refused")] == ["not_admin"]


def test_queue_is_oldest_first_within_scope_with_due_dates(villager, db, home, app_ctx):
    first = new_claim(db, home, due_date=TODAY - timedelta(days=2))
    second = new_claim(db, home, due_date=TODAY + timedelta(days=3))
    with db.session() as s:
        west = make_household(s, app_ctx.vault, [M("钱七")], village="示范镇/西村")
        west_claim = make_claim(s, west).number
        done = make_claim(s, west, status="approved", amount_fen=100000).number
    bind(villager, db, "o_va_east", "village_admin", village="示范镇/东村")
    queue = villager.text(REVIEWER, "/待审").reply
    assert queue.index(first) < queue.index(second) < queue.index(west_claim)
    assert done not in queue and "已逾期" in queue and "待审核的申请 3 件" in queue
    east = villager.text("o_va_east", "/待审").reply
    assert first in east and west_claim not in east and "待审核的申请 2 件" in east


# ---------------------------------------------------------------------------------------------
# photos as links

def test_photo_links_serve_the_file_to_admins_in_scope_only(villager, db, home, cfg, bot,
                                                            emulator):
    from core.media import path_for
    from core.review import document_url

    cfg.values["PUBLIC_URL"] = bot.url  # WeChat's authorization comes back here
    number = new_claim(db, home)
    view = villager.text(REVIEWER, f"/查看 {number}").reply
    url = next(line.split("：", 1)[1] for line in view.splitlines() if line.startswith("出院记录："))
    with db.session() as s:
        claim = s.scalar(select(Claim).where(Claim.number == number))
        doc = claim.documents[0]
        path = path_for(cfg.data_dir, doc.sha256, doc.content_type)
        doc_id = doc.id
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff fake jpeg")
    r = open_in_wechat(emulator, REVIEWER, url)
    assert r.status_code == 200 and r.content == b"\xff\xd8\xff fake jpeg"
    assert r.headers["Content-Type"] == "image/jpeg" and "no-store" in r.headers["Cache-Control"]
    assert audits(db, REVIEWER, "review.document")

    assert open_in_wechat(emulator, REVIEWER, url[:-3] + "xyz").status_code == 404
    bind(villager, db, "o_va_west", "village_admin", village="示范镇/西村")
    other = document_url(cfg, doc_id, "o_va_west")  # out of that administrator's scope
    assert open_in_wechat(emulator, "o_va_west", other).status_code == 404
    stranger = document_url(cfg, doc_id, "o_nobody")
    assert open_in_wechat(emulator, "o_nobody", stranger).status_code == 404


def test_photo_not_stored_yet_is_fetched_from_wechat(villager, db, home, cfg, bot, emulator,
                                                      tmp_path):
    from core.review import document_url

    photo = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (8, 8), "white").save(photo)
    with open(photo, "rb") as fh:
        media = requests.post(f"{emulator}/_emulator/media", files={"media": ("p.png", fh)},
                              timeout=10).json()
    number = new_claim(db, home, documents=("settlement_sheet",))
    with db.session() as s:
        doc = s.scalar(select(Claim).where(Claim.number == number)).documents[0]
        doc.sha256, doc.content_type, doc.media_id = None, None, media["media_id"]
        doc_id = doc.id
    cfg.values["PUBLIC_URL"] = bot.url
    r = open_in_wechat(emulator, REVIEWER, document_url(cfg, doc_id, REVIEWER))
    assert r.status_code == 200 and r.content == photo.read_bytes()
    view = villager.text(REVIEWER, f"/查看 {number}").reply
    assert "还在接收" in view


# ---------------------------------------------------------------------------------------------
# flags, DRG look-up, reminders

def test_view_shows_duplicate_flags_and_the_trace(villager, db, home):
    number = new_claim(db, home, stated={"out_of_pocket_fen": 1211650,
                                         "discharge_date": d(DISCHARGE)}, flags={
        "possible_duplicate": ["C12345678"],
        "duplicate_matches": [{"claim": "C12345678", "document": 1, "match": "sha256",
                               "own_document": 2}]})
    villager.text(REVIEWER, full(number))
    r = villager.text(REVIEWER, f"/查看 {number}")
    assert "可能重复：C12345678（同一张照片）" in r.reply
    assert f"农户填写：个人自付 12,116.50 元 出院 {cn(DISCHARGE)}" in r.reply
    assert "核定补助 8,000.00 元" in r.reply and "核定过程" in r.reply


def test_drg_lookup(villager, db, home):
    r = villager.text(REVIEWER, "/病种 冠状动脉")
    assert "FC19 冠状动脉手术：20,000.00 元" in r.reply
    assert "没有找到" in villager.text(REVIEWER, "/病种 没有这种病").reply


def test_overdue_reminders_go_to_the_pool_s_reviewers_once_a_day(villager, db, home, app_ctx,
                                                                  monkeypatch):
    import bot.jobs.scheduler
    from bot.jobs.review import remind_overdue_reviews

    late = new_claim(db, home, due_date=TODAY - timedelta(days=3))
    in_time = new_claim(db, home, due_date=TODAY + timedelta(days=3))
    bind(villager, db, "o_pool_admin", "pool_admin", pool="demo")
    bind(villager, db, "o_va_east", "village_admin", village="示范镇/东村")
    monkeypatch.setattr(bot.jobs.scheduler, "_current", app_ctx)
    since = villager.last_call_id()
    assert remind_overdue_reviews() == 2
    for openid in (REVIEWER, "o_pool_admin"):
        told = pushes_after(villager, openid, since)
        assert len(told) == 1 and late in told[0] and in_time not in told[0]
        assert "已过审核期限" in told[0] and "/待审" in told[0]
    assert pushes_after(villager, "o_va_east", since, 1) == []
    assert remind_overdue_reviews() == 0  # once a day
    with db.session() as s:
        n = s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.recipient == REVIEWER))
    assert n == 1


# ---------------------------------------------------------------------------------------------
# with the real photo dialogue and OCR

def test_a_claim_sent_by_photos_is_reviewed_with_the_short_form(villager, db, home, cfg, bot,
                                                                tmp_path, emulator):
    """The villager sends the three documents (drawn samples, read by OCR), submits; the
    reviewer opens a photo link (the stored file) and records with /核定 <claim> <DRG>."""
    import hashlib
    import re

    cfg.values["PUBLIC_URL"] = bot.url
    import time

    from bot.devtools import claim_samples as samples

    stay = samples.Stay(admission=ADMISSION, discharge=DISCHARGE)
    pages = {"出院记录": samples.discharge_record(stay), "费用清单": samples.itemized_bill(stay),
             "结算单": samples.settlement_sheet(stay)}
    assert "哪位家人" in villager.text(VILLAGER, "申请补助").reply
    assert "王*山" in villager.text(VILLAGER, "1").reply
    for i, (label, page) in enumerate(pages.items()):
        path = samples.save(samples.photo(page, i), tmp_path / f"{i}.jpg")
        assert "请发" in villager.text(VILLAGER, label).reply
        villager.image(VILLAGER, path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with db.session() as s:
                docs = s.scalars(select(Claim).order_by(Claim.id.desc())).first().documents
                if len(docs) == i + 1 and all(doc.sha256 for doc in docs):
                    break
            time.sleep(0.2)
    number = re.search(r"C\d{8,}", villager.text(VILLAGER, "提交").reply).group(0)

    view = villager.text(REVIEWER, f"/查看 {number}").reply
    assert "识别结果：" in view and "个人自付 18,116.50 元" in view
    url = next(line.split("：", 1)[1] for line in view.splitlines() if line.startswith("结算单："))
    photo = open_in_wechat(emulator, REVIEWER, url.replace(cfg.PUBLIC_URL.rstrip("/"), bot.url))
    assert photo.status_code == 200 and photo.headers["Content-Type"] == "image/jpeg"
    with db.session() as s:
        sheet = next(doc for doc in s.scalar(select(Claim).where(Claim.number == number)).documents
                     if doc.kind.value == "settlement_sheet")
        assert hashlib.sha256(photo.content).hexdigest() == sheet.sha256

    r = villager.text(REVIEWER, f"/核定 {number} FM19")
    assert "按照片识别结果" in r.reply and "个人自付 18,116.50 元" in r.reply
    assert "补助 8,000.00 元" in r.reply
    claim = claim_row(db, number)
    assert (claim.admission_date, claim.discharge_date) == (ADMISSION, DISCHARGE)
    assert claim.hospital == stay.hospital and claim.insurance.value == "resident"
    assert "已通过" in villager.text(REVIEWER, f"/通过 {number}").reply


def test_two_approvals_at_once_cannot_both_use_the_last_room_under_the_cap(db, home):
    """Two reviewers approve two claims of the same person at the same moment: the second sees
    the first (row lock on the person on PostgreSQL; one writer on SQLite) and is refused."""
    import threading

    from core.review import ReviewError, approve, find_claim, record

    new_claim(db, home, status="approved", amount_fen=9_000_000,
              admission_date=ADMISSION - timedelta(days=60),
              discharge_date=ADMISSION - timedelta(days=55))
    numbers = [new_claim(db, home), new_claim(db, home)]
    stays = [(ADMISSION, DISCHARGE), (DISCHARGE + timedelta(days=2), DISCHARGE + timedelta(days=5))]
    from core.review import Facts
    for number, (a, b) in zip(numbers, stays):
        with db.session() as s:
            decision = record(s, find_claim(s, number), Facts("FM19", 1_200_000, a, b, "resident"),
                              REVIEWER, today=TODAY)
            assert decision.amount_fen == 800000
    barrier = threading.Barrier(2)
    results: dict[str, str] = {}

    def go(number: str) -> None:
        barrier.wait()
        try:
            with db.session() as s:
                approve(s, find_claim(s, number, lock=True), REVIEWER, today=TODAY)
            results[number] = "approved"
        except ReviewError as e:
            results[number] = e.code

    threads = [threading.Thread(target=go, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results.values()) == ["approved", "decision_changed"]
    with db.session() as s:
        total = s.scalar(select(func.sum(Claim.amount_fen)).where(
            Claim.status == ClaimStatus.approved))
    assert total <= 10_000_000
