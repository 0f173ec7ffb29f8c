"""Facts as the reviewer states them, typed: the DRG group, the out-of-pocket amount, the stay's
dates, the insurance type, the hospital; the readers of each value (from the reviewer's text
or the OCR read-out) and `make_facts`, which checks them together. The order of the /核定
command's arguments is the handler's (handlers/review_grammar.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from core.models import Claim
from core.review.errors import ReviewError


INSURANCE_WORDS = {
    "居民医保": "resident", "居民": "resident", "城乡居民医保": "resident", "resident": "resident",
    "职工医保": "employee", "职工": "employee", "城镇职工医保": "employee", "employee": "employee",
    "未参保": "uninsured", "无医保": "uninsured", "uninsured": "uninsured",
}
_CLAIM_NUMBER = re.compile(r"^C\d{8,14}$")
_DRG = re.compile(r"^[A-Z][A-Z0-9.\-]{1,15}$")
_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")
HOSPITAL_MAX = 128
TEXT_MAX = 300


@dataclass(frozen=True)
class Facts:
    drg_code: str
    out_of_pocket_fen: int
    admission_date: date
    discharge_date: date
    insurance: str  # resident | employee | uninsured
    hospital: str | None = None

    def to_json(self) -> dict:
        return {"drg_code": self.drg_code, "out_of_pocket_fen": self.out_of_pocket_fen,
                "admission_date": self.admission_date.isoformat(),
                "discharge_date": self.discharge_date.isoformat(),
                "insurance": self.insurance, "hospital": self.hospital}


def parse_claim_number(text: str) -> str:
    number = text.strip().upper()
    if not _CLAIM_NUMBER.match(number):
        raise ReviewError("unknown_claim", number=text.strip())
    return number


def parse_drg(text: str) -> str:
    code = text.strip().upper()
    if not _DRG.match(code):
        raise ReviewError("bad_drg", value=text)
    return code


def parse_amount(text: str) -> int:
    from core.money import parse_yuan

    try:
        return parse_yuan(text)
    except ValueError:
        raise ReviewError("bad_amount", value=text)


def parse_date(text: str, what: str) -> date:
    m = _DATE.match(text.strip())
    try:
        if not m:
            raise ValueError
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise ReviewError("bad_date", value=text, what=what)


def parse_insurance(text: str) -> str:
    value = INSURANCE_WORDS.get(text.strip()) or INSURANCE_WORDS.get(text.strip().lower())
    if value is None:
        raise ReviewError("bad_insurance", value=text)
    return value


def check_dates(admission: date, discharge: date, today: date) -> None:
    if discharge < admission:
        raise ReviewError("dates_order", admission=admission, discharge=discharge)
    if discharge > today:
        raise ReviewError("future_date", value=discharge)



def make_facts(drg_code: str, out_of_pocket_fen: int, admission: date, discharge: date,
               insurance: str, hospital: str | None, today: date) -> Facts:
    """The facts from typed values, checked together: the stay's dates in order and not after
    today, the hospital's name not too long."""
    check_dates(admission, discharge, today)
    if hospital and len(hospital) > HOSPITAL_MAX:
        raise ReviewError("text_too_long", limit=HOSPITAL_MAX)
    return Facts(drg_code, out_of_pocket_fen, admission, discharge, insurance, hospital)


def stored_facts(claim: Claim) -> Facts | None:
    """The facts a /核定 recorded on the claim, or None before any."""
    if (claim.drg_code is None or claim.out_of_pocket_fen is None
            or claim.admission_date is None or claim.discharge_date is None
            or claim.insurance is None):
        return None
    return Facts(claim.drg_code, claim.out_of_pocket_fen, claim.admission_date,
                 claim.discharge_date, claim.insurance.value, claim.hospital)
