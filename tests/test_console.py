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
                 "核定", "通过", "驳回", "补件", "复核", family["masked_id"]):
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

    r = web.post(f"{bot.url}/admin/claims/{number}/approve", data={"csrf": token}, timeout=10)
    assert r.status_code == 200 and "已通过" in r.text
    assert claim_of(db, number).status is ClaimStatus.approved
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
    assert web.get(f"{bot.url}/admin/claims/C12345678", timeout=10).status_code == 404
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
    assert r.status_code == 403 and "只读" in r.text
    assert claim_of(db, number).status is ClaimStatus.submitted
    assert [a.after["why"] for a in audits(db, AUDITOR, "admin.refused")] == ["read_only"]
    # in chat the auditor decides nothing either
    villager.text(AUDITOR, f"/通过 {number}")
    assert claim_of(db, number).status is ClaimStatus.submitted
