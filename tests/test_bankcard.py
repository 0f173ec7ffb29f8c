"""The `银行卡` dialogue through the webhook: card number (16–19 digits, Luhn), bank, holder (a
member), the masked summary and `确认`; bad input changes nothing; the number is encrypted at
rest and never shown in full; one active card per household; an approval asks a household with
no card to send `银行卡`."""
from __future__ import annotations

import json
from datetime import date, timedelta
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from stdnum import luhn

from core import bankcards
from core.admins import create_invite
from core.bankcards import BankCardError, validate_bank, validate_number
from core.models import (AdminGrant, AuditLog, BankCard, DialogueState, Household,
                         InboundMessage, OutboxMessage)
from tests.factories import local_today, M, make_claim, make_household

VILLAGER = "o_vil_card"


def card(prefix: str = "622848001234567", length: int = 19) -> str:
    body = (prefix + "0" * length)[:length - 1]
    return body + luhn.calc_check_digit(body)


CARD = card("62284800123456789")
CARD2 = card("6217000012345", 16)


@pytest.fixture
def home(app_ctx, db, villager):
    with db.session() as s:
        hh = make_household(s, app_ctx.vault, [M("王大山"), M("李小花", "spouse")],
                            village="示范镇/东村", openid=VILLAGER)
        ids = {"id": hh.id, "number": hh.number, "head": hh.members[0].id,
               "spouse": hh.members[1].id}
    return ids


def cards(db, household_id: int) -> list[BankCard]:
    with db.session() as s:
        rows = list(s.scalars(select(BankCard).where(BankCard.household_id == household_id)
                              .order_by(BankCard.id)))
        for r in rows:
            s.expunge(r)
        return rows


def state(db, openid: str) -> DialogueState | None:
    with db.session() as s:
        row = s.get(DialogueState, openid)
        if row is not None:
            s.expunge(row)
        return row


def register_card(villager, number: str = CARD, bank: str = "农行", holder: str = "1") -> str:
    assert "银行卡号" in villager.text(VILLAGER, "银行卡").reply
    assert "哪家银行" in villager.text(VILLAGER, number).reply
    assert "开户人是谁" in villager.text(VILLAGER, bank).reply
    assert "请核对" in villager.text(VILLAGER, holder).reply
    return villager.text(VILLAGER, "确认").reply


# ---------------------------------------------------------------------------------------------
# rules

@pytest.mark.parametrize("text,code", [
    ("6228 4800 1234 5678", "bad_check_digit"),
    ("622848001234567", "too_short"),
    ("62284800123456789012", "too_long"),
    ("6228a800123456789", "not_digits"),
    ("６２２８４８", "not_digits"),
    ("", "not_digits"),
])
def test_bad_card_numbers_are_refused_with_a_reason(text, code):
    with pytest.raises(BankCardError) as e:
        validate_number(text)
    assert e.value.code == code


def test_card_numbers_of_16_to_19_digits_with_spaces_and_dashes():
    for n in (card("6217000012345", 16), card("62170000123456", 17), card("622848001234567", 18),
              CARD):
        assert validate_number(n) == n
    spaced = " ".join(CARD[i:i + 4] for i in range(0, len(CARD), 4))
    assert validate_number(spaced) == CARD
    assert validate_number(CARD[:4] + "-" + CARD[4:]) == CARD


def test_bank_names_and_aliases():
    assert validate_bank("农行") == "中国农业银行"
    assert validate_bank("张家港农商银行") == "张家港农商银行"
    for bad in ("1", "12345", "银", "http://x.cn"):
        with pytest.raises(BankCardError):
            validate_bank(bad)


# ---------------------------------------------------------------------------------------------
# the dialogue

def test_register_a_card_in_order_and_it_is_stored_encrypted_and_masked(villager, db, home,
                                                                         app_ctx):
    r = villager.text(VILLAGER, "银行卡")
    assert "请回复银行卡号" in r.reply and "取消" in r.reply
    r = villager.text(VILLAGER, " ".join(CARD[i:i + 4] for i in range(0, 19, 4)))
    masked = "*" * 15 + CARD[-4:]
    assert masked in r.reply and "哪家银行" in r.reply and CARD not in r.reply
    # the dialogue keeps the number encrypted while it waits
    row = state(db, VILLAGER)
    assert row.state == "bank" and CARD not in json.dumps(row.data)
    assert app_ctx.vault.decrypt(row.data["number_enc"]) == CARD
    r = villager.text(VILLAGER, "农行")
    assert "开户人是谁" in r.reply and "1 王*山" in r.reply and "2 李*花" in r.reply
    assert "王大山" not in r.reply
    r = villager.text(VILLAGER, "李小花")
    assert "请核对" in r.reply and "中国农业银行" in r.reply and masked in r.reply
    assert "李*花" in r.reply and "确认" in r.reply
    assert cards(db, home["id"]) == []  # nothing saved before 确认
    r = villager.text(VILLAGER, "确认")
    assert "银行卡已登记" in r.reply and masked in r.reply and CARD not in r.reply
    assert "回复 4" in r.reply
    [saved] = cards(db, home["id"])
    assert saved.active and saved.bank_name == "中国农业银行"
    assert saved.holder_member_id == home["spouse"]
    assert saved.number_masked == masked and CARD not in saved.number_enc
    assert app_ctx.vault.decrypt(saved.number_enc) == CARD
    assert saved.number_hash == app_ctx.vault.lookup_hash(CARD)
    assert state(db, VILLAGER) is None
    with db.session() as s:
        a = s.scalar(select(AuditLog).where(AuditLog.action == "bank_card.add"))
        assert a.actor == VILLAGER and a.after["card"] == masked
        assert CARD not in json.dumps(a.after, ensure_ascii=False)


def test_bad_input_at_each_step_is_answered_and_changes_nothing(villager, db, home):
    villager.text(VILLAGER, "银行卡")
    for bad, words in (("12345", "5位"), ("6228 4800 1234 5678", "抄错"),
                       ("我不知道", "只能是数字"), ("62284800123456789012", "多了")):
        r = villager.text(VILLAGER, bad)
        assert words in r.reply and "请重新回复银行卡号" in r.reply
        assert state(db, VILLAGER).state == "number"
    villager.text(VILLAGER, CARD)
    r = villager.text(VILLAGER, "12345")
    assert "没有看懂银行名称" in r.reply and state(db, VILLAGER).state == "bank"
    villager.text(VILLAGER, "中国建设银行")
    r = villager.text(VILLAGER, "张三")
    assert "不在名单里" in r.reply and "张*" in r.reply and "1 王*山" in r.reply
    r = villager.text(VILLAGER, "3")
    assert "不在名单里" in r.reply and state(db, VILLAGER).state == "holder"
    r = villager.text(VILLAGER, "1")
    assert "请核对" in r.reply and "王*山" in r.reply
    r = villager.text(VILLAGER, "好的")
    assert "请核对" in r.reply and state(db, VILLAGER).state == "confirm"
    assert cards(db, home["id"]) == []
    r = villager.text(VILLAGER, "取消")
    assert "已取消" in r.reply and state(db, VILLAGER) is None
    assert cards(db, home["id"]) == []


def test_replacing_the_card_deactivates_the_old_one(villager, db, home):
    assert "银行卡已登记" in register_card(villager)
    r = villager.text(VILLAGER, "换卡")
    assert "现在登记的是中国农业银行卡" in r.reply and CARD[-4:] in r.reply
    r = villager.text(VILLAGER, CARD)
    assert "已经登记过了" in r.reply and state(db, VILLAGER) is None
    villager.text(VILLAGER, "银行卡")
    villager.text(VILLAGER, CARD2)
    villager.text(VILLAGER, "邮储")
    r = villager.text(VILLAGER, "2")
    assert "原来的卡" in r.reply and CARD[-4:] in r.reply
    assert "银行卡已登记" in villager.text(VILLAGER, "确认").reply
    old, new = cards(db, home["id"])
    assert not old.active and new.active and new.bank_name == "中国邮政储蓄银行"
    assert new.number_masked.endswith(CARD2[-4:])


def test_the_number_may_come_with_the_word(villager, db, home):
    r = villager.text(VILLAGER, f"银行卡 {CARD}")
    assert "哪家银行" in r.reply and state(db, VILLAGER).state == "bank"


def test_a_user_without_a_household_cannot_register_a_card(villager, db, app_ctx):
    r = villager.text("o_stranger", "银行卡")
    assert "还没有关联参加互助的家庭" in r.reply and "回复 1" in r.reply
    assert state(db, "o_stranger") is None
    with db.session() as s:
        assert s.scalar(select(func.count(BankCard.id))) == 0


def test_one_active_card_per_household_is_a_database_rule(db, home, app_ctx):
    with db.session() as s:
        hh = s.get(Household, home["id"])
        bankcards.add_card(s, app_ctx.vault, hh, CARD, "农行", hh.members[0], "test")
    with pytest.raises(IntegrityError):
        with db.session() as s:
            s.add(BankCard(household_id=home["id"], number_enc="x", number_hash="y",
                           number_masked="z", bank_name="b", holder_member_id=home["head"],
                           active=True))
            s.flush()


def test_the_holder_must_be_a_member_of_this_household(db, home, app_ctx):
    with db.session() as s:
        other = make_household(s, app_ctx.vault, [M("赵四")], village="示范镇/西村")
        hh = s.get(Household, home["id"])
        with pytest.raises(BankCardError) as e:
            bankcards.add_card(s, app_ctx.vault, hh, CARD, "农行", other.members[0], "test")
        assert e.value.code == "not_member"


# ---------------------------------------------------------------------------------------------
# asked after an approval

REVIEWER = "o_rev_card"


def _approve(villager, db, home) -> str:
    """A claim approved by a reviewer through the webhook (/核定 then /通过)."""
    with db.session() as s:
        if not s.scalar(select(func.count(AdminGrant.id)).where(AdminGrant.openid == REVIEWER)):
            code = create_invite(s, "reviewer", "cli:test", pool="demo")
        else:
            code = None
        hh = s.get(Household, home["id"])
        number = make_claim(s, hh, status="submitted").number
    if code:
        assert "绑定成功" in villager.text(REVIEWER, f"/绑定 {code}").reply
    today = local_today()
    adm, dis = today - timedelta(days=20), today - timedelta(days=12)
    r = villager.text(REVIEWER, f"/核定 {number} FM19 12000.00 {adm} {dis} 居民医保")
    assert "8,000.00 元" in r.reply, r.reply
    assert "已通过" in villager.text(REVIEWER, f"/通过 {number}").reply
    return number


def _texts_to(db, openid: str) -> list[str]:
    with db.session() as s:
        return [m.payload["message"]["content"] for m in s.scalars(
            select(OutboxMessage).where(OutboxMessage.recipient == openid)
            .order_by(OutboxMessage.id))]


def test_an_approval_without_a_card_asks_for_one_and_the_reply_starts_the_dialogue(
        villager, db, home, app_ctx):
    villager.text(VILLAGER, "0")  # inside the 48-hour window
    since = villager.last_call_id()
    number = _approve(villager, db, home)
    asked = [t for t in _texts_to(db, VILLAGER) if "请回复“银行卡”" in t]
    assert len(asked) == 1 and number in asked[0] and "请回复“银行卡”" in asked[0]
    pushed = [c["json"]["text"]["content"] for c in villager.wait_pushes(VILLAGER, since, 5)
              if c.get("json", {}).get("msgtype") == "text"]
    assert any("请回复“银行卡”" in t for t in pushed)
    r = villager.text(VILLAGER, "银行卡")
    assert "请回复银行卡号" in r.reply
    villager.text(VILLAGER, CARD)
    villager.text(VILLAGER, "工行")
    villager.text(VILLAGER, "1")
    r = villager.text(VILLAGER, "确认")
    assert "1笔补助" in r.reply and "8,000.00 元" in r.reply and "每月5日" in r.reply


def test_an_approval_with_a_card_on_file_does_not_ask(villager, db, home, app_ctx):
    register_card(villager)
    _approve(villager, db, home)
    assert not [t for t in _texts_to(db, VILLAGER) if "请回复“银行卡”" in t]


def test_no_card_number_in_any_outgoing_message_or_audit_row(villager, db, home, app_ctx):
    register_card(villager)
    villager.text(VILLAGER, "换卡")
    villager.text(VILLAGER, CARD2)
    villager.text(VILLAGER, "中国银行")
    villager.text(VILLAGER, "1")
    villager.text(VILLAGER, "确认")
    with db.session() as s:
        texts = [json.dumps(m.payload, ensure_ascii=False)
                 for m in s.scalars(select(OutboxMessage))]
        texts += [json.dumps([a.before, a.after], ensure_ascii=False)
                  for a in s.scalars(select(AuditLog))]
        texts += [json.dumps(d.data) for d in s.scalars(select(DialogueState))]
        texts += [json.dumps(i.reply, ensure_ascii=False)
                  for i in s.scalars(select(InboundMessage))]
    assert any(CARD2[-4:] in t for t in texts)
    blob = "\n".join(texts)
    assert CARD not in blob and CARD2 not in blob
