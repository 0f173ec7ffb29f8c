"""The /核定 command's grammar: which argument is which, read into the typed facts of
core.review (each value read by core's readers, the facts checked together by
`core.review.make_facts`).

    /核定 <申请号> <病种>                                        the short form: the rest from the
                                                                photos' read-out
    /核定 <申请号> <病种> <自付金额> <入院日期> <出院日期> <医保类型> [医院…]   the full form

Bad input raises core.review.ReviewError (bad_args, bad_drg, bad_amount, bad_date, bad_insurance,
dates_order, future_date, text_too_long), worded by the handler's refusal.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Sequence

from core.review import (Facts, ReviewError, make_facts, parse_amount, parse_date, parse_drg,
                         parse_insurance)


@dataclass(frozen=True)
class RecordForm:
    drg_code: str
    facts: Facts | None  # the full form's facts; None: the short form (facts from the read-out)

    @property
    def short(self) -> bool:
        return self.facts is None


def parse_record(args: Sequence[str], today: date) -> RecordForm:
    """The /核定 arguments after the claim number: the short form (the DRG group alone) or the
    full form."""
    if len(args) == 1:
        return RecordForm(parse_drg(args[0]), None)
    facts = parse_facts(args, today)
    return RecordForm(facts.drg_code, facts)


def parse_facts(args: Sequence[str], today: date) -> Facts:
    """The full form's arguments after the claim number:
    DRG out_of_pocket admission discharge insurance [hospital…]."""
    if len(args) < 5:
        raise ReviewError("bad_args")
    drg = parse_drg(args[0])
    amount = parse_amount(args[1])
    admission = parse_date(args[2], "入院日期")
    discharge = parse_date(args[3], "出院日期")
    insurance = parse_insurance(args[4])
    hospital = " ".join(args[5:]).strip() or None
    return make_facts(drg, amount, admission, discharge, insurance, hospital, today)
