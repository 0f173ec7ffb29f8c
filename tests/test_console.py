"""The administrators' web console over loopback HTTP with the real app: sign-in from `/后台`,
sessions and their end, CSRF, scope (404), the read-only auditor, and every page."""
from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from core.models import (AuditLog, Claim, ClaimStatus, ConsoleLink, ConsoleSession, utcnow)
from tests.console_support import (ADMISSION, DISCHARGE, TODAY, bind, claim_of,
                                   claim_with_photos, csrf_of, good_ocr, home, login_link,
                                   sign_in)

REVIEWER = "o_console_reviewer"
VILLAGER = "o_console_villager"
AUDITOR = "o_console_auditor"
VILLAGE_ADMIN = "o_console_village"
SUPER = "o_console_super"


@pytest.fixture
def family(app_ctx, db, villager):
    hh = home(db, app_ctx.vault, VILLAGER)
    villager.text(VILLAGER, "0")  # within the 48-hour window: pushes reach the household
    return hh


def audits(db, actor: str, action: str) -> list[AuditLog]:
    with db.session() as s:
        rows = list(s.scalars(select(AuditLog).where(AuditLog.actor == actor,
                                                     AuditLog.action == action)))
        for r in rows:
            s.expunge(r)
        return rows


# -- sign-in -----------------------------------------------------------------------------------

def test_sign_in_from_chat_sets_a_safe_cookie_and_the_link_works_once(bot, villager, db):
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    reply = villager.text(REVIEWER, "/后台").reply
    assert "/admin/login/" in reply and "10 分钟" in reply
    path = re.search(r"/admin/login/\S+", reply).group(0)
    web = requests.Session()
    r = web.get(bot.url + path, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"].endswith("/admin/claims")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=28800" in cookie
    assert "Path=/admin" in cookie and "Secure" not in cookie  # PUBLIC_URL is http here
    page = web.get(bot.url + "/admin/claims", timeout=10)
    assert page.status_code == 200 and "补助申请" in page.text

    again = requests.get(bot.url + path, timeout=10)
    assert again.status_code == 410 and "已经用过" in again.text and "/后台" in again.text
    forged = requests.get(bot.url + "/admin/login/" + "x" * 43, timeout=10)
    assert forged.status_code == 404 and "链接不对" in forged.text and "/后台" in forged.text
    assert [a.after["why"] for a in audits(db, REVIEWER, "console.login_refused")] == ["used_link"]


def test_an_expired_link_says_so_and_how_to_get_a_new_one(bot, villager, db):
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    path = login_link(villager, REVIEWER)
    with db.session() as s:
        for link in s.scalars(select(ConsoleLink)):
            link.expires_at = utcnow() - timedelta(seconds=1)
    r = requests.get(bot.url + path, timeout=10)
    assert r.status_code == 410 and "已过期" in r.text and "10 分钟" in r.text
    assert "/后台" in r.text and "huzhu_console" not in r.headers.get("Set-Cookie", "")


def test_secure_cookie_when_public_url_is_https(db, db_url, tmp_path, emulator):
    from bot.devtools.chat import Villager
    from bot.server import bootstrap
    from bot.web.app import AppContext
    from tests.conftest import make_cfg, start_bot

    cfg = make_cfg(tmp_path, db_url, emulator, PUBLIC_URL="https://huzhu.example.cn")
    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    running = start_bot(x, worker=False)
    try:
        chat = Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)
        bind(chat, db, REVIEWER, "reviewer", pool="demo")
        reply = chat.text(REVIEWER, "/后台").reply
        assert "https://huzhu.example.cn/admin/login/" in reply
        path = re.search(r"/admin/login/\S+", reply).group(0)
        r = requests.get(running.url + path, allow_redirects=False, timeout=10)
        assert r.status_code == 303 and "Secure" in r.headers["Set-Cookie"]
    finally:
        running.stop()


def test_without_a_session_pages_say_how_to_sign_in(bot):
    r = requests.get(bot.url + "/admin/claims", timeout=10)
    assert r.status_code == 401 and "/后台" in r.text
    r = requests.post(bot.url + "/admin/claims/C00000001/approve", data={"csrf": "x"},
                      timeout=10)
    assert r.status_code == 401


def test_logout_from_chat_and_a_revoked_grant_end_every_session(bot, villager, db):
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    bind(villager, db, SUPER, "super")
    phone, desk = sign_in(bot, villager, REVIEWER), sign_in(bot, villager, REVIEWER)
    assert "结束 2 处登录" in villager.text(REVIEWER, "/后台 退出").reply
    for web in (phone, desk):
        assert web.get(bot.url + "/admin/claims", timeout=10).status_code == 401

    web = sign_in(bot, villager, REVIEWER)
    assert "已撤销" in villager.text(SUPER, f"/管理员 撤销 {REVIEWER}").reply
    assert web.get(bot.url + "/admin/claims", timeout=10).status_code == 401
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ConsoleSession).where(
            ConsoleSession.openid == REVIEWER, ConsoleSession.ended_at.is_(None))) == 0
    assert "/admin/login/" not in villager.text(REVIEWER, "/后台").reply


def test_the_page_logout_ends_this_session(bot, villager, db):
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    web = sign_in(bot, villager, REVIEWER)
    page = web.get(bot.url + "/admin/claims", timeout=10).text
    r = web.post(bot.url + "/admin/logout", data={"csrf": csrf_of(page)}, timeout=10)
    assert r.status_code == 200 and "已退出" in r.text
    assert web.get(bot.url + "/admin/claims", timeout=10).status_code == 401


# -- claims ------------------------------------------------------------------------------------

def test_queue_and_claim_page_with_photos_ocr_and_trace(bot, villager, db, cfg, family):
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    number = claim_with_photos(db, cfg, family["id"], ocr=good_ocr(),
                               due_date=TODAY - timedelta(days=1),
                               flags={"possible_duplicate": ["C99999999"]})
    web = sign_in(bot, villager, REVIEWER)
    queue = web.get(bot.url + "/admin/claims", timeout=10)
    assert number in queue.text and "王*山" in queue.text and "已超期" in queue.text
    assert "疑似重复 C99999999" in queue.text
    assert "王大山" not in queue.text
    assert queue.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "form-action 'self'" in queue.headers["Content-Security-Policy"]

    page = web.get(f"{bot.url}/admin/claims/{number}", timeout=10)
    html = page.text
    assert page.status_code == 200
    for word in ("出院记录", "费用清单", "结算单", "照片识别结果", "个人自付", "12,000.00 元",
                 "核定", "驳回", "补件", family["masked_id"]):
        assert word in html, word
    assert "王大山" not in html and family["full_id"] not in html
    # the OCR values fill the 核定 form
    assert f'value="{ADMISSION.isoformat()}"' in html and 'value="12000.00"' in html
    photos = re.findall(rf"/admin/claims/{number}/photos/\d+", html)
    assert len(set(photos)) == 3
    img = web.get(bot.url + photos[0], timeout=10)
    assert img.status_code == 200 and img.headers["Content-Type"] == "image/jpeg"
    assert img.content[:2] == b"\xff\xd8"
    # the DRG search
    found = web.get(f"{bot.url}/admin/claims/{number}", params={"drg": "FM19"}, timeout=10)
    assert "FM19" in found.text and "用这个" in found.text
    assert audits(db, REVIEWER, "review.view") and audits(db, REVIEWER, "review.document")


def test_record_and_approve_through_the_chat_commands_code(bot, villager, db, cfg, family):
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    number = claim_with_photos(db, cfg, family["id"], ocr=good_ocr())
    web = sign_in(bot, villager, REVIEWER)
    token = csrf_of(web.get(f"{bot.url}/admin/claims/{number}", timeout=10).text)
    since = villager.last_call_id()
    r = web.post(f"{bot.url}/admin/claims/{number}/record", timeout=10, data={
        "csrf": token, "drg": "FM19", "amount": "12000.00", "admission": ADMISSION.isoformat(),
        "discharge": DISCHARGE.isoformat(), "insurance": "resident", "hospital": "县人民医院"})
    assert r.status_code == 200 and "补助 8,000.00 元" in r.text
    claim = claim_of(db, number)
    assert claim.status is ClaimStatus.in_review and claim.amount_fen == 800000
    assert "病种 FM19 定额 8,000.00 元" in r.text  # the trace

    assert f"/admin/claims/{number}/approve" in r.text  # now the approval's form is there
    r = web.post(f"{bot.url}/admin/claims/{number}/approve", data={"csrf": token}, timeout=10)
    assert r.status_code == 200 and "已通过" in r.text
    assert claim_of(db, number).status is ClaimStatus.approved
    assert 'id="record"' not in r.text and "/approve" not in r.text
    told = [c["json"]["text"]["content"] for c in villager.wait_pushes(VILLAGER, since, 5)
            if (c.get("json") or {}).get("msgtype") == "text"]
    assert any("审核通过" in t and "8,000.00 元" in t for t in told)
    with db.session() as s:
        actions = list(s.scalars(select(AuditLog.action).where(
            AuditLog.entity_id == number, AuditLog.action.like("claim.%"))
            .order_by(AuditLog.id)))
    assert actions == ["claim.in_review", "claim.approved"]


def test_reject_and_documents_forms_and_a_refusal_is_shown(bot, villager, db, cfg, family):
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    first = claim_with_photos(db, cfg, family["id"])
    second = claim_with_photos(db, cfg, family["id"])
    web = sign_in(bot, villager, REVIEWER)
    token = csrf_of(web.get(f"{bot.url}/admin/claims/{first}", timeout=10).text)
    # approving before any 核定: refused, nothing changed, audited
    r = web.post(f"{bot.url}/admin/claims/{first}/approve", data={"csrf": token}, timeout=10)
    assert r.status_code == 200 and claim_of(db, first).status is ClaimStatus.submitted
    assert "核定" in r.text
    assert audits(db, REVIEWER, "admin.refused")
    r = web.post(f"{bot.url}/admin/claims/{first}/documents",
                 data={"csrf": token, "text": "结算单 看不清 请重拍"}, timeout=10)
    assert claim_of(db, first).status is ClaimStatus.need_documents
    r = web.post(f"{bot.url}/admin/claims/{second}/reject",
                 data={"csrf": token, "reason": "fraud", "text": "票据不实"}, timeout=10)
    c = claim_of(db, second)
    assert c.status is ClaimStatus.rejected and c.reasons == ["fraud"]


def test_an_appeal_is_decided_on_the_claim_page(bot, villager, db, cfg, family):
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    number = claim_with_photos(db, cfg, family["id"])
    web = sign_in(bot, villager, REVIEWER)
    token = csrf_of(web.get(f"{bot.url}/admin/claims/{number}", timeout=10).text)
    web.post(f"{bot.url}/admin/claims/{number}/reject",
             data={"csrf": token, "reason": "incomplete_documents", "text": "缺费用清单"},
             timeout=10)
    assert claim_of(db, number).status is ClaimStatus.rejected
    assert "处理复核" not in web.get(f"{bot.url}/admin/claims/{number}", timeout=10).text
    villager.text(VILLAGER, f"复核 {number} 费用清单已经补拍")
    assert claim_of(db, number).status is ClaimStatus.appealed
    page = web.get(f"{bot.url}/admin/claims/{number}", timeout=10).text
    assert "处理复核" in page and "费用清单已经补拍" in page
    assert number in web.get(f"{bot.url}/admin/claims", timeout=10).text  # in the queue
    r = web.post(f"{bot.url}/admin/claims/{number}/appeal",
                 data={"csrf": csrf_of(page), "outcome": "维持", "text": "仍缺费用清单原件"},
                 timeout=10)
    assert r.status_code == 200
    c = claim_of(db, number)
    assert c.status is ClaimStatus.rejected and c.reasons == ["incomplete_documents"]
    assert [a for a in audits(db, REVIEWER, "claim.rejected") if a.after.get("action") == "appeal.kept"]


def test_a_post_without_or_with_a_wrong_csrf_token_is_400_and_changes_nothing(
        bot, villager, db, cfg, family):
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    number = claim_with_photos(db, cfg, family["id"])
    web = sign_in(bot, villager, REVIEWER)
    for data in ({}, {"csrf": "wrong"}):
        r = web.post(f"{bot.url}/admin/claims/{number}/documents",
                     data={**data, "text": "请补拍"}, timeout=10)
        assert r.status_code == 400 and "没有做任何改动" in r.text
    assert claim_of(db, number).status is ClaimStatus.submitted
    assert len([a for a in audits(db, REVIEWER, "admin.refused")
                if a.after["why"] == "csrf"]) == 2


def test_outside_the_scope_is_404(bot, villager, db, cfg, app_ctx, villager_other=None):
    west = home(db, app_ctx.vault, "o_console_west", village="示范镇/西村")
    east = home(db, app_ctx.vault, VILLAGER)
    west_claim = claim_with_photos(db, cfg, west["id"])
    east_claim = claim_with_photos(db, cfg, east["id"])
    bind(villager, db, VILLAGE_ADMIN, "village_admin", village="示范镇/东村")
    web = sign_in(bot, villager, VILLAGE_ADMIN)
    queue = web.get(bot.url + "/admin/claims", timeout=10).text
    assert east_claim in queue and west_claim not in queue
    assert web.get(f"{bot.url}/admin/claims/{west_claim}", timeout=10).status_code == 404
    missing = web.get(f"{bot.url}/admin/claims/C12345678", timeout=10)
    assert missing.status_code == 404 and "没有这个页面，或者它不在你的管理范围内。" in missing.text
    assert web.get(f"{bot.url}/admin/households/{west['number']}", timeout=10).status_code == 404
    own = web.get(f"{bot.url}/admin/claims/{east_claim}", timeout=10)
    assert own.status_code == 200 and "/approve" not in own.text  # looks, does not decide
    token = csrf_of(own.text)
    r = web.post(f"{bot.url}/admin/claims/{west_claim}/approve", data={"csrf": token},
                 timeout=10)
    assert r.status_code == 404
    # a village administrator may not decide (the chat's roles): refused, audited
    web.post(f"{bot.url}/admin/claims/{east_claim}/reject",
             data={"csrf": token, "reason": "fraud"}, timeout=10)
    assert claim_of(db, east_claim).status is ClaimStatus.submitted
    assert web.get(bot.url + "/admin/administrators", timeout=10).status_code == 404
    assert web.get(bot.url + "/admin/audit", timeout=10).status_code == 404


def test_the_auditor_sees_everything_in_scope_and_changes_nothing(bot, villager, db, cfg,
                                                                   family):
    bind(villager, db, AUDITOR, "auditor", pool="demo")
    number = claim_with_photos(db, cfg, family["id"])
    web = sign_in(bot, villager, AUDITOR)
    for path in ("/admin/claims", f"/admin/claims/{number}", "/admin/households",
                 f"/admin/households/{family['number']}", "/admin/payments", "/admin/payouts",
                 "/admin/fund", "/admin/disclosure"):
        r = web.get(bot.url + path, timeout=10)
        assert r.status_code == 200, path
    page = web.get(f"{bot.url}/admin/claims/{number}", timeout=10).text
    assert "/approve" not in page and "只读" in page
    x = web.get(bot.url + "/admin/fund/quarterly.xlsx", params={"quarter": "2026Q1"},
                timeout=10)
    assert x.status_code == 200 and x.content[:2] == b"PK"
    r = web.post(f"{bot.url}/admin/claims/{number}/approve", data={"csrf": csrf_of(page)},
                 timeout=10)
    assert r.status_code == 403 and "你的身份是监督员（只读）" in r.text
    assert claim_of(db, number).status is ClaimStatus.submitted
    assert [a.after["why"] for a in audits(db, AUDITOR, "admin.refused")] == ["read_only"]
    # in chat the auditor decides nothing either
    villager.text(AUDITOR, f"/通过 {number}")
    assert claim_of(db, number).status is ClaimStatus.submitted


# -- payouts -----------------------------------------------------------------------------------

POOL_ADMIN = "o_console_pool_admin"


def test_payouts_confirm_failure_and_the_bank_file(bot, villager, db, app_ctx, tmp_path):
    from openpyxl import load_workbook

    from core.payouts import month_of
    from tests.test_payouts import approved_claim, fund, household_with_card, run

    bind(villager, db, POOL_ADMIN, "pool_admin", pool="demo")
    fund(db, 5_000_000)
    a = household_with_card(db, app_ctx.vault, openid=VILLAGER)
    b = household_with_card(db, app_ctx.vault)
    first = approved_claim(db, a["id"], 300_000)
    second = approved_claim(db, b["id"], 200_000)
    web = sign_in(bot, villager, POOL_ADMIN)
    preview = web.get(bot.url + "/admin/payouts", timeout=10)
    assert preview.status_code == 200 and "<strong>2</strong> 笔" in preview.text
    assert "<strong>5,000.00 元</strong>" in preview.text
    batch = run(app_ctx).batch
    listing = web.get(bot.url + "/admin/payouts", timeout=10).text
    assert batch in listing and month_of(TODAY) in listing
    page = web.get(f"{bot.url}/admin/payouts/{batch}", timeout=10).text
    assert first in page and a["card"] not in page and a["card"][-4:] in page
    assert "王*山" in page and "王大山" not in page
    token = csrf_of(page)

    # the file asks for the batch number again
    wrong = web.post(f"{bot.url}/admin/payouts/{batch}/file",
                     data={"csrf": token, "number": "B-WRONG"}, timeout=10)
    assert wrong.status_code == 400 and "再输入一次批次号" in wrong.text
    got = web.post(f"{bot.url}/admin/payouts/{batch}/file",
                   data={"csrf": token, "number": batch.lower()}, timeout=10)
    assert got.status_code == 200 and got.content[:2] == b"PK"
    assert f'filename={batch}.xlsx' in got.headers["Content-Disposition"]
    path = tmp_path / "bank.xlsx"
    path.write_bytes(got.content)
    cells = [c for row in load_workbook(path).active.iter_rows(values_only=True) for c in row]
    assert a["card"] in cells and b["card"] in cells  # the bank needs the full numbers
    assert audits(db, POOL_ADMIN, "payout.file_download")

    r = web.post(f"{bot.url}/admin/payouts/{batch}/failed",
                 data={"csrf": token, "claim": second, "text": "户名不符"}, timeout=10)
    assert r.status_code == 200 and "户名不符" in r.text
    r = web.post(f"{bot.url}/admin/payouts/{batch}/confirm", data={"csrf": token}, timeout=10)
    assert r.status_code == 200 and "已确认" in r.text
    assert claim_of(db, first).status is ClaimStatus.paid
    assert claim_of(db, second).status is ClaimStatus.approved
    # the quarter's report counts the paid subsidy in its village
    quarter = f"{TODAY.year}Q{(TODAY.month - 1) // 3 + 1}"
    x = web.get(bot.url + "/admin/fund/quarterly.xlsx", params={"quarter": quarter}, timeout=10)
    path.write_bytes(x.content)
    rows = list(load_workbook(path)["分村"].iter_rows(values_only=True))
    east = next(r for r in rows if r[0] == "示范镇/东村")
    assert east[5] == 1 and str(east[6]) == "3000"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "claim.paid", AuditLog.actor == POOL_ADMIN)) == 1


def test_a_reviewer_has_no_payout_pages(bot, villager, db):
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    web = sign_in(bot, villager, REVIEWER)
    assert web.get(bot.url + "/admin/payouts", timeout=10).status_code == 404
    assert web.get(bot.url + "/admin/payouts/BDEMO202601", timeout=10).status_code == 404


# -- households, payments, fund, disclosure, audit, administrators -----------------------------

def test_households_search_by_number_and_masked_name(bot, villager, db, family):
    bind(villager, db, POOL_ADMIN, "pool_admin", pool="demo")
    web = sign_in(bot, villager, POOL_ADMIN)
    for q in (family["number"], "王*山", "王大山"):
        r = web.get(bot.url + "/admin/households", params={"q": q}, timeout=10)
        assert family["number"] in r.text and "王*山" in r.text, q
        assert "王大山" not in r.text.replace('value="王大山"', "")
    nobody = web.get(bot.url + "/admin/households", params={"q": "赵*"}, timeout=10)
    assert family["number"] not in nobody.text and "没有找到" in nobody.text
    page = web.get(f"{bot.url}/admin/households/{family['number']}", timeout=10)
    assert page.status_code == 200 and family["masked_id"] in page.text
    assert family["full_id"] not in page.text and "王大山" not in page.text
    assert "已缴费" in page.text and "138****0000" in page.text


def test_offline_payment_with_the_exact_amount_after_a_check(bot, villager, db, app_ctx):
    from core.payments import due
    from core.models import Household
    from tests.factories import M, make_household

    bind(villager, db, POOL_ADMIN, "pool_admin", pool="demo")
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("张三丰")], village="示范镇/东村",
                            enrolment="pending")
        number = hh.number
        due_fen = due(s, hh, TODAY)[1].amount_fen
    web = sign_in(bot, villager, POOL_ADMIN)
    token = csrf_of(web.get(bot.url + "/admin/payments", timeout=10).text)
    wrong = web.post(bot.url + "/admin/payments/offline", timeout=10, data={
        "csrf": token, "household": number, "amount": "1.00", "channel": "现金"})
    assert "确认收款" not in wrong.text and f"{due_fen // 100:,}" in wrong.text
    check = web.post(bot.url + "/admin/payments/offline", timeout=10, data={
        "csrf": token, "household": number, "amount": f"{due_fen / 100:.2f}", "channel": "现金"})
    assert "确认收款" in check.text
    with db.session() as s:
        assert s.scalar(select(Household).where(Household.number == number)) is not None
        from core.models import Payment
        assert s.scalar(select(func.count()).select_from(Payment)) == 0
    done = web.post(bot.url + "/admin/payments/offline", timeout=10, data={
        "csrf": token, "household": number, "amount": f"{due_fen / 100:.2f}", "channel": "现金",
        "confirm": "1"})
    assert done.status_code == 200
    with db.session() as s:
        from core.models import Payment
        paid = list(s.scalars(select(Payment)))
        assert len(paid) == 1 and paid[0].amount_fen == due_fen and paid[0].channel == "cash"
        assert paid[0].recorded_by == POOL_ADMIN


def test_payment_exceptions_are_listed_and_resolved(bot, villager, db):
    from core.models import PaymentException

    bind(villager, db, SUPER, "super")
    with db.session() as s:
        s.add(PaymentException(kind="unknown_order", out_trade_no="X1", transaction_id="T1",
                               detail={"total_fen": 12300}))
    web = sign_in(bot, villager, SUPER)
    page = web.get(bot.url + "/admin/payments", timeout=10).text
    assert "找不到对应的订单" in page and "123.00 元" in page
    token = csrf_of(page)
    empty = web.post(bot.url + "/admin/payments/exceptions/1/resolve",
                     data={"csrf": token, "note": ""}, timeout=10)
    assert empty.status_code == 400 and "请写明怎么处理的" in empty.text
    r = web.post(bot.url + "/admin/payments/exceptions/1/resolve",
                 data={"csrf": token, "note": "已退款"}, timeout=10)
    assert r.status_code == 200 and "没有未处理的收款异常" in r.text
    assert "异常 1 已标为已处理。" in r.text
    assert audits(db, SUPER, "payment.exception_resolved")


def test_fund_page_and_the_quarterly_workbook(bot, villager, db, tmp_path):
    from openpyxl import load_workbook

    from tests.test_payouts import fund

    bind(villager, db, POOL_ADMIN, "pool_admin", pool="demo")
    fund(db, 1_234_567)
    web = sign_in(bot, villager, POOL_ADMIN)
    page = web.get(bot.url + "/admin/fund", timeout=10)
    assert page.status_code == 200 and "12,345.67 元" in page.text and "<svg" in page.text
    assert "年度报告" in page.text and "季度报告" in page.text
    quarter = f"{TODAY.year}Q{(TODAY.month - 1) // 3 + 1}"
    x = web.get(bot.url + "/admin/fund/quarterly.xlsx", params={"quarter": quarter}, timeout=10)
    assert x.status_code == 200
    path = tmp_path / "q.xlsx"
    path.write_bytes(x.content)
    wb = load_workbook(path)
    cells = [c for row in wb["汇总"].iter_rows(values_only=True) for c in row]
    assert "收入合计（元）" in cells and any(str(c) == "12345.67" for c in cells)
    assert [c for c in next(wb["分村"].iter_rows(values_only=True))][0] == "村"
    bad = web.get(bot.url + "/admin/fund/quarterly.xlsx", params={"quarter": "春天"},
                  timeout=10)
    assert bad.status_code == 400 and "2026Q1" in bad.text and "季度写法不对" in bad.text


def test_disclosure_preview_audit_log_and_administrators(bot, villager, db):
    bind(villager, db, SUPER, "super")
    web = sign_in(bot, villager, SUPER)
    d = web.get(bot.url + "/admin/disclosure", timeout=10)
    assert d.status_code == 200 and "还没有发到群里" in d.text and "pre" in d.text
    bad = web.get(bot.url + "/admin/disclosure", params={"month": "三月"}, timeout=10)
    assert bad.status_code == 400 and "月份请写成 2026-03 这样。" in bad.text
    log = web.get(bot.url + "/admin/audit", params={"action": "console."}, timeout=10)
    assert log.status_code == 200 and "console.login" in log.text
    assert SUPER not in log.text  # openids masked

    admins = web.get(bot.url + "/admin/administrators", timeout=10).text
    assert "超级管理员" in admins
    token = csrf_of(admins)
    r = web.post(bot.url + "/admin/administrators/invite",
                 data={"csrf": token, "role": "auditor", "where": "pool:demo"}, timeout=10)
    code = re.search(r'<div class="code">(\w+)</div>', r.text).group(1)
    assert "绑定成功" in villager.text(AUDITOR, f"/绑定 {code}").reply
    auditor = sign_in(bot, villager, AUDITOR)
    bad = web.post(bot.url + "/admin/administrators/invite",
                   data={"csrf": token, "role": "village_admin", "where": ""}, timeout=10)
    assert bad.status_code == 400 and "要选一个村" in bad.text
    r = web.post(bot.url + "/admin/administrators/revoke",
                 data={"csrf": token, "openid": AUDITOR}, timeout=10)
    assert "已撤销" in r.text
    assert auditor.get(bot.url + "/admin/claims", timeout=10).status_code == 401
    log = web.get(bot.url + "/admin/audit", params={"action": "admin.revoke"}, timeout=10)
    assert "admin.revoke" in log.text and AUDITOR not in log.text  # openids masked


def test_the_auditor_in_chat_reads_statistics_and_gets_a_console_link(bot, villager, db):
    bind(villager, db, AUDITOR, "auditor")
    assert "/admin/login/" in villager.text(AUDITOR, "/后台").reply
    help_text = villager.text(AUDITOR, "/帮助").reply
    assert "/后台" in help_text and "/通过" not in help_text
    assert "示范" in villager.text(AUDITOR, "/统计").reply


def test_queue_filters_and_a_village_outside_the_scope(bot, villager, db, cfg, app_ctx):
    from core.models import Village

    east = home(db, app_ctx.vault, VILLAGER)
    west = home(db, app_ctx.vault, "o_console_west", village="示范镇/西村")
    waiting = claim_with_photos(db, cfg, east["id"])
    asked = claim_with_photos(db, cfg, east["id"], status="need_documents")
    west_claim = claim_with_photos(db, cfg, west["id"])
    with db.session() as s:
        ids = dict(s.execute(select(Village.full_name, Village.id)).all())
    bind(villager, db, VILLAGE_ADMIN, "village_admin", village="示范镇/东村")
    web = sign_in(bot, villager, VILLAGE_ADMIN)
    default = web.get(bot.url + "/admin/claims", timeout=10).text
    assert waiting in default and asked not in default and west_claim not in default
    by_status = web.get(bot.url + "/admin/claims", params={"status": "need_documents"},
                        timeout=10).text
    assert asked in by_status and waiting not in by_status
    own = web.get(bot.url + "/admin/claims", params={"village": ids["示范镇/东村"]}, timeout=10)
    assert own.status_code == 200 and waiting in own.text
    other = web.get(bot.url + "/admin/claims", params={"village": ids["示范镇/西村"]},
                    timeout=10)
    assert other.status_code == 404 and west_claim not in other.text
    odd = web.get(bot.url + "/admin/claims", params={"status": "nonsense", "offset": "x"},
                  timeout=10)
    assert odd.status_code == 200 and waiting in odd.text


def test_not_an_administrator_gets_no_link(bot, villager, db):
    reply = villager.text("o_console_nobody", "/后台").reply
    assert "/admin/login/" not in reply and "/绑定" in reply
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ConsoleLink)) == 0
