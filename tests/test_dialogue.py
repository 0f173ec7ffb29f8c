"""The dialogue mechanism: declared state tables, persisted per openid, 取消, the 30-minute
timeout, switching by menu word, numbers inside a dialogue — all through the webhook."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from core.models import DialogueState, utcnow
from handlers import dialogue
from handlers.dialogue import Dialogue, say


@pytest.fixture
def pet_dialogue():
    """Two questions, numbered choices, a fallback: the shape of every real dialogue."""
    def entry(ctx, msg, data):
        return say("请问名字？", state="name")

    def name(ctx, msg, data):
        if not msg.text or len(msg.text) > 10:
            return say("名字不对，请发1到10个字。", state="name", data=data)
        return say("喜欢哪个？回复 1 猫 或 2 狗", state="kind", data={"name": msg.text})

    def kind(ctx, msg, data):
        choice = {"1": "猫", "猫": "猫", "2": "狗", "狗": "狗"}.get(msg.text)
        if choice is None:
            return say("请回复 1 或 2", state="kind", data=data)
        return say(f"{data['name']}喜欢{choice}，已记下。")

    def help_fallback(ctx, msg, data):
        if msg.text == "提示":
            return say("这是提示。", state="name", data=data)
        return None

    d = dialogue.register(Dialogue("pet", entry, {"name": name, "kind": kind},
                                   words=("宠物",), fallbacks=()))
    yield d
    dialogue.REGISTRY.pop("pet", None)


def test_a_dialogue_goes_step_by_step_and_remembers(villager, db, pet_dialogue):
    assert villager.text("o_pet", "宠物").reply == "请问名字？"
    assert "回复 1 猫 或 2 狗" in villager.text("o_pet", "小明").reply
    # a number inside a dialogue answers the dialogue, it does not open the menu
    assert villager.text("o_pet", "2").reply == "小明喜欢狗，已记下。"
    with db.session() as s:
        assert s.get(DialogueState, "o_pet") is None


def test_bad_answers_re_ask_with_a_hint(villager, pet_dialogue):
    villager.text("o_pet2", "宠物")
    villager.text("o_pet2", "小红")
    assert villager.text("o_pet2", "3").reply == "请回复 1 或 2"
    assert villager.text("o_pet2", "猫").reply == "小红喜欢猫，已记下。"


def test_cancel_leaves_the_dialogue(villager, db, pet_dialogue):
    villager.text("o_cancel", "宠物")
    r = villager.text("o_cancel", "取消")
    assert "已取消" in r.reply and "1 参加互助" in r.reply
    with db.session() as s:
        assert s.get(DialogueState, "o_cancel") is None
    assert "没有进行中" in villager.text("o_cancel", "取消").reply


def test_idle_dialogue_ends_after_30_minutes(villager, db, pet_dialogue):
    villager.text("o_idle", "宠物")
    with db.session() as s:
        s.execute(update(DialogueState).where(DialogueState.openid == "o_idle")
                  .values(updated_at=utcnow() - timedelta(minutes=31)))
    r = villager.text("o_idle", "小明")
    assert "超过30分钟" in r.reply
    with db.session() as s:
        assert s.get(DialogueState, "o_idle") is None


def test_29_idle_minutes_keep_the_dialogue(villager, db, pet_dialogue):
    villager.text("o_idle2", "宠物")
    with db.session() as s:
        s.execute(update(DialogueState).where(DialogueState.openid == "o_idle2")
                  .values(updated_at=utcnow() - timedelta(minutes=29)))
    assert "回复 1 猫 或 2 狗" in villager.text("o_idle2", "小明").reply


def test_state_survives_another_server_process(app_ctx, villager, pet_dialogue, cfg, emulator):
    """The state lives in the database: a second server picks the dialogue up."""
    from bot.devtools.chat import Villager
    from tests.conftest import start_bot

    villager.text("o_two", "宠物")
    other = start_bot(app_ctx, worker=False)
    try:
        v2 = Villager(other.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)
        assert "回复 1 猫 或 2 狗" in v2.text("o_two", "小兰").reply
    finally:
        other.stop()


def test_menu_entries_without_a_service_say_so(villager):
    r = villager.text("o_menu", "3")
    if "claim" not in dialogue.REGISTRY:
        assert "申请补助" in r.reply and "还没有开通" in r.reply
    else:
        assert "还没有开通" not in r.reply
