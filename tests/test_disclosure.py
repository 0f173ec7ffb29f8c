"""The monthly disclosure: content and masking, splitting under 4096 bytes, group posts paced
under WeCom's 20 a minute, the poster (and the text-only fallback without a font), mass send to
the village tag, idempotence, the scheduled job and `huzhu report disclosure`."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import select

from bot.clients import poster
from bot.outbox import worker
from bot.jobs.transparency import disclose, run_monthly
from core import disclosure
from core.groups import PER_MINUTE, SPACING, add_group, enqueue_posts
from core.models import (GroupChat, OutboxMessage, OutboxStatus, PayoutLineStatus, Pool, Village,
                         WechatUser)
from tests.factories import M, make_household
from tests.transparency_factories import (contribute, local_today, make_claim, pay_claim,
                                          this_month)

SEND = "/cgi-bin/webhook/send"
MASS = "/cgi-bin/message/mass/sendall"
FULL_NAMES = ["王大山", "李小花", "欧阳春华", "张三丰"]


def calls(emulator, path=None) -> list[dict]:
    params = {"path": path} if path else {}
    return requests.get(f"{emulator}/_emulator/calls", params=params, timeout=10).json()


def wait_calls(emulator, path, n, timeout=15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = calls(emulator, path)
        if len(found) >= n:
            time.sleep(0.3)  # let stragglers land, so the test sees everything sent
            return calls(emulator, path)
        time.sleep(0.1)
    return calls(emulator, path)


def village(s, name) -> Village:
    return s.scalar(select(Village).where(Village.name == name))


def pool(s) -> Pool:
    return s.scalar(select(Pool).where(Pool.code == "demo"))


@pytest.fixture
def month_data(app_ctx):
    """Three households in two villages; two subsidies paid this month, one paid in another
    month, one failed transfer; contributions in the ledger."""
    db, vault = app_ctx.db, app_ctx.vault
    month = this_month()
    with db.session() as s:
        east = make_household(s, vault, [M("王大山"), M("李小花", "spouse")],
                              village="示范镇/东村", openid="o_east")
        west = make_household(s, vault, [M("欧阳春华")], village="示范镇/西村", openid="o_west")
        other = make_household(s, vault, [M("张三丰")], village="示范镇/东村", openid="o_other")
        for hh, n in ((east, 2), (west, 1), (other, 1)):
            contribute(s, hh, 5000 * n, 5000 * n, local_today())
        c1 = make_claim(s, east, 2000000, "FC19", member=1, out_of_pocket_fen=4500000)
        c2 = make_claim(s, west, 500000, "BR21")
        pay_claim(s, c1, month)
        pay_claim(s, c2, month)
        c3 = make_claim(s, other, 800000, "FM19")
        pay_claim(s, c3, "2000-01")  # another month's batch
        c4 = make_claim(s, other, 30000, "GB29")
        line = pay_claim(s, c4, month)
        line.status = PayoutLineStatus.failed  # bounced: not paid
        pool_id = east.pool_id
        secrets = [vault.decrypt(m.id_number_enc) for hh in (east, west, other)
                   for m in hh.members]
    return {"month": month, "pool_id": pool_id, "ids": secrets}


def assert_masked(text: str, ids: list[str]) -> None:
    for name in FULL_NAMES:
        assert name not in text, f"full name {name} leaked"
    for idn in ids:
        assert idn not in text and idn[-8:] not in text, "ID number leaked"


# -- content ---------------------------------------------------------------------------------------

def test_build_lists_the_months_paid_subsidies_masked_with_the_ledger_figures(app_ctx, month_data):
    with app_ctx.db.session() as s:
        data = disclosure.build(s, month_data["pool_id"], month_data["month"], app_ctx.cfg.tz)
    assert data["count"] == 2 and data["total_fen"] == 2500000
    rows = {(r["village_name"], r["name"], r["drg_name"], r["amount_fen"])
            for r in data["subsidies"]}
    assert rows == {("东村", "李*花", "冠状动脉手术", 2000000),
                    ("西村", "欧**华", "脑缺血性疾患，伴严重并发症或合并症", 500000)}
    assert all(r["date"] == local_today().isoformat() for r in data["subsidies"])
    fund = data["fund"]
    assert fund["income_fen"] == {"collective": 20000, "personal": 20000}
    assert fund["paid_fen"] == 2500000 + 800000 + 30000  # the ledger's month, as booked
    assert fund["balance_fen"] == 40000 - fund["paid_fen"]
    assert data["members"] == 4
    assert_masked(json.dumps(data, ensure_ascii=False), month_data["ids"])


def test_markdown_names_each_subsidy_and_the_fund(app_ctx, month_data):
    with app_ctx.db.session() as s:
        data = disclosure.build(s, month_data["pool_id"], month_data["month"], app_ctx.cfg.tz)
    parts = disclosure.markdown_parts(data)
    assert len(parts) == 1
    text = parts[0]
    y, m = (int(v) for v in month_data["month"].split("-"))
    assert f"## 示范镇互助基金 {y}年{m}月公示" in text
    assert "东村｜李*花｜冠状动脉手术｜**20,000.00 元**" in text
    assert "合计 **25,000.00 元**" in text and "月末余额" in text
    assert_masked(text, month_data["ids"])


def test_a_long_disclosure_splits_under_4096_bytes_keeping_every_row(app_ctx):
    with app_ctx.db.session() as s:
        households = [make_household(s, app_ctx.vault, [M(f"王{i:03d}明")],
                                     village="示范镇/南村") for i in range(150)]
        for hh in households:
            pay_claim(s, make_claim(s, hh, 123456, "GB29"), this_month())
        data = disclosure.build(s, households[0].pool_id, this_month(), app_ctx.cfg.tz)
    parts = disclosure.markdown_parts(data)
    assert len(parts) >= 3
    assert all(len(p.encode()) <= 4096 for p in parts)
    rows = [line for p in parts for line in p.split("\n") if line.startswith("- 南村")]
    assert len(rows) == 150
    assert [r.split("｜")[1] for r in rows] == ["王***明"] * 150  # 王001明 masked
    assert f"（第 2/{len(parts)} 条）" in parts[1] and f"共 {len(parts)} 条" in parts[0]
    assert "月末余额" in parts[-1]


# -- posting ---------------------------------------------------------------------------------------

def _groups_and_followers(app_ctx) -> dict:
    keys = {"东村": f"east-{uuid.uuid4().hex[:12]}", "西村": f"west-{uuid.uuid4().hex[:12]}"}
    with app_ctx.db.session() as s:
        for name, key in keys.items():
            add_group(s, village(s, name), key, "cli:test")
        s.add(WechatUser(openid="o_follower_east", village_id=village(s, "东村").id))
        s.add(WechatUser(openid="o_east", subscribed=True))
    return keys


def test_disclosure_goes_to_every_group_with_poster_and_to_the_village_tags(
        app_ctx, bot, emulator, month_data):
    """Each group gets the markdown and the poster (drawn with the system's CJK font or the
    packaged one: there is always one; see the bad-font test below)."""
    font = poster.find_font()
    assert font is not None
    keys = _groups_and_followers(app_ctx)
    result = disclose(app_ctx, month_data["pool_id"], month_data["month"])
    assert result["posted"] and result["groups"] == 2 and result["messages"] == 4
    posts = wait_calls(emulator, SEND, 4 if font else 2)
    by_key = {}
    for c in posts:
        assert c["errcode"] == 0
        by_key.setdefault(c["query"]["key"], []).append(c["json"])
    assert set(by_key) == set(keys.values())
    for bodies in by_key.values():
        assert [b["msgtype"] for b in bodies] == (["markdown", "image"] if font else ["markdown"])
        assert "本月示范镇发放住院补助 **2 笔**，合计 **25,000.00 元**" in \
            bodies[0]["markdown"]["content"]
        assert_masked(bodies[0]["markdown"]["content"], month_data["ids"])
    # each village's group lists its own village's subsidies
    east, west = (by_key[keys[v]][0]["markdown"]["content"] for v in ("东村", "西村"))
    assert "其中东村 **1 笔**，20,000.00 元" in east and "李*花" in east and "欧**华" not in east
    assert "西村｜欧**华" in west and "李*花" not in west
    if font:
        # the posters posted are the ones drawn from the masked data, and say nothing more
        pngs = list((app_ctx.cfg.data_dir / "posters").glob("*.png"))
        assert len(pngs) == 2
        assert {b[1]["image"]["md5"] for b in by_key.values()} == {
            hashlib.md5(p.read_bytes()).hexdigest() for p in pngs}
        with app_ctx.db.session() as s:
            data = disclosure.build(s, month_data["pool_id"], month_data["month"],
                                    app_ctx.cfg.tz)
        drawn = poster.disclosure_poster(disclosure.for_village(data, "示范镇/东村"),
                                         app_ctx.cfg.data_dir / "check.png")
        assert "李*花" in drawn.lines and "东村补助名单（姓名隐去一字）" in drawn.lines
        assert "欧**华" not in drawn.lines
        assert_masked("\n".join(drawn.lines), month_data["ids"])
    # followers of 东村 (tagged, or linked to a household there) get the mass send
    mass = wait_calls(emulator, MASS, 1)
    assert len(mass) == 1 and mass[0]["errcode"] == 0
    # (the emulator keeps tags for the session: other tests' followers may be tagged too)
    assert {"o_follower_east", "o_east"} <= set(mass[0]["recipients"])
    text = mass[0]["json"]["text"]["content"]
    assert "合计 25,000.00 元" in text and "回复 6" in text
    assert_masked(text, month_data["ids"])
    with app_ctx.db.session() as s:
        assert s.scalar(select(OutboxMessage).where(
            OutboxMessage.status == OutboxStatus.dead)) is None


def test_disclosing_twice_posts_once_and_a_late_batch_posts_an_update(app_ctx, month_data):
    keys = _groups_and_followers(app_ctx)
    pid, month = month_data["pool_id"], month_data["month"]
    assert disclose(app_ctx, pid, month)["posted"]
    again = disclose(app_ctx, pid, month)
    assert again == {**again, "posted": False, "reason": "already", "messages": 0}
    with app_ctx.db.session() as s:
        n = len(s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "wecom.post")).all())
        assert n == len(keys)
        hh = make_household(s, app_ctx.vault, [M("赵四海")], village="示范镇/东村")
        pay_claim(s, make_claim(s, hh, 60000, "GB29"), month)
    update_result = disclose(app_ctx, pid, month)
    assert update_result["posted"] and update_result["update"]
    with app_ctx.db.session() as s:
        posts = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "wecom.post")
                          .order_by(OutboxMessage.id)).all()
    assert len(posts) == 2 * len(keys)
    updates = [p.payload["markdown"] for p in posts[len(keys):]]
    assert all("公示（更新）" in u and "合计 **25,600.00 元**" in u for u in updates)
    assert ["赵*海" in u for u in updates] == [True, False]  # 东村's list, 西村's list


@pytest.mark.parametrize("bad", ["latin", "corrupt"])
def test_with_a_font_file_that_is_not_cjk_the_disclosure_goes_as_text_alone(
        app_ctx, bot, emulator, month_data, monkeypatch, caplog, tmp_path, bad):
    """FONT_FILE names a font without Chinese glyphs (Pillow's own Latin face), or a file that
    is not a font at all: one warning line naming the file, and the markdown alone."""
    from PIL import ImageFont

    path = tmp_path / f"{bad}.ttf"
    path.write_bytes(ImageFont.load_default(20).font_bytes if bad == "latin"
                     else b"\x00\x01\x00\x00 not really a font" * 50)
    monkeypatch.setenv("HUZHU_FONT_FILE", str(path))
    assert poster.find_font() is None
    caplog.clear()
    key = f"nofont-{uuid.uuid4().hex[:12]}"
    with app_ctx.db.session() as s:
        add_group(s, village(s, "东村"), key, "cli:test")
    disclose(app_ctx, month_data["pool_id"], month_data["month"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with app_ctx.db.session() as s:
            pending = s.scalars(select(OutboxMessage).where(
                OutboxMessage.kind.in_(["wecom.post", "wecom.poster"]),
                OutboxMessage.status == OutboxStatus.pending)).all()
        if not pending:
            break
        time.sleep(0.2)
    posts = calls(emulator, SEND)
    assert [c["json"]["msgtype"] for c in posts] == ["markdown"]
    assert "李*花" in posts[0]["json"]["markdown"]["content"]
    with app_ctx.db.session() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "wecom.poster")).all()
        assert [r.status for r in rows] == [OutboxStatus.sent]  # done, nothing to post
    assert not (app_ctx.cfg.data_dir / "posters").exists() or \
        not list((app_ctx.cfg.data_dir / "posters").glob("*.png"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0], warnings
    assert ("not a CJK font" if bad == "latin" else "cannot be read as a font") in warnings[0]


def test_poster_uses_the_simplified_chinese_face_and_stays_small(app_ctx, month_data, tmp_path):
    with app_ctx.db.session() as s:
        data = disclosure.build(s, month_data["pool_id"], month_data["month"], app_ctx.cfg.tz)
    drawn = poster.disclosure_poster(data, tmp_path / "p.png")
    font = poster.find_font()
    assert font is not None and drawn.path is not None
    name = " ".join(font.get(20).getname())
    assert "CJK JP" not in name and ("SC" in name or "CJK" not in name)
    if font.path.endswith("NotoSansCJK-Regular.ttc"):
        assert font.index == 2
    assert drawn.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn.path.stat().st_size < 2 << 20
    assert "示范镇互助基金" in drawn.lines and "25,000.00 元" in drawn.lines


# -- pacing ----------------------------------------------------------------------------------------

def test_45_messages_to_one_group_spread_over_three_minutes(app_ctx, emulator):
    key = f"pace-{uuid.uuid4().hex[:12]}"
    now = datetime.now(timezone.utc)
    with app_ctx.db.session() as s:
        rows = enqueue_posts(s, key, [("wecom.post", {"markdown": f"第 {i} 条"})
                                      for i in range(45)], now=now)
        due = [r.next_attempt_at for r in rows]
    assert due[:20] == [now] * 20
    assert due[20:40] == [now + SPACING] * 20
    assert due[40:] == [now + 2 * SPACING] * 5
    assert max(due) - now < timedelta(minutes=3)

    sent_total = 0
    for minute in range(3):
        worker.drain(app_ctx)
        got = [c for c in calls(emulator, SEND) if c["query"]["key"] == key]
        assert all(c["errcode"] == 0 for c in got), "the emulator's 20/minute limit was hit"
        assert len(got) - sent_total == (20 if minute < 2 else 5)
        sent_total = len(got)
        # a minute passes: the emulator forgets its window, the queue's clock moves on
        requests.post(f"{emulator}/_emulator/wecom/rate", timeout=5)
        with app_ctx.db.session() as s:
            for row in s.scalars(select(OutboxMessage).where(
                    OutboxMessage.status == OutboxStatus.pending)):
                row.next_attempt_at = row.next_attempt_at - SPACING
    contents = [c["json"]["markdown"]["content"] for c in calls(emulator, SEND)
                if c["query"]["key"] == key]
    assert contents == [f"第 {i} 条" for i in range(45)]


def test_a_later_batch_to_the_same_group_waits_behind_the_first(app_ctx):
    key = f"pace2-{uuid.uuid4().hex[:12]}"
    other = f"pace3-{uuid.uuid4().hex[:12]}"
    now = datetime.now(timezone.utc)
    with app_ctx.db.session() as s:
        enqueue_posts(s, key, [("wecom.post", {"markdown": "x"})] * 15, now=now)
        later = enqueue_posts(s, key, [("wecom.post", {"markdown": "y"})] * 10, now=now)
        elsewhere = enqueue_posts(s, other, [("wecom.post", {"markdown": "z"})] * 5, now=now)
    assert [r.next_attempt_at for r in later] == [now] * 5 + [now + SPACING] * 5
    assert [r.next_attempt_at for r in elsewhere] == [now] * 5  # another bot: its own minute
    assert PER_MINUTE == 20


# -- the job and the command line ------------------------------------------------------------------

def test_the_monthly_job_publishes_the_previous_month_once(app_ctx, month_data):
    _groups_and_followers(app_ctx)
    y, m = (int(v) for v in month_data["month"].split("-"))
    next_first = (datetime(y, m, 28) + timedelta(days=5)).date().replace(day=1)
    first = run_monthly(app_ctx, today=next_first)
    assert [(r["pool"], r["month"], r["posted"]) for r in first] == [
        ("demo", month_data["month"], True)]
    assert [r["posted"] for r in run_monthly(app_ctx, today=next_first + timedelta(days=1))] == [
        False]


def _env(cfg) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env.update({f"HUZHU_{k}": str(v) for k, v in cfg.values.items()})
    return env


def _cli(cfg, *args):
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, env=_env(cfg), timeout=120)


def test_cli_report_disclosure_json_and_markdown(app_ctx, cfg, month_data):
    out = _cli(cfg, "report", "disclosure", "--pool", "demo", "--month", month_data["month"],
               "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["count"] == 2 and doc["total_fen"] == 2500000
    assert {r["name"] for r in doc["subsidies"]} == {"李*花", "欧**华"}
    assert set(doc["fund"]) >= {"income_fen", "paid_fen", "fees_fen", "balance_fen"}
    assert_masked(out.stdout + out.stderr, month_data["ids"])
    text = _cli(cfg, "report", "disclosure", "--pool", "demo", "--month", month_data["month"])
    assert text.returncode == 0 and "李*花" in text.stdout
    assert_masked(text.stdout, month_data["ids"])
    bad = _cli(cfg, "report", "disclosure", "--pool", "demo", "--month", "2026-13")
    assert bad.returncode == 2 and "YYYY-MM" in bad.stderr


def test_cli_groups_add_and_list_masks_keys(app_ctx, cfg):
    key = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
    added = _cli(cfg, "groups", "add", "--village", "示范镇/东村", "--key", key)
    assert added.returncode == 0, added.stderr
    again = _cli(cfg, "groups", "add", "--village", "东村", "--key", key)
    assert again.returncode == 2 and "already" in again.stderr
    bad = _cli(cfg, "groups", "add", "--village", "北村", "--key", key)
    assert bad.returncode == 2
    listed = _cli(cfg, "groups", "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["village"], r["key"]) for r in rows] == [("示范镇/东村", "693a…5aaa")]
    assert key not in listed.stdout
    with app_ctx.db.session() as s:
        assert s.scalar(select(GroupChat.key)) == key


def test_disclose_in_the_callers_transaction_goes_or_stays_with_it(app_ctx, month_data):
    """The payout confirmation calls disclose() in its own transaction: if that rolls back,
    nothing was queued and the month is still to be disclosed."""
    _groups_and_followers(app_ctx)
    pid, month = month_data["pool_id"], month_data["month"]
    with pytest.raises(RuntimeError):
        with app_ctx.db.session() as s:
            assert disclose(s, pid, month, cfg=app_ctx.cfg)["posted"]
            raise RuntimeError("the confirmation failed")
    with app_ctx.db.session() as s:
        assert s.scalar(select(OutboxMessage.id)) is None
        assert disclosure.last_published(s, s.get(Pool, pid), month) is None
    with app_ctx.db.session() as s:
        assert disclose(s, pid, month, cfg=app_ctx.cfg)["posted"]
    with app_ctx.db.session() as s:
        kinds = sorted(r.kind for r in s.scalars(select(OutboxMessage)))
    # two groups (东村, 西村): markdown and poster each; one village with followers (东村)
    assert kinds == ["wechat.mass", "wecom.post", "wecom.post", "wecom.poster", "wecom.poster"]


def _show_illness(app_ctx, pool_id: int, show: bool) -> None:
    from core.models import SchemeYear

    with app_ctx.db.session() as s:
        for year in s.scalars(select(SchemeYear).where(SchemeYear.pool_id == pool_id)):
            year.rules = {**year.rules, "disclosure": {**year.rules["disclosure"],
                                                       "show_illness": show}}


def test_show_illness_false_posts_the_list_without_the_drg_group(app_ctx, bot, emulator,
                                                                 month_data):
    """In a small village the illness beside a masked name identifies the person: with
    `disclosure.show_illness: false` the groups get village, masked name, amount and date."""
    _show_illness(app_ctx, month_data["pool_id"], False)
    keys = _groups_and_followers(app_ctx)
    assert disclose(app_ctx, month_data["pool_id"], month_data["month"])["posted"]
    posts = [c for c in wait_calls(emulator, SEND, 2)
             if c["query"]["key"] in keys.values() and c["json"]["msgtype"] == "markdown"]
    assert len(posts) == 2
    east = next(c["json"]["markdown"]["content"] for c in posts
                if c["query"]["key"] == keys["东村"])
    assert "东村｜李*花｜**20,000.00 元**｜" in east
    assert "姓名｜金额｜发放日" in east and "病种" not in east
    for c in posts:
        text = c["json"]["markdown"]["content"]
        assert "冠状动脉手术" not in text and "脑缺血" not in text
        assert "FC19" not in text and "BR21" not in text
    with app_ctx.db.session() as s:
        data = disclosure.build(s, month_data["pool_id"], month_data["month"], app_ctx.cfg.tz)
    # what the poster is drawn from carries no illness either
    assert data["show_illness"] is False
    assert {(r["drg_code"], r["drg_name"]) for r in data["subsidies"]} == {(None, None)}
    drawn = poster.disclosure_poster(disclosure.for_village(data, "示范镇/东村"),
                                     app_ctx.cfg.data_dir / "hidden.png")
    assert not any("冠状动脉" in line for line in drawn.lines)
    # and the default (the seeds' practice) names it
    _show_illness(app_ctx, month_data["pool_id"], True)
    with app_ctx.db.session() as s:
        data = disclosure.build(s, month_data["pool_id"], month_data["month"], app_ctx.cfg.tz)
    assert "东村｜李*花｜冠状动脉手术｜" in disclosure.markdown_parts(data)[0]
