"""Test data made through the models, for areas whose own dialogues are not under test.

`make_household` builds a household of the demo pool with its members, enrolments for the
current scheme year (paid or pending) and a head link to an openid.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from stdnum.cn import ric

from core.crypto import PersonalDataVault, mask_id
from core.models import (Enrolment, EnrolmentStatus, Household, HouseholdLink, InsuranceType,
                         LinkRole, Member, Relation, SchemeYear, Village, utcnow)
from core.scheme import scheme_year_on

def local_today() -> date:
    """Today in the product's time zone (config TIMEZONE default), which is what the bot uses:
    the machine's own date is UTC and is a day behind between 16:00 and 24:00 UTC."""
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


_seq = itertools.count(101)
_hh = itertools.count(900001)


def make_id(birth: date = date(1960, 5, 17), area: str = "320582") -> str:
    """A valid 18-digit resident ID number (MOD 11-2) for a birth date."""
    body = f"{area}{birth:%Y%m%d}{next(_seq) % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")  # it reads the first 17 digits


@dataclass
class M:
    name: str
    relation: str = "head"
    insurance: str = "resident"
    category: str | None = None
    birth: date = date(1960, 5, 17)
    id_number: str | None = None


def make_household(session, vault: PersonalDataVault, members: list[M] | None = None,
                   village: str | None = None, openid: str | None = None,
                   enrolment: str | None = "paid", today: date | None = None,
                   year: SchemeYear | None = None) -> Household:
    members = members or [M("王大山")]
    v = (session.scalar(select(Village).where(Village.full_name == village)) if village
         else session.scalars(select(Village).order_by(Village.id)).first())
    hh = Household(number=f"H{next(_hh)}", pool_id=v.pool_id, village_id=v.id, 
                   phone_enc=vault.encrypt("13800000000"), phone_masked="138****0000")
    session.add(hh)
    session.flush()
    year = year or scheme_year_on(session, v.pool_id, today or local_today())
    for m in members:
        idn = m.id_number or make_id(m.birth)
        mem = Member(household_id=hh.id, name=m.name, id_number_enc=vault.encrypt(idn),
                     id_number_hash=vault.lookup_hash(idn), id_number_masked=mask_id(idn),
                     birth_year=m.birth.year, relation=Relation(m.relation),
                     insurance=InsuranceType(m.insurance), category=m.category)
        session.add(mem)
        session.flush()
        m.id_number = idn
        if enrolment and year is not None:
            session.add(Enrolment(member_id=mem.id, scheme_year_id=year.id,
                                  id_number_hash=mem.id_number_hash,
                                  status=EnrolmentStatus(enrolment),
                                  paid_at=utcnow() if enrolment == "paid" else None))
    if openid:
        session.add(HouseholdLink(household_id=hh.id, openid=openid, role=LinkRole.head))
    session.flush()
    return hh


_claim_seq = itertools.count(70000001)
ALL_KINDS = ("discharge_record", "itemized_bill", "settlement_sheet")


def make_claim(session, household: Household, member: Member | None = None,
               status: str = "submitted", documents=ALL_KINDS, due_date: date | None = None,
               **fields):
    """A claim made directly with the models (the photo dialogue is not under test): one
    document per kind in `documents` (with a made-up sha256), submitted now, due in a week unless
    `due_date` is given; `fields` set any other Claim column (ocr, flags, stated, amount_fen…)."""
    import hashlib
    from datetime import timedelta

    from core.models import Claim, ClaimDocument, ClaimStatus, DocumentKind

    member = member or household.members[0]
    number = f"C{next(_claim_seq):08d}"
    year = scheme_year_on(session, household.pool_id, local_today())
    claim = Claim(number=number, household_id=household.id, member_id=member.id,
                  scheme_year_id=year.id if year else None, status=ClaimStatus(status),
                  submitted_at=utcnow() if status != "collecting" else None,
                  due_date=due_date or local_today() + timedelta(days=7), **fields)
    session.add(claim)
    session.flush()
    for i, kind in enumerate(documents):
        digest = hashlib.sha256(f"{number}:{kind}:{i}".encode()).hexdigest()
        session.add(ClaimDocument(claim_id=claim.id, kind=DocumentKind(kind),
                                  media_id=f"media-{number}-{i}", sha256=digest, size=1000,
                                  content_type="image/jpeg", source_key=f"test:{number}:{i}"))
    session.flush()
    return claim
