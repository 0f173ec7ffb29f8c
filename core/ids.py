"""Resident ID numbers and phone numbers: checking what a villager or a village list gives.

`check_id(text, today)` accepts an 18-digit resident ID number (居民身份证号) when python-stdnum's
`cn.ric` finds the length, digits, MOD 11-2 check digit and birth date right, the first two digits
name a province, and the birth date is not after `today` (nor more than 130 years before it).

Why not `ric.validate` itself: it also requires the six-digit area code to have existed *in the
person's birth year*. Cards were issued from 1985 on, with the area code of that time, so most
people born before their county's code was assigned (e.g. everyone in 张家港 born before 1989,
code 320582 "[1989-]") would be refused — a third of the members of a rural fund are over 60.
The check digit already catches every single wrong digit and every swap of two neighbours.

Errors are `IdError` with a stable `code` (`length`, `format`, `checksum`, `birth_date`,
`future`, `too_old`, `province`) that templates turn into Chinese.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from stdnum import numdb
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from core.errors import DomainError

ID_LENGTH = 18
MAX_AGE_YEARS = 130
_SEPARATORS = re.compile(r"[\s\-，,。.]")
_PHONE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")
_LANDLINE = re.compile(r"^(0\d{2,3})-?(\d{7,8})$")

ID_ERRORS = ("length", "format", "checksum", "birth_date", "future", "too_old", "province")


class IdError(DomainError, ValueError):
    """An ID number that is not one; `code` says why (templates/import_texts.yaml `id.<code>` words it)."""


@dataclass(frozen=True)
class IdNumber:
    number: str  # 18 characters, digits and a final digit or X
    birth_date: date


_provinces: frozenset[str] | None = None


def provinces() -> frozenset[str]:
    """The two-digit province codes of stdnum's table of area codes."""
    global _provinces
    if _provinces is None:
        db = numdb.get("cn/loc")
        _provinces = frozenset(p for p in (f"{n:02d}" for n in range(10, 100))
                               if any(props for _part, props in db.info(p + "0000")[:1]))
    return _provinces


def normalise_id(text: str) -> str:
    """Full-width digits to half-width, spaces and dashes dropped, x to X."""
    text = (text or "").translate(_FULLWIDTH)
    return _SEPARATORS.sub("", text).upper()


# full-width digits and X, and the digits of a voice message's recognition (三二零五…幺)
_FULLWIDTH = ({0xFF10 + i: 0x30 + i for i in range(10)} | {0xFF38: 0x58, 0xFF58: 0x58}
              | {ord(c): ord(str(i)) for i, c in enumerate("零一二三四五六七八九")}
              | {ord("〇"): ord("0"), ord("幺"): ord("1"), ord("两"): ord("2"),
                 ord("叉"): ord("X")})


def check_id(text: str, today: date) -> IdNumber:
    """The ID number, normalised, with its birth date; raises IdError(code)."""
    number = normalise_id(text)
    if len(number) != ID_LENGTH:
        raise IdError("length")
    if not number[:-1].isdigit() or not (number[-1].isdigit() or number[-1] == "X") \
            or not number.isascii():
        raise IdError("format")
    if number[-1] != ric.calc_check_digit(number):
        raise IdError("checksum")
    try:
        born = ric.get_birth_date(number)
    except ValidationError:
        raise IdError("birth_date")
    if born > today:
        raise IdError("future")
    if today.year - born.year > MAX_AGE_YEARS:
        raise IdError("too_old")
    if number[:2] not in provinces():
        raise IdError("province")
    return IdNumber(number, born)


def birth_date_of(number: str) -> date:
    """The birth date written in a (checked) ID number: the database keeps only the year in
    plain; a rule that needs the day decrypts the number and asks here."""
    return ric.get_birth_date(normalise_id(number))


def is_valid_id(text: str, today: date) -> bool:
    try:
        check_id(text, today)
        return True
    except IdError:
        return False


def check_phone(text: str) -> str | None:
    """A mainland mobile number (11 digits from 13–19, +86 allowed) or a landline with its area
    code (0512-58881234); the normalised number, or None."""
    t = (text or "").translate(_FULLWIDTH)
    t = re.sub(r"[\s()（）]", "", t)
    m = _PHONE.match(t.replace("-", ""))
    if m:
        return m.group(1)
    m = _LANDLINE.match(t)
    if m:
        return f"{m.group(1)}-{m.group(2)}"
    return None
