"""The `银行卡` dialogue (SPEC): card number, bank's name, account holder — in that order — then the
card masked and `确认`. Also entered by `换卡`.

How the bot "starts it itself after an approval": WeChat lets an official account answer a
message and push notices, but not put a user into a conversation. So when a claim is approved
and the household has no active card, the approval is followed by a push (bankcard_needed) asking
the user to reply `银行卡`; that reply starts this dialogue. The same happens after a bounced
transfer (core.payouts.record_failure). `银行卡 6222…` with the number in the same message skips
the first question.

The card number never rests in plain text: the dialogue keeps it encrypted in its state.
"""
from __future__ import annotations

from core import bankcards
from core.bankcards import BankCardError
from core.crypto import mask_card, mask_name
from core.households import household_for_user
from core.messages import render
from core.models import Household, Member
from core.payouts import payout_day_for
from handlers.dialogue import Dialogue, register, say
from handlers.types import Ctx, Incoming

WORDS = ("银行卡", "换卡", "登记银行卡", "绑定银行卡")
CONFIRM_WORDS = ("确认", "确定")


def _household(ctx: Ctx) -> Household | None:
    return household_for_user(ctx.session, ctx.openid)


def _members(household: Household) -> list[str]:
    return [mask_name(m.name) for m in household.members]


def entry(ctx: Ctx, msg: Incoming, data: dict):
    household = _household(ctx)
    if household is None:
        return say(render("bankcard_no_household"))
    parts = msg.text.split(maxsplit=1)
    if len(parts) == 2 and parts[0] in WORDS:  # 银行卡 6222 0212 …
        return number(ctx, Incoming(**{**msg.__dict__, "text": parts[1]}), {})
    current = bankcards.active_card(ctx.session, household.id)
    return say(render("bankcard_ask_number", current=current), state="number")


def number(ctx: Ctx, msg: Incoming, data: dict):
    household = _household(ctx)
    if household is None:
        return say(render("bankcard_no_household"))
    try:
        card_number = bankcards.validate_number(msg.text)
    except BankCardError as e:
        return say(render("bankcard_bad_number", why=e.code, **e.details), state="number",
                   data=data)
    masked = mask_card(card_number)
    if bankcards.is_active_number(ctx.session, ctx.vault, household.id, card_number):
        return say(render("bankcard_same", masked=masked))
    data = {"number_enc": ctx.vault.encrypt(card_number), "masked": masked}
    return say(render("bankcard_ask_bank", masked=masked), state="bank", data=data)


def bank(ctx: Ctx, msg: Incoming, data: dict):
    household = _household(ctx)
    if household is None:
        return say(render("bankcard_no_household"))
    try:
        name = bankcards.validate_bank(msg.text)
    except BankCardError:
        return say(render("bankcard_bad_bank", text=msg.text[:20]), state="bank", data=data)
    data = {**data, "bank": name}
    return say(render("bankcard_ask_holder", members=_members(household)), state="holder",
               data=data)


def holder(ctx: Ctx, msg: Incoming, data: dict):
    household = _household(ctx)
    if household is None:
        return say(render("bankcard_no_household"))
    try:
        member = bankcards.find_holder(household, msg.text)
    except BankCardError:
        return say(render("bankcard_bad_holder", text=mask_name(msg.text[:10]),
                          members=_members(household)), state="holder", data=data)
    current = bankcards.active_card(ctx.session, household.id)
    data = {**data, "holder_member_id": member.id}
    return say(render("bankcard_confirm", bank=data["bank"], masked=data["masked"],
                      holder=mask_name(member.name),
                      replacing=current.number_masked if current else None),
               state="confirm", data=data)


def confirm(ctx: Ctx, msg: Incoming, data: dict):
    household = _household(ctx)
    if household is None:
        return say(render("bankcard_no_household"))
    member = ctx.session.get(Member, data.get("holder_member_id"))
    if msg.text not in CONFIRM_WORDS or member is None:
        return say(render("bankcard_confirm", bank=data["bank"], masked=data["masked"],
                          holder=mask_name(member.name) if member else "",
                          replacing=None), state="confirm", data=data)
    card_number = ctx.vault.decrypt(data["number_enc"])
    card = bankcards.add_card(ctx.session, ctx.vault, household, card_number, data["bank"],
                              member, ctx.openid)
    waiting = bankcards.waiting_claims(ctx.session, household.id)
    return say(render("bankcard_saved", bank=card.bank_name, masked=card.number_masked,
                      holder=mask_name(member.name), waiting=len(waiting),
                      waiting_fen=sum(c.amount_fen or 0 for c in waiting),
                      payout_day=payout_day_for(ctx.session, household.pool_id, ctx.today)))


register(Dialogue(
    name="bankcard",
    entry=entry,
    states={"number": number, "bank": bank, "holder": holder, "confirm": confirm},
    words=WORDS,
))
