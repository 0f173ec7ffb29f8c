"""Chinese working days: the review of a claim is due `review_working_days` working days after it
was submitted (SPEC "Claim": 5 working days, Chinese holidays respected).

Working days come from `chinese_calendar` (the State Council's yearly holiday notice: public
holidays off, make-up working days — 调休, often a Saturday or Sunday — on). For a year the
installed `chinese_calendar` does not know yet (it is updated each December when the next year's
notice is published), Monday to Friday count, less the holidays fixed by date in the national
rules (元旦 1 January, 劳动节 1–2 May, 国庆节 1–3 October); a warning is logged once so the
operator upgrades the package.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import chinese_calendar

from core.defaults import REVIEW_WORKING_DAYS

log = logging.getLogger("huzhu.workdays")

# holidays fixed by date (《全国年节及纪念日放假办法》); the lunar ones need the yearly notice
_FIXED_HOLIDAYS = {(1, 1), (5, 1), (5, 2), (10, 1), (10, 2), (10, 3)}
_warned: set[int] = set()


def is_workday(day: date) -> bool:
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        if day.year not in _warned:
            _warned.add(day.year)
            log.warning("chinese_calendar has no holiday data for %s: counting Monday to Friday "
                        "less the fixed-date holidays; upgrade chinesecalendar", day.year)
        return day.weekday() < 5 and (day.month, day.day) not in _FIXED_HOLIDAYS


def add_working_days(start: date, days: int) -> date:
    """The `days`-th working day after `start` (`start` itself never counts, whether it is a
    working day or not). add_working_days(2025-09-30, 5) = 2025-10-14: 1–8 October are the
    National Day holiday and Saturday 11 October is a make-up working day."""
    if days < 0:
        raise ValueError("days must not be negative")
    if isinstance(start, datetime):
        start = start.date()
    day, left = start, days
    while left:
        day += timedelta(days=1)
        if is_workday(day):
            left -= 1
    return day


def review_due_date(submitted_on: date | datetime,
                    working_days: int = REVIEW_WORKING_DAYS) -> date:
    """The date by which a claim submitted on `submitted_on` (local date) must be reviewed."""
    if isinstance(submitted_on, datetime):
        submitted_on = submitted_on.date()
    return add_working_days(submitted_on, working_days)
