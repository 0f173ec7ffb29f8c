"""Bank cards: where a household's subsidies are paid (SPEC dialogue `银行卡`).

A card number is 16–19 digits with a valid Luhn check digit (python-stdnum `stdnum.luhn`). It is
stored encrypted (the vault), beside a keyed hash and a masked form (`***************1234`); the
plain number is decrypted only to write the bank transfer file. The account holder must be a
member of the household. A household has at most one active card (a partial unique index says
so): saving a new card deactivates the old one. A bounced transfer deactivates the card it went to
(`deactivate`), and the household is asked for a new one.

After an approval, a household with no active card is asked to send `银行卡` (`ask_for_card`, called
by `core.claims.transition`): WeChat lets the bot answer a message but not open a conversation, so
the push asks for the word and the user's reply starts the dialogue (handlers/bankcard.py).
"""
from __future__ import annotations

import re

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from stdnum import luhn

from core.audit import audit
from core.crypto import PersonalDataVault, mask_card, mask_name
from core.defaults import REASON_MAX
from core.errors import DomainError
from core.models import BankCard, Claim, ClaimStatus, Household, Member, utcnow
from core.notify import notify_household

MIN_DIGITS, MAX_DIGITS = 16, 19

# what villagers call their bank -> the name the bank file carries (parsing table, not replies)
BANK_ALIASES = {
    "农行": "中国农业银行", "农业银行": "中国农业银行",
    "工行": "中国工商银行", "工商银行": "中国工商银行",
    "建行": "中国建设银行", "建设银行": "中国建设银行",
    "中行": "中国银行",
    "交行": "交通银行",
    "邮储": "中国邮政储蓄银行", "邮政": "中国邮政储蓄银行", "邮储银行": "中国邮政储蓄银行",
    "邮政储蓄银行": "中国邮政储蓄银行", "邮政银行": "中国邮政储蓄银行",
    "农商行": "农村商业银行", "农村信用社": "农村信用合作社", "信用社": "农村信用合作社",
}
_BANK_RE = re.compile(r"^[\u4e00-\u9fffA-Za-z（）()·]{2,30}$")


class BankCardError(DomainError, ValueError):
    """A card, bank or holder that cannot be accepted; `code` names why (templates word it):
    not_digits, too_short, too_long, bad_check_digit, bad_bank, not_member."""


def normalise_number(text: str) -> str:
    """Digits of a typed card number: spaces and dashes (as printed on cards) are dropped."""
    return re.sub(r"[\s\-－—]", "", text or "")


def validate_number(text: str) -> str:
    """The card number as digits, or BankCardError: 16–19 digits with a valid Luhn digit."""
    number = normalise_number(text)
    if not number.isascii() or not number.isdigit():
        raise BankCardError("not_digits")
    if len(number) < MIN_DIGITS:
        raise BankCardError("too_short", length=len(number))
    if len(number) > MAX_DIGITS:
        raise BankCardError("too_long", length=len(number))
    if not luhn.is_valid(number):
        raise BankCardError("bad_check_digit")
    return number


def validate_bank(text: str) -> str:
    """The bank's name as the bank file carries it (农行 → 中国农业银行)."""
    name = (text or "").strip().replace(" ", "")
    if not _BANK_RE.match(name):
        raise BankCardError("bad_bank")
    return BANK_ALIASES.get(name, name)


def find_holder(household: Household, answer: str) -> Member:
    """The member named by `answer`: the number of the list shown (1, 2 …) or the full name."""
    members = list(household.members)
    answer = (answer or "").strip()
    if answer.isdigit() and 1 <= int(answer) <= len(members):
        return members[int(answer) - 1]
    for m in members:
        if m.name == answer:
            return m
    raise BankCardError("not_member")


def active_card(session: Session, household_id: int) -> BankCard | None:
    return session.scalar(select(BankCard).where(BankCard.household_id == household_id,
                                                 BankCard.active.is_(True)))


def is_active_number(session: Session, vault: PersonalDataVault, household_id: int,
                     number: str) -> bool:
    card = active_card(session, household_id)
    return card is not None and card.number_hash == vault.lookup_hash(number)


def add_card(session: Session, vault: PersonalDataVault, household: Household, number: str,
             bank_name: str, holder: Member, actor: str) -> BankCard:
    """Save the household's new active card (the old one, if any, is deactivated), audited.
    `number` is checked again here, so no caller can store a bad one."""
    number = validate_number(number)
    bank_name = validate_bank(bank_name)
    if holder.household_id != household.id:
        raise BankCardError("not_member")
    old = active_card(session, household.id)
    if old is not None:
        session.execute(update(BankCard).where(BankCard.household_id == household.id,
                                               BankCard.active.is_(True)).values(active=False))
        session.expire(old)
    card = BankCard(household_id=household.id, number_enc=vault.encrypt(number),
                    number_hash=vault.lookup_hash(number), number_masked=mask_card(number),
                    bank_name=bank_name, holder_member_id=holder.id, active=True,
                    created_at=utcnow())
    session.add(card)
    session.flush()
    audit(session, actor, "bank_card.add", "household", household.number,
          {"card": old.number_masked, "bank": old.bank_name} if old is not None else None,
          {"card": card.number_masked, "bank": card.bank_name, "holder": mask_name(holder.name)})
    return card


def deactivate(session: Session, card: BankCard, actor: str, reason: str) -> None:
    if not card.active:
        return
    card.active = False
    household = session.get(Household, card.household_id)
    audit(session, actor, "bank_card.deactivate", "household", household.number if household
          else card.household_id, {"card": card.number_masked, "active": True},
          {"card": card.number_masked, "active": False, "reason": reason[:REASON_MAX]})
    session.flush()


def holder_name(session: Session, card: BankCard) -> str:
    member = session.get(Member, card.holder_member_id)
    return member.name if member is not None else ""


def ask_for_card(session: Session, claim: Claim) -> bool:
    """After an approval: a household with no active card is asked to send `银行卡`.
    Returns whether it was asked."""
    if active_card(session, claim.household_id) is not None:
        return False
    notify_household(session, claim.household_id, "bankcard_needed", claim=claim)
    return True


def waiting_claims(session: Session, household_id: int) -> list[Claim]:
    """The household's approved claims, which the next payout will pay to the active card."""
    return list(session.scalars(select(Claim).where(
        Claim.household_id == household_id, Claim.status == ClaimStatus.approved)
        .order_by(Claim.id)))
