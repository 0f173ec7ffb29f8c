"""`/公告 <text>`: a preview, then `确认` posts to the sender's villages' group chats and mass-sends
to their followers — a village admin reaches its own villages only; refusals are audited."""
from __future__ import annotations

import time
import uuid

import pytest
import requests
from sqlalchemy import select

from core.groups import add_group
from core.models import AuditLog, OutboxMessage, Village, WechatUser
from tests.test_balance_fund import admin

SEND = "/cgi-bin/webhook/send"
MASS = "/cgi-bin/message/mass/sendall"


def calls(emulator, path) -> list[dict]:
    return requests.get(f"{emulator}/_emulator/calls", params={"path": path}, timeout=5).json()


def wait_for(emulator, path, n, timeout=10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    found = []
    while time.monotonic() < deadline:
        found = calls(emulator, path)
        if len(found) >= n:
            time.sleep(0.5)  # anything more that would come, comes now
            return calls(emulator, path)
        time.sleep(0.1)
    return found


def tag_id(emulator, name) -> int:
    with_token = requests.post(f"{emulator}/cgi-bin/stable_token", json={
        "grant_type": "client_credential", "appid": "wxdemo0000000000",
        "secret": "demo-app-secret"}, timeout=5).json()["access_token"]
    tags = requests.get(f"{emulator}/cgi-bin/tags/get", params={"access_token": with_token},
                        timeout=5).json()["tags"]
    return next(t["id"] for t in tags if t["name"] == name)


@pytest.fixture
def villages(app_ctx):
    """A group chat in each village; a follower tagged with each village."""
    keys = {}
    with app_ctx.db.session() as s:
        for v in s.scalars(select(Village).order_by(Village.id)):
            keys[v.name] = f"{uuid.uuid4().hex[:16]}"
            add_group(s, v, keys[v.name], "cli:test")
            s.add(WechatUser(openid=f"o_fan_{v.id}", village_id=v.id))
        ids = {v.name: v.id for v in s.scalars(select(Village))}
    return {"keys": keys, "ids": ids}


def outbox_kinds(db) -> list[str]:
    with db.session() as s:
        return [r.kind for r in s.scalars(select(OutboxMessage).where(
            OutboxMessage.kind.in_(["wecom.post", "wechat.mass"])))]


def test_a_village_admin_reaches_only_its_villages(app_ctx, villager, emulator, villages):
    admin(app_ctx.db, "o_east", "village_admin", village="示范镇/东村")
    preview = villager.text("o_east", "/公告 明天上午9点，在村委会办理缴费。").reply
    assert "明天上午9点，在村委会办理缴费。" in preview
    assert "东村（1 个群，1 位关注者）" in preview and "西村" not in preview
    assert "回复“确认”发出" in preview
    assert outbox_kinds(app_ctx.db) == []  # nothing before 确认
    done = villager.text("o_east", "确认").reply
    assert "公告已排队发出：1 个村群" in done
    posts = wait_for(emulator, SEND, 1)
    assert [c["query"]["key"] for c in posts] == [villages["keys"]["东村"]]
    content = posts[0]["json"]["markdown"]["content"]
    assert "## 互助公告" in content and "明天上午9点，在村委会办理缴费。" in content
    assert "东村互助管理员" in content
    mass = wait_for(emulator, MASS, 1)
    # the emulator keeps its tags for the whole session: other tests' followers may be in it
    assert len(mass) == 1 and f"o_fan_{villages['ids']['东村']}" in mass[0]["recipients"]
    assert mass[0]["json"]["filter"]["tag_id"] == tag_id(emulator, "示范镇/东村")
    assert not {f"o_fan_{villages['ids'][v]}" for v in ("西村", "南村")} & set(
        mass[0]["recipients"])
    assert "【互助公告】明天上午9点，在村委会办理缴费。" in mass[0]["json"]["text"]["content"]
    with app_ctx.db.session() as s:
        sent = s.scalar(select(AuditLog).where(AuditLog.action == "announce.sent"))
        assert sent.actor == "o_east" and sent.after["villages"] == ["示范镇/东村"]


def test_a_pool_admin_reaches_every_village_of_the_pool(app_ctx, villager, emulator, villages):
    admin(app_ctx.db, "o_pool", "pool_admin", pool="demo")
    villager.text("o_pool", "/公告 本月补助已发放，请查收")
    villager.text("o_pool", "确认")
    posts = wait_for(emulator, SEND, 3)
    assert sorted(c["query"]["key"] for c in posts) == sorted(villages["keys"].values())
    assert "示范镇互助基金" in posts[0]["json"]["markdown"]["content"]
    assert len(wait_for(emulator, MASS, 3)) == 3


def test_cancel_or_a_wrong_answer_sends_nothing(app_ctx, villager, villages):
    admin(app_ctx.db, "o_east", "village_admin", village="示范镇/东村")
    villager.text("o_east", "/公告 停水通知")
    again = villager.text("o_east", "好的").reply
    assert "公告还没有发出" in again and "确认" in again
    assert outbox_kinds(app_ctx.db) == []
    assert "已取消" in villager.text("o_east", "取消").reply
    assert outbox_kinds(app_ctx.db) == []
    # after 取消 a lone 确认 is not an announcement
    villager.text("o_east", "确认")
    assert outbox_kinds(app_ctx.db) == []


def test_refusals_are_audited_and_change_nothing(app_ctx, villager, villages):
    admin(app_ctx.db, "o_rev", "reviewer", pool="demo")
    assert "不能使用“/公告”" in villager.text("o_rev", "/公告 测试").reply
    assert "还没有绑定管理员" in villager.text("o_nobody", "/公告 测试").reply
    admin(app_ctx.db, "o_east", "village_admin", village="示范镇/东村")
    assert "/公告 内容" in villager.text("o_east", "/公告").reply
    long = villager.text("o_east", "/公告 " + "通知" * 260).reply
    assert "公告太长了（520 个字）" in long
    with app_ctx.db.session() as s:
        refused = [(a.actor, a.after["why"]) for a in s.scalars(
            select(AuditLog).where(AuditLog.action == "admin.refused").order_by(AuditLog.id))]
    assert refused == [("o_rev", "role"), ("o_nobody", "not_admin"),
                       ("o_east", "announce_too_long")]
    assert outbox_kinds(app_ctx.db) == []


def test_a_village_with_no_group_and_no_followers_is_told_how_to_add_one(app_ctx, villager):
    admin(app_ctx.db, "o_south", "village_admin", village="示范镇/南村")
    reply = villager.text("o_south", "/公告 测试").reply
    assert "还没有互助群" in reply and "huzhu groups add" in reply
    with app_ctx.db.session() as s:
        assert s.scalar(select(AuditLog).where(AuditLog.action == "admin.refused",
                                               AuditLog.actor == "o_south")) is not None


HOSTILE = ("<@all> [领取补助](http://evil.example/pay?x=1) 今晚8点发补助\n"
           '<font color="warning">紧急</font>：请**马上**点开\n'
           "# 标题\n"
           "> 署名：县医保局")


def test_an_announcement_goes_out_as_plain_text(app_ctx, villager, emulator, villages):
    """Links, mentions, HTML tags, headings and a quote line posing as the signature are the
    sender's words only: what WeCom and the mass send receive formats nothing."""
    admin(app_ctx.db, "o_east", "village_admin", village="示范镇/东村")
    preview = villager.text("o_east", "/公告 " + HOSTILE).reply
    assert "已去掉" in preview and "evil.example/pay" not in preview
    villager.text("o_east", "确认")
    posts = wait_for(emulator, SEND, 1)
    posts = [c for c in posts if c["query"]["key"] == villages["keys"]["东村"]]
    assert len(posts) == 1 and posts[0]["errcode"] == 0
    content = posts[0]["json"]["markdown"]["content"]
    lines = content.split("\n")
    # huzhu's own heading and signature, and nothing else formats
    assert lines[0] == "## 互助公告" and lines[-1] == "> 东村互助管理员"
    body = lines[1:-1]
    assert body == ["领取补助 今晚8点发补助", "紧急：请＊＊马上＊＊点开", "标题", "署名：县医保局"]
    for forbidden in ("http", "evil.example", "<@all>", "<font", "](", "[", "**"):
        assert forbidden not in "\n".join(body), forbidden
    assert not any(line.startswith(("#", ">")) for line in body)
    mass = wait_for(emulator, MASS, 1)[0]["json"]["text"]["content"]
    assert mass.startswith("【互助公告】领取补助 今晚8点发补助\n紧急：请＊＊马上＊＊点开")
    for forbidden in ("http", "evil", "<", ">", "[", "]"):
        assert forbidden not in mass, forbidden
    with app_ctx.db.session() as s:  # the audit keeps what went out
        sent = s.scalar(select(AuditLog).where(AuditLog.action == "announce.sent"))
        assert "evil.example" not in sent.after["text"]


def test_a_bare_address_stays_readable_but_is_no_link(app_ctx, villager, emulator, villages):
    admin(app_ctx.db, "o_east", "village_admin", village="示范镇/东村")
    villager.text("o_east", "/公告 详情见 https://example.org/notice")
    villager.text("o_east", "确认")
    content = wait_for(emulator, SEND, 1)[0]["json"]["markdown"]["content"]
    assert "详情见 https：//example.org/notice" in content and "://" not in content


def test_an_announcement_of_markup_alone_is_refused(app_ctx, villager, villages):
    admin(app_ctx.db, "o_east", "village_admin", village="示范镇/东村")
    reply = villager.text("o_east", "/公告 <@all> <font color=\"warning\"></font>").reply
    assert "没有可发的文字" in reply and "/公告 内容" in reply
    assert outbox_kinds(app_ctx.db) == []
    assert "公告还没有发出" not in villager.text("o_east", "确认").reply
    assert outbox_kinds(app_ctx.db) == []


@pytest.mark.parametrize("typed,shown", [
    ("[领取补助](http://x.example)", "领取补助"),
    ("<@all>开会", "开会"),
    ("<@zhangsan> 请回电", "请回电"),
    ('<font color="warning">紧急</font>', "紧急"),
    ("# 标题", "标题"),
    ("> 署名", "署名"),
    ("  ## > 两层", "两层"),
    ("年龄<60岁，>18岁", "年龄＜60岁，＞18岁"),
    ("帮\u200b助\ufeff", "帮助"),
    ("<<b>font color=red>x", "x"),
    ("`代码` a_b ~删~ |表|", "｀代码｀ a＿b ～删～ ｜表｜"),
])
def test_plain_is_the_one_sanitiser_and_is_stable(typed, shown):
    from core.grouptext import plain

    assert plain(typed) == shown
    assert plain(shown) == shown
