"""Notices outside the 48-hour window: the category template of NOTIFY_TEMPLATES with its fields
fitted as WeChat requires, subscription notices, one SMS through Tencent Cloud SMS's SDK (to the
emulator), the household's claims page, `/待通知` and `huzhu outbox list`. Villagers and
administrators talk to the webhook; WeChat and the SMS provider are the emulator, which refuses
what WeChat and Tencent Cloud refuse."""
from __future__ import annotations

import logging
import time
from datetime import date, timedelta

import pytest
import requests
from sqlalchemy import select

from bot.devtools.emulator.sms import DEMO_SECRET_ID, DEMO_SECRET_KEY
from core.config import ROOT, ConfigError, load_config
from core.household_links import claims_url
from core.models import (Household, HouseholdLink, LinkRole, OutboxMessage, OutboxStatus,
                         WechatUser, utcnow)
from core.notices import NoticeTemplate, field_problem, fill, parse_templates
from core.outbox import as_utc
from tests.factories import M, local_today, make_household
from tests.test_claims_cli import run as cli
from tests.test_review import REVIEWER, bind, full, new_claim
from tests.test_review_links import open_in_wechat

TODAY = local_today()
VILLAGER = "o_vil_notice"
EXAMPLE = ROOT / "config" / "notify-templates.example.yaml"
SMS_EXAMPLE = ROOT / "config" / "sms-templates.example.yaml"
PHONE = "13800000000"  # tests/factories.py gives every household this phone


def cn(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def sms_config(emulator: str, **more) -> dict:
    return {"SMS_PROVIDER": "tencentcloud", "SMS_API_BASE": emulator,
            "SMS_SECRET_ID": DEMO_SECRET_ID, "SMS_SECRET_KEY": DEMO_SECRET_KEY,
            "SMS_APP_ID": "1400000001", "SMS_SIGN": "乡村互助", "SMS_TEMPLATES": str(SMS_EXAMPLE),
            **more}


@pytest.fixture
def notice_bot(request, tmp_path, db, db_url, emulator):
    """The bot with NOTIFY_TEMPLATES (the example file unless the test's `notice_config`
    marker gives other keys) and SMS to the emulator; links point at the running bot."""
    from bot.server import bootstrap
    from bot.web.app import AppContext
    from bot.devtools.chat import Villager
    from tests.conftest import make_cfg, start_bot

    marker = request.node.get_closest_marker("notice_config")
    overrides = {"NOTIFY_TEMPLATES": str(EXAMPLE), **sms_config(emulator)}
    overrides.update(marker.kwargs if marker else {})
    overrides = {k: v for k, v in overrides.items() if v is not None}
    cfg = make_cfg(tmp_path, db_url, emulator, **overrides)
    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    running = start_bot(x)
    cfg.values["PUBLIC_URL"] = running.url
    yield x, running, Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)
    running.stop()


def household(x, villager, db, *, openid: str | None = VILLAGER, wrote_hours_ago: float = 50):
    """王大山's household of 示范镇/东村 (phone on file), its head linked to `openid` (None: an
    imported household with no WeChat user), who last wrote `wrote_hours_ago` hours ago; and
    a reviewer of the demo pool."""
    with db.session() as s:
        hh = make_household(s, x.vault, [M("王大山")], village="示范镇/东村", openid=openid)
        info = {"household": hh.id, "number": hh.number, "head": hh.members[0].id,
                "full_id": hh.members[0].id_number_masked}
    if openid:
        villager.text(openid, "0")
        with db.session() as s:
            user = s.scalar(select(WechatUser).where(WechatUser.openid == openid))
            user.last_inbound_at = utcnow() - timedelta(hours=wrote_hours_ago)
            user.pushes_since_inbound = 0
    bind(villager, db, REVIEWER, "reviewer", pool="demo")
    return info


def approve(villager, number: str, **stay) -> None:
    assert "补助 8,000.00 元" in villager.text(REVIEWER, full(number, **stay)).reply
    assert "已通过" in villager.text(REVIEWER, f"/通过 {number}").reply


def notices(db, event: str = "claim_decided") -> list[OutboxMessage]:
    with db.session() as s:
        rows = list(s.scalars(select(OutboxMessage).where(OutboxMessage.event == event)
                              .order_by(OutboxMessage.id)))
        for r in rows:
            s.expunge(r)
        return rows


def wait_until(check, seconds: float = 25.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


def emulator_calls(emulator: str, **filters) -> list[dict]:
    return requests.get(f"{emulator}/_emulator/calls", params=filters, timeout=10).json()


def sms_sent(emulator: str, claim: str) -> list[dict]:
    return [m for m in requests.get(f"{emulator}/_emulator/sms", timeout=10).json()
            if claim in m["params"]]


def held(db, needle: str) -> OutboxMessage | None:
    """The notice whose last error has `needle`, once the worker has put it aside (held for
    hours: the villager's day, or their next message)."""
    soon = utcnow() + timedelta(hours=1)
    return next((r for r in notices(db) if needle in (r.last_error or "")
                 and as_utc(r.next_attempt_at) > soon), None)


def age(db, row_id: int, hours: float) -> None:
    """The notice was queued `hours` ago and is due now (as if the day had passed)."""
    with db.session() as s:
        row = s.get(OutboxMessage, row_id)
        row.created_at = utcnow() - timedelta(hours=hours)
        row.next_attempt_at = utcnow()


# ---------------------------------------------------------------------------------------------
# the template, fitted

def test_outside_the_window_the_decision_is_the_category_template(notice_bot, db, emulator):
    x, running, villager = notice_bot
    home = household(x, villager, db)
    number = new_claim(db, home)
    since = villager.last_call_id()
    approve(villager, number)
    calls = wait_until(lambda: [c for c in emulator_calls(emulator, touser=VILLAGER, since=since)
                                if c["path"] == "/cgi-bin/message/template/send"
                                and c["json"]["template_id"] == "huzhu-demo-claim-decided"])
    assert len(calls) == 1 and calls[0]["errcode"] == 0
    body = calls[0]["json"]
    data = {k: v["value"] for k, v in body["data"].items()}
    assert data["character_string1"] == number
    assert data["name2"] == "王*山" and data["phrase3"] == "已通过"
    assert data["amount4"] == "8000.00元" and data["time5"] == cn(TODAY)
    assert all("\n" not in v and field_problem(k, v) is None for k, v in data.items())
    assert body["url"].startswith(f"{running.url}/h/claims/")
    # nothing went by customer-service (the window is closed), and no SMS
    assert not [c for c in emulator_calls(emulator, touser=VILLAGER, since=since)
                if c["path"] == "/cgi-bin/message/custom/send"]
    assert sms_sent(emulator, number) == []
    row = wait_until(lambda: [r for r in notices(db) if r.status is OutboxStatus.sent])[0]
    assert row.channel == "template" and row.household_id == home["household"]
    # the operator sees the channel
    out = cli(x.cfg, "outbox", "list", "--json")
    assert out.returncode == 0, out.stderr
    import json
    listed = {r["id"]: r for r in json.loads(out.stdout)}
    assert listed[row.id]["channel"] == "template" and listed[row.id]["event"] == "claim_decided"
    assert listed[row.id]["household"] == home["number"]
    text = cli(x.cfg, "outbox", "list").stdout
    assert f"claim_decided {home['number']} via template" in text


def test_inside_the_window_the_full_text_by_customer_service(notice_bot, db, emulator):
    x, running, villager = notice_bot
    home = household(x, villager, db, wrote_hours_ago=1)
    number = new_claim(db, home)
    since = villager.last_call_id()
    approve(villager, number)
    texts = wait_until(lambda: [c["json"]["text"]["content"] for c in emulator_calls(
        emulator, touser=VILLAGER, since=since) if c["path"] == "/cgi-bin/message/custom/send"
        and "审核通过" in c["json"]["text"]["content"]])
    assert len(texts) == 1 and "8,000.00 元" in texts[0] and "\n" in texts[0]
    row = wait_until(lambda: [r for r in notices(db) if r.status is OutboxStatus.sent])[0]
    assert row.channel == "custom"
    assert not [c for c in emulator_calls(emulator, touser=VILLAGER, since=since)
                if c["path"] == "/cgi-bin/message/template/send"]


# ---------------------------------------------------------------------------------------------
# refusals go on to the next channel; one SMS; /待通知

def test_a_refused_template_goes_on_to_one_sms_after_a_day(notice_bot, db, emulator, caplog):
    x, running, villager = notice_bot
    home = household(x, villager, db)
    number = new_claim(db, home)
    requests.post(f"{emulator}/_emulator/fail", json={
        "path": "/cgi-bin/message/template/send", "errcode": 47003, "count": 1}, timeout=5)
    caplog.set_level(logging.INFO)
    approve(villager, number)
    row = wait_until(lambda: held(db, "47003"))
    # refused: logged with the event, waiting for the villager's day to pass before the SMS
    assert row.status is OutboxStatus.pending and row.channel is None
    assert row.payload["errors"][0]["channel"] == "template"
    assert sms_sent(emulator, number) == []
    assert any("event=claim_decided" in r.getMessage() and "47003" in r.getMessage()
               for r in caplog.records)
    age(db, row.id, 25)
    running.x.waker.wake()
    sent = wait_until(lambda: sms_sent(emulator, number))
    assert len(sent) == 1
    message = sent[0]
    assert message["phone"] == "+86" + PHONE and message["template_id"] == "100004"
    assert message["params"] == [number, "已通过", "8000.00元"] and message["sign"] == "乡村互助"
    row = wait_until(lambda: [r for r in notices(db) if r.status is OutboxStatus.sent])[0]
    assert row.channel == "sms" and row.payload["sms"] == "sent"
    # again: nothing more is sent for this notice
    running.x.waker.wake()
    time.sleep(1.0)
    assert len(sms_sent(emulator, number)) == 1
    # the phone number is never in a log line
    assert not any(PHONE in r.getMessage() for r in caplog.records)


def test_a_household_with_no_wechat_user_gets_one_sms_at_once(notice_bot, db, emulator):
    x, running, villager = notice_bot
    home = household(x, villager, db, openid=None)
    number = new_claim(db, home)
    approve(villager, number)
    sent = wait_until(lambda: sms_sent(emulator, number))
    assert len(sent) == 1 and sent[0]["params"][0] == number
    row = wait_until(lambda: [r for r in notices(db) if r.status is OutboxStatus.sent])[0]
    assert row.channel == "sms"
    # a worker that died during the call leaves "sending": the SMS is never sent twice
    with db.session() as s:
        stored = s.get(OutboxMessage, row.id)
        stored.payload = {**stored.payload, "sms": "sending"}
        stored.status, stored.channel, stored.next_attempt_at = (
            OutboxStatus.pending, None, utcnow())
    running.x.waker.wake()
    wait_until(lambda: notices(db)[0].status is OutboxStatus.dead)
    assert len(sms_sent(emulator, number)) == 1


@pytest.mark.notice_config(SMS_PROVIDER="", NOTIFY_TEMPLATES=None)
def test_an_sms_provider_error_and_a_template_wechat_does_not_know(tmp_path, notice_bot, db,
                                                                   emulator):
    x, running, villager = notice_bot
    tpl = tmp_path / "notify.yaml"
    tpl.write_text("claim_decided:\n  template_id: not-added-to-the-account\n"
                   "  fields: {character_string1: claim, phrase2: result}\n", encoding="utf-8")
    x.cfg.values.update({"NOTIFY_TEMPLATES": str(tpl), **sms_config(emulator)})
    running.x.deliver_context._notices = None
    home = household(x, villager, db)
    number = new_claim(db, home)
    requests.post(f"{emulator}/_emulator/sms/fail",
                  json={"code": "FailedOperation.InsufficientBalanceInSmsPackage"}, timeout=5)
    approve(villager, number)
    row = wait_until(lambda: held(db, "40037"))
    age(db, row.id, 25)
    running.x.waker.wake()
    row = wait_until(lambda: held(db, "sms FailedOperation"))
    assert [e["channel"] for e in row.payload["errors"]] == ["template", "sms"]
    assert row.channel is None and row.status is OutboxStatus.pending  # held for the villager
    assert sms_sent(emulator, number) == []

    # the village's administrator is told; another village's is not
    with db.session() as s:
        from core.admins import create_invite
        mine = create_invite(s, "village_admin", "cli:test", village="示范镇/东村")
        other = create_invite(s, "village_admin", "cli:test", village="示范镇/西村")
    villager.text("o_va_east", f"/绑定 {mine}")
    villager.text("o_va_west", f"/绑定 {other}")
    age(db, row.id, 25)
    reply = villager.text("o_va_east", "/待通知").reply
    assert home["number"] in reply and number in reply and "已过25小时" in reply
    assert "模板消息 40037 ×1" in reply and "短信 FailedOperation.InsufficientBalanceInSmsPackage" in reply
    assert "王大山" not in reply and PHONE not in reply
    assert home["number"] not in villager.text("o_va_west", "/待通知").reply
    # the villager writes: the held notice goes by customer-service
    since = villager.last_call_id()
    villager.text(VILLAGER, "你好")
    assert wait_until(lambda: [c for c in emulator_calls(emulator, touser=VILLAGER, since=since)
                               if c["path"] == "/cgi-bin/message/custom/send"
                               and number in c["json"]["text"]["content"]])
    assert wait_until(lambda: notices(db)[0].channel == "custom")
    assert "没有超过24小时" in villager.text("o_va_east", "/待通知").reply


def test_nobody_to_tell_is_listed_by_untold(notice_bot, db, emulator):
    """No WeChat user and no phone: the notice is dead at once, and after a day the village
    administrator sees the household."""
    x, running, villager = notice_bot
    home = household(x, villager, db, openid=None)
    with db.session() as s:
        s.get(Household, home["household"]).phone_enc = None
    number = new_claim(db, home)
    approve(villager, number)
    row = wait_until(lambda: [r for r in notices(db) if r.status is OutboxStatus.dead])[0]
    age(db, row.id, 30)
    with db.session() as s:
        from core.admins import create_invite
        code = create_invite(s, "village_admin", "cli:test", village="示范镇/东村")
    villager.text("o_va_east2", f"/绑定 {code}")
    reply = villager.text("o_va_east2", "/待通知").reply
    assert home["number"] in reply and "没有绑定微信" in reply


# ---------------------------------------------------------------------------------------------
# subscription notices and the claims page

@pytest.mark.notice_config(SMS_PROVIDER="")
def test_subscription_notice_after_the_villager_opted_in(tmp_path, notice_bot, db, emulator):
    x, running, villager = notice_bot
    tpl = tmp_path / "notify.yaml"
    tpl.write_text(EXAMPLE.read_text(encoding="utf-8").replace(
        "  template_id: huzhu-demo-claim-decided\n",
        "  template_id: huzhu-demo-claim-decided\n  via: subscribe\n"), encoding="utf-8")
    x.cfg.values["NOTIFY_TEMPLATES"] = str(tpl)
    running.x.deliver_context._notices = None
    home = household(x, villager, db)
    first, second = new_claim(db, home), new_claim(db, home)

    # the page carries the subscribe button, signed for WeChat's JS-SDK
    url = claims_url(x.cfg, home["household"])
    page = open_in_wechat(emulator, VILLAGER, url)
    assert page.status_code == 200
    assert '<wx-open-subscribe id="subscribe" template="huzhu-demo-claim-decided">' in page.text
    assert 'openTagList:["wx-open-subscribe"]' in page.text
    assert emulator_calls(emulator, path="/cgi-bin/ticket/getticket")

    # not opted in yet: WeChat refuses (43101), the notice waits for the villager
    approve(villager, first)
    assert wait_until(lambda: [r for r in notices(db) if "43101" in (r.last_error or "")])
    # the villager taps the button and accepts
    requests.post(f"{emulator}/_emulator/subscribe",
                  json={"openid": VILLAGER, "template_ids": ["huzhu-demo-claim-decided"]})
    since = villager.last_call_id()
    approve(villager, second, admission=TODAY - timedelta(days=60),
            discharge=TODAY - timedelta(days=55))
    calls = wait_until(lambda: [c for c in emulator_calls(
        emulator, touser=VILLAGER, since=since,
        path="/cgi-bin/message/subscribe/bizsend") if c["errcode"] == 0])
    assert calls and calls[0]["json"]["data"]["character_string1"]["value"] == second
    assert calls[0]["json"]["page"].startswith(f"{running.url}/h/claims/")
    assert wait_until(lambda: [r for r in notices(db) if r.channel == "subscribe"])


def test_the_claims_page_is_for_the_household_s_users_only(notice_bot, db, emulator):
    x, running, villager = notice_bot
    home = household(x, villager, db)
    number = new_claim(db, home)
    approve(villager, number)
    wait_until(lambda: [r for r in notices(db) if r.status is OutboxStatus.sent])
    url = claims_url(x.cfg, home["household"])
    page = open_in_wechat(emulator, VILLAGER, url)
    assert page.status_code == 200 and "no-store" in page.headers["Cache-Control"]
    assert number in page.text and "王*山" in page.text and "8,000.00 元" in page.text
    assert "审核通过" in page.text  # the notice's full text
    assert "王大山" not in page.text and PHONE not in page.text
    # a proxy linked to the household may read it too
    with db.session() as s:
        s.add(HouseholdLink(household_id=home["household"], openid="o_proxy_notice",
                            role=LinkRole.proxy))
    assert open_in_wechat(emulator, "o_proxy_notice", url).status_code == 200
    # anyone else, a forged link, or outside WeChat: not found
    stranger = open_in_wechat(emulator, "o_stranger", url)
    assert stranger.status_code == 404 and number not in stranger.text
    forged = open_in_wechat(emulator, VILLAGER, url[:-3] + "abc")
    assert forged.status_code == 404 and number not in forged.text
    outside = open_in_wechat(emulator, None, url)
    assert number not in outside.text


def test_the_claims_page_dates_a_notice_by_the_local_day(notice_bot, db, emulator):
    """A notice queued at 20:00 UTC on 1 March was sent on 2 March in Asia/Shanghai, the day
    the template's time field gave the villager: the page says the local day too."""
    from datetime import datetime

    x, running, villager = notice_bot
    assert x.cfg.TIMEZONE == "Asia/Shanghai"
    home = household(x, villager, db)
    number = new_claim(db, home)
    approve(villager, number)
    row = wait_until(lambda: [r for r in notices(db) if r.status is OutboxStatus.sent])[0]
    with db.session() as s:
        s.get(OutboxMessage, row.id).created_at = datetime(2026, 3, 1, 20, 0)
    page = open_in_wechat(emulator, VILLAGER, claims_url(x.cfg, home["household"]))
    assert page.status_code == 200
    assert "2026年3月2日" in page.text and "2026年3月1日" not in page.text


# ---------------------------------------------------------------------------------------------
# the file and the fitting

@pytest.mark.parametrize("text, words", [
    ("claim_decide:\n  template_id: a\n  fields: {thing1: claim}\n", "unknown event 'claim_decide'"),
    ("claim_decided:\n  template_id: a\n  fields: {thing1: phone}\n", "unknown variable 'phone'"),
    ("claim_decided:\n  template_id: a\n  fields: {keyword1: claim}\n", "field keyword1: unknown field kind"),
    ("claim_decided:\n  template_id: a\n  fields: {phrase1: claim}\n", "a phrase field cannot hold claim"),
    ("claim_decided:\n  fields: {thing1: claim}\n", "template_id missing"),
    ("claim_decided: [1, 2]\n", "expected {template_id, fields, url}"),
    ("- a\n", "expected a map of events"),
])
def test_a_wrong_file_is_one_line_naming_it(tmp_path, text, words):
    path = tmp_path / "notify.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config({"HUZHU_NOTIFY_TEMPLATES": str(path)})
    message = str(err.value)
    assert message.startswith("HUZHU_NOTIFY_TEMPLATES") and words in message
    assert "\n" not in message


def test_the_command_line_refuses_to_start_with_a_wrong_file(tmp_path, cfg):
    path = tmp_path / "notify.yaml"
    path.write_text("payout_done:\n  template_id: a\n  fields: {thing1: claim}\n",
                    encoding="utf-8")
    cfg.values["NOTIFY_TEMPLATES"] = str(path)
    out = cli(cfg, "outbox", "list")
    assert out.returncode == 2
    assert out.stderr.strip().endswith("unknown event 'payout_done' (events: payment_received, "
                                       "payment_reminder, claim_submitted, claim_decided, "
                                       "need_documents, payout_listed, payout_paid, "
                                       "payout_failed, appeal_decided)")


def test_the_readme_s_settings_for_notices_by_hand_start(tmp_path):
    """The README's block for trying notices by hand is enough for the program to start."""
    import os
    import re
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"notices by hand, start the server.*?```\n(.*?)```", readme, re.S).group(1)
    words = shlex.split(block.replace("\\\n", " "))
    env = dict(w.split("=", 1) for w in words)
    assert env["HUZHU_SMS_PROVIDER"] == "emulator" and "HUZHU_NOTIFY_TEMPLATES" in env
    env = {**os.environ, **env, "HUZHU_DATABASE_URL": f"sqlite:///{tmp_path}/h.db",
           "HUZHU_DATA_DIR": str(tmp_path / "var")}
    # the `huzhu` command installed beside this interpreter (its virtualenv need not be active)
    huzhu = Path(sys.executable).with_name("huzhu")
    command = [str(huzhu)] if huzhu.exists() else [sys.executable, "-m", "bot.cli"]
    out = subprocess.run([*command, "outbox", "list"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_sms_settings_are_checked_at_start(tmp_path):
    with pytest.raises(ConfigError, match="HUZHU_SMS_PROVIDER: must be"):
        load_config({"HUZHU_SMS_PROVIDER": "aliyun"})
    with pytest.raises(ConfigError, match="HUZHU_SMS_SECRET_ID: required"):
        load_config({f"HUZHU_{k}": v for k, v in sms_config("http://x", SMS_SECRET_ID="").items()})
    bad = tmp_path / "sms.yaml"
    bad.write_text("claim_decided: {template_id: '1', params: [claim, phone]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="SMS_TEMPLATES: claim_decided: unknown variable 'phone'"):
        load_config({f"HUZHU_{k}": v for k, v in sms_config("http://x", SMS_TEMPLATES=str(bad)).items()})


def test_the_readme_s_ready_file_loads_and_names_every_event():
    from core.notices import EVENTS, load_sms_templates, load_templates

    assert set(load_templates(EXAMPLE)) == set(EVENTS)
    assert set(load_sms_templates(SMS_EXAMPLE)) == set(EVENTS)


def test_free_text_is_shortened_never_the_name_or_the_amount():
    t = parse_templates({"claim_decided": {"template_id": "t", "fields": {
        "thing1": ["member", "amount", "reason"], "thing2": ["member", "next_step"],
        "phrase3": "result", "name4": "member", "amount5": "amount"}}})["claim_decided"]
    reason = "住院自付费用未达到居民医保起付线3000元\n请核对结算单后回复复核申请复核"
    data = fill(t, {"member": "欧阳*华", "amount": 123456789, "reason": reason,
                    "next_step": "请回复银行卡登记一张本人名下的借记卡以便转账", "result": "已通过"})
    assert all(len(v) <= 20 and "\n" not in v for k, v in data.items() if k.startswith("thing"))
    assert data["thing1"].startswith("欧阳*华，1234567.89元，住院") and data["thing1"].endswith("…")
    assert data["thing2"].startswith("欧阳*华，请回复银行卡")
    assert data["amount5"] == "1234567.89元" and data["name4"] == "欧阳*华"
    assert all(field_problem(k, v) is None for k, v in data.items())
    # a rejection has no amount: the field still holds a valid value
    empty = fill(t, {"member": "王*山", "amount": None, "reason": "", "result": "未通过"})
    assert empty["amount5"] == "0.00元" and field_problem("amount5", empty["amount5"]) is None


def test_fixed_parts_that_cannot_fit_are_an_error_not_a_cut():
    t = NoticeTemplate("claim_decided", "t", {"thing1": ("household", "claim", "amount")})
    with pytest.raises(ValueError):
        fill(t, {"household": "H12345678", "claim": "C123456789", "amount": 100})


# ---------------------------------------------------------------------------------------------
# the monthly payout: one notice per household and claim, in bulk

def test_the_payout_tells_each_household_by_template_or_sms(notice_bot, db, emulator):
    from core.payouts import confirm_batch
    from tests.test_payouts import approved_claim, fund, household_with_card, run

    x, running, villager = notice_bot
    linked = household_with_card(db, x.vault, openid="o_vil_payout")
    villager.text("o_vil_payout", "0")
    with db.session() as s:
        user = s.scalar(select(WechatUser).where(WechatUser.openid == "o_vil_payout"))
        user.last_inbound_at = utcnow() - timedelta(hours=60)
    imported = household_with_card(db, x.vault)  # no WeChat user: told by SMS
    first = approved_claim(db, linked["id"], 300000)
    second = approved_claim(db, imported["id"], 120000)
    fund(db, 10_000_000)
    since = villager.last_call_id()
    batch = run(x).batch
    running.x.waker.wake()
    listed = wait_until(lambda: [c for c in emulator_calls(emulator, touser="o_vil_payout",
                                                           since=since)
                                 if (c["json"] or {}).get("template_id")
                                 == "huzhu-demo-payout-listed"])
    data = {k: v["value"] for k, v in listed[0]["json"]["data"].items()}
    assert data == {"character_string1": first, "amount2": "3000.00元", "phrase3": "待转账",
                    "thing4": "到账后会再通知您"}
    sms = wait_until(lambda: sms_sent(emulator, second))
    assert sms[0]["template_id"] == "100006" and sms[0]["params"] == [second, "1200.00元"]
    rows = wait_until(lambda: [r for r in notices(db, "payout_listed") if r.channel]
                      if len([r for r in notices(db, "payout_listed") if r.channel]) == 2
                      else None)
    assert {r.household_id: r.channel for r in rows} == {linked["id"]: "template",
                                                         imported["id"]: "sms"}
    with db.session() as s:
        confirm_batch(s, batch, "test", TODAY)
    running.x.waker.wake()
    paid = wait_until(lambda: [c for c in emulator_calls(emulator, touser="o_vil_payout")
                               if (c["json"] or {}).get("template_id")
                               == "huzhu-demo-payout-paid"])
    assert paid[0]["json"]["data"]["phrase3"]["value"] == "已转账"
    assert wait_until(lambda: len(sms_sent(emulator, second)) == 2)
