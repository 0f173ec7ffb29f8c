"""Households: look-ups shared by every dialogue, registration, newborns, relatives as proxies.

A household joins as a whole, once per scheme year, inside its pool's enrolment window:
`register_household` writes the Household (number `H` + 8 digits), its Members (ID number
encrypted by the vault, keyed hash, masked copy), one `pending` Enrolment per member for the
enrolment scheme year, the head's HouseholdLink and an audit row — in the caller's transaction.
A person (by ID) is in at most one household per pool and year: the enrolment's unique
(scheme_year_id, id_number_hash) holds it, and the services check it first to say which household.

`add_member` adds a member later: any member while the window is open, only a newborn (born
inside the running scheme year) outside it. `renew_household` enrols last year's members again.

Relatives as proxies: the head makes a 6-digit code valid 24 hours (`create_proxy_code`), the
relative binds with it (`bind_proxy`) and may then pay, claim and query for the household; the
head lists (`proxies`) and removes (`remove_proxy`) them.

Errors are `HouseholdError(code, **info)`; templates under templates/messages/ word them.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from sqlalchemy import Table, bindparam, case, func, select, text
from sqlalchemy.orm import Session

from core import attempts, scheme_years
from core.audit import audit
from core.crypto import PersonalDataVault, mask_id, mask_name, mask_phone
from core.errors import DomainError
from core.messages import render
from core.models import (Enrolment, EnrolmentStatus, Household, HouseholdLink,
                         InsuranceType, LinkRole, Member, ProxyCode, Relation, SchemeYear, Village)
from core.outbox import as_utc, send_text
from core.scheme import Scheme

# ---------------------------------------------------------------------------------------------
# Words people use (chat and village lists) -> stored values.

RELATION_WORDS: dict[str, Relation] = {
    "户主": Relation.head, "本人": Relation.head,
    "配偶": Relation.spouse, "妻": Relation.spouse, "妻子": Relation.spouse,
    "夫": Relation.spouse, "丈夫": Relation.spouse, "爱人": Relation.spouse,
    "老伴": Relation.spouse,
    "子女": Relation.child, "子": Relation.child, "女": Relation.child, "儿子": Relation.child,
    "女儿": Relation.child, "长子": Relation.child, "次子": Relation.child,
    "长女": Relation.child, "次女": Relation.child,
    "父母": Relation.parent, "父亲": Relation.parent, "母亲": Relation.parent,
    "父": Relation.parent, "母": Relation.parent,
    "其他": Relation.other, "孙子": Relation.other, "孙女": Relation.other,
    "儿媳": Relation.other, "女婿": Relation.other, "兄弟姐妹": Relation.other,
    "兄弟": Relation.other, "姐妹": Relation.other, "祖父母": Relation.other,
    "外孙子": Relation.other, "外孙女": Relation.other,
}
RELATION_LABELS = {Relation.head: "户主", Relation.spouse: "配偶", Relation.child: "子女",
                   Relation.parent: "父母", Relation.other: "其他"}

INSURANCE_WORDS: dict[str, InsuranceType] = {
    "居民医保": InsuranceType.resident, "城乡居民医保": InsuranceType.resident,
    "居民": InsuranceType.resident, "城乡居民": InsuranceType.resident,
    "新农合": InsuranceType.resident,
    "职工医保": InsuranceType.employee, "职工": InsuranceType.employee,
    "城镇职工医保": InsuranceType.employee,
    "未参保": InsuranceType.uninsured, "无": InsuranceType.uninsured,
    "没有": InsuranceType.uninsured, "未参加": InsuranceType.uninsured,
}
INSURANCE_LABELS = {InsuranceType.resident: "居民医保", InsuranceType.employee: "职工医保",
                    InsuranceType.uninsured: "未参保"}

# categories of people (人员类别) a village list may give; a scheme's own subsidized and
# excluded names are accepted too
KNOWN_CATEGORIES = ("低保", "特困", "低保边缘", "孤儿", "返贫监测", "支出型贫困", "建档立卡",
                    "五保", "残疾", "优抚")
CATEGORY_SYNONYMS = {"低边": "低保边缘", "特困供养": "特困", "低收入": "低保边缘"}

NAME_MAX = 20
PROXY_CODE_TTL = timedelta(hours=24)
LABEL_MAX = 12


class HouseholdError(DomainError):
    """A registration, member or proxy change is refused; nothing was written."""


@dataclass
class NewMember:
    name: str
    id_number: str  # normalised and checked (core.ids.check_id)
    birth_date: date
    relation: Relation
    insurance: InsuranceType
    category: str | None = None

    def masked(self) -> dict:
        return {"name": mask_name(self.name), "id_number": mask_id(self.id_number),
                "relation": self.relation.value, "insurance": self.insurance.value,
                "category": self.category}


# ---------------------------------------------------------------------------------------------
# Small rules.

def check_name(text: str) -> str | None:
    """A person's name: 1–20 characters, Chinese or letters (·, space and dots allowed inside),
    no digits; None if it is not a name."""
    name = " ".join((text or "").split())
    if not 1 <= len(name) <= NAME_MAX:
        return None
    if any(ch.isdigit() for ch in name):
        return None
    if not all(ch.isalpha() or ch in "·•. " for ch in name) or not name[0].isalpha():
        return None
    return name.replace("•", "·")


def normalise_category(text: str | None, scheme: Scheme | None = None) -> str | None:
    """人员类别 as written by a village (低保户, 特困人员…) -> the stored name, None for empty;
    ValueError for an unknown one."""
    value = (text or "").strip()
    if not value or value in ("无", "否", "-", "—", "一般", "普通"):
        return None
    known = set(KNOWN_CATEGORIES)
    if scheme is not None:
        known |= set(scheme.contribution.subsidized) | set(scheme.contribution.excluded)
    candidates = [value, CATEGORY_SYNONYMS.get(value, value)]
    for suffix in ("户", "人员", "对象", "供养人员", "供养"):
        if value.endswith(suffix) and len(value) > len(suffix):
            stem = value[: -len(suffix)]
            candidates += [stem, CATEGORY_SYNONYMS.get(stem, stem)]
    for c in candidates:
        if c in known:
            return c
    raise ValueError(value)


def known_categories(scheme: Scheme | None = None) -> list[str]:
    names = list(KNOWN_CATEGORIES)
    if scheme is not None:
        for c in (*scheme.contribution.subsidized, *scheme.contribution.excluded):
            if c not in names:
                names.append(c)
    return names


def personal_due_fen(scheme: Scheme, members: Iterable[Any], newborn: bool = False) -> int:
    """What the household itself pays for these members: the personal share of each member,
    except members of a subsidized category (its payer pays theirs); for newborns the scheme's
    newborn_share if it sets one. Members are objects with `.category` or dicts with
    "category". Raises ValueError for an excluded category."""
    total = 0
    share = scheme.enrolment.newborn_share_fen if newborn else None
    for m in members:
        category = m.get("category") if isinstance(m, dict) else getattr(m, "category", None)
        total += scheme.contribution.member_shares(category, share).get("personal", 0)
    return total


def household_number(household_id: int) -> str:
    return f"H{household_id:08d}"


def reserve_ids(session: Session, table: Table, n: int) -> list[int]:
    """`n` primary keys for rows inserted with explicit ids (bulk inserts, numbers made from
    ids). PostgreSQL: from the table's sequence. SQLite: after the largest id — safe because
    every SQLite transaction here begins IMMEDIATE (one writer at a time)."""
    if n <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        seq = session.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name})
        return list(session.scalars(text("SELECT nextval(CAST(:s AS regclass)) "
                                         "FROM generate_series(1, :n)"), {"s": seq, "n": n}))
    start = (session.scalar(select(func.max(table.c.id))) or 0) + 1
    return list(range(start, start + n))


# ---------------------------------------------------------------------------------------------
# Look-ups.

# Built once: nearly every villager's question starts here, and most askers have no household
# yet, so the look-up reads one id over the session's connection (no ORM objects) and loads the
# household only when there is one.
_HOUSEHOLD_OF = (select(HouseholdLink.household_id)
                 .where(HouseholdLink.openid == bindparam("openid"))
                 .order_by(case((HouseholdLink.role == LinkRole.head, 0), else_=1),
                           HouseholdLink.id.desc())
                 .limit(1))


def household_for_user(session: Session, openid: str) -> Household | None:
    """The household this WeChat user acts for: as its head first, else as a proxy (the newest
    link when a relative helps several households)."""
    if session.autoflush:
        session.flush()  # links added and not yet written count, as with an ORM query
    household_id = session.connection().scalar(_HOUSEHOLD_OF, {"openid": openid})
    return session.get(Household, household_id) if household_id is not None else None


def headed_household(session: Session, openid: str) -> Household | None:
    """The household this user is the head of (the newest, if several)."""
    return session.scalar(select(Household).join(HouseholdLink,
                                                 HouseholdLink.household_id == Household.id)
                          .where(HouseholdLink.openid == openid,
                                 HouseholdLink.role == LinkRole.head)
                          .order_by(HouseholdLink.id.desc()).limit(1))


def head_member(household: Household) -> Member | None:
    return next((m for m in household.members if m.relation is Relation.head),
                household.members[0] if household.members else None)


def enrolment_of(session: Session, year_id: int, id_hash: str) -> Enrolment | None:
    """The enrolment of a person (by ID hash) in a scheme year, whichever household."""
    return session.scalar(select(Enrolment).where(Enrolment.scheme_year_id == year_id,
                                                  Enrolment.id_number_hash == id_hash))


def household_enrolled(session: Session, household_id: int, year_id: int) -> bool:
    return session.scalar(select(func.count(Enrolment.id)).join(Member)
                          .where(Member.household_id == household_id,
                                 Enrolment.scheme_year_id == year_id)) > 0


def enrolments_in(session: Session, household_id: int, year_id: int) -> list[Enrolment]:
    return list(session.scalars(select(Enrolment).join(Member)
                                .where(Member.household_id == household_id,
                                       Enrolment.scheme_year_id == year_id)
                                .order_by(Member.id)))


def known_category(session: Session, pool_id: int, id_hash: str) -> str | None:
    """The category a person had in this pool before (a village list's 低保, 特困 …), if any."""
    return session.scalar(select(Member.category).join(Household)
                          .where(Member.id_number_hash == id_hash, Household.pool_id == pool_id)
                          .order_by(Member.id.desc()).limit(1))


def local_tz():
    from core.config import load_config

    return load_config(validate=False).tz


def cover_start(enrolment: Enrolment | None, year: SchemeYear, tz=None) -> date | None:
    """The first day of a member's cover in `year` (the scheme's `cover`: the year's start, or
    the day the payment was recorded plus the waiting days); None until paid."""
    if enrolment is None or enrolment.status is not EnrolmentStatus.paid:
        return None
    paid_on = (as_utc(enrolment.paid_at).astimezone(tz or local_tz()).date()
               if enrolment.paid_at is not None else year.start)
    return year.scheme.cover.starts(year.start, paid_on)


def already_registered_info(session: Session, enrolment: Enrolment) -> dict:
    """Which household someone is in, as a stranger may be told: number, village, masked head."""
    hh = enrolment.member.household
    head = head_member(hh)
    return {"household": hh.number, "village": hh.village.full_name,
            "head": mask_name(head.name) if head else "",
            "member": mask_name(enrolment.member.name)}


def window_info(session: Session, pool_id: int, today: date) -> dict:
    """For an 'outside the window' reply: the latest window that closed and the next one."""
    years = scheme_years.of_pool(session, pool_id, by="enrolment_opens")
    past = [y for y in years if y.enrolment_closes < today]
    future = [y for y in years if y.enrolment_opens > today]
    return {"last_opens": past[-1].enrolment_opens if past else None,
            "last_closes": past[-1].enrolment_closes if past else None,
            "next_opens": future[0].enrolment_opens if future else None,
            "next_closes": future[0].enrolment_closes if future else None}


# ---------------------------------------------------------------------------------------------
# Registration.

def _member_rows(session: Session, vault: PersonalDataVault, household_id: int,
                 members: Sequence[NewMember]) -> list[Member]:
    ids = reserve_ids(session, Member.__table__, len(members))
    rows = []
    for mid, m in zip(ids, members):
        row = Member(id=mid, household_id=household_id, name=m.name,
                     id_number_enc=vault.encrypt(m.id_number),
                     id_number_hash=vault.lookup_hash(m.id_number),
                     id_number_masked=mask_id(m.id_number), birth_year=m.birth_date.year,
                     relation=m.relation, insurance=m.insurance, category=m.category)
        session.add(row)
        rows.append(row)
    return rows


def _check_members(session: Session, vault: PersonalDataVault, year: SchemeYear,
                   members: Sequence[NewMember], household_id: int | None = None) -> None:
    scheme = year.scheme
    seen: set[str] = set()
    for m in members:
        if m.id_number in seen:
            raise HouseholdError("duplicate_id", id_number=mask_id(m.id_number),
                                 name=mask_name(m.name))
        seen.add(m.id_number)
        if not scheme.contribution.may_join(m.category):
            raise HouseholdError("excluded", name=mask_name(m.name), category=m.category)
        if m.insurance is InsuranceType.uninsured and scheme.enrolment.uninsured == "refused":
            raise HouseholdError("uninsured_refused", name=mask_name(m.name))
        found = enrolment_of(session, year.id, vault.lookup_hash(m.id_number))
        if found is not None and found.member.household_id != household_id:
            raise HouseholdError("already_registered", id_number=mask_id(m.id_number),
                                 **already_registered_info(session, found))
        if found is not None:
            raise HouseholdError("already_member", id_number=mask_id(m.id_number),
                                 name=mask_name(m.name))


def register_household(session: Session, vault: PersonalDataVault, *, village: Village,
                       members: Sequence[NewMember], phone: str | None, openid: str | None,
                       actor: str, today: date, year: SchemeYear | None = None) -> Household:
    """Register a household for the pool's enrolment scheme year (open on `today`, or `year`).
    The first member must be the head and the only one. Writes the household, members,
    pending enrolments, the head's link (when `openid`) and one audit row."""
    if year is None:
        year = scheme_years.enrolling(session, village.pool_id, today)
        if year is None:
            raise HouseholdError("window_closed", **window_info(session, village.pool_id, today))
    heads = [m for m in members if m.relation is Relation.head]
    if not members or len(heads) != 1 or members[0].relation is not Relation.head:
        raise HouseholdError("one_head")
    _check_members(session, vault, year, members)
    scheme = year.scheme
    (hid,) = reserve_ids(session, Household.__table__, 1)
    hh = Household(id=hid, number=household_number(hid), pool_id=village.pool_id,
                   village_id=village.id, phone_enc=vault.encrypt(phone) if phone else None,
                   phone_masked=mask_phone(phone), status="active",
                   awaits_village=scheme.enrolment.village_confirms)
    session.add(hh)
    session.flush()
    rows = _member_rows(session, vault, hh.id, members)
    session.flush()
    for row in rows:
        session.add(Enrolment(member_id=row.id, scheme_year_id=year.id,
                              id_number_hash=row.id_number_hash, status=EnrolmentStatus.pending))
    if openid:
        session.add(HouseholdLink(household_id=hh.id, openid=openid, role=LinkRole.head))
    due = personal_due_fen(scheme, members)
    audit(session, actor, "household.register", "household", hh.number, None, {
        "number": hh.number, "village": village.full_name, "scheme_year_id": year.id,
        "members": [m.masked() for m in members], "enrolment": "pending",
        "personal_due_fen": due, "phone": mask_phone(phone),
        "awaits_village": hh.awaits_village})
    if hh.awaits_village:
        from core.confirmations import ask_village_to_confirm

        ask_village_to_confirm(session, hh, year)
    session.flush()
    return hh


def renew_household(session: Session, vault: PersonalDataVault, household: Household,
                    year: SchemeYear, actor: str) -> list[Enrolment]:
    """Enrol an existing household's members again for a new scheme year (pending)."""
    if household_enrolled(session, household.id, year.id):
        raise HouseholdError("already_enrolled", household=household.number)
    scheme = year.scheme
    for m in household.members:
        if not scheme.contribution.may_join(m.category):
            raise HouseholdError("excluded", name=mask_name(m.name), category=m.category)
        if m.insurance is InsuranceType.uninsured and scheme.enrolment.uninsured == "refused":
            raise HouseholdError("uninsured_refused", name=mask_name(m.name))
        found = enrolment_of(session, year.id, m.id_number_hash)
        if found is not None:
            raise HouseholdError("already_registered", id_number=m.id_number_masked,
                                 **already_registered_info(session, found))
    rows = [Enrolment(member_id=m.id, scheme_year_id=year.id, id_number_hash=m.id_number_hash,
                      status=EnrolmentStatus.pending) for m in household.members]
    session.add_all(rows)
    household.awaits_village = scheme.enrolment.village_confirms
    audit(session, actor, "household.renew", "household", household.number, None, {
        "scheme_year_id": year.id, "members": [m.id_number_masked for m in household.members],
        "enrolment": "pending",
        "personal_due_fen": personal_due_fen(scheme, household.members),
        "awaits_village": household.awaits_village})
    session.flush()
    if household.awaits_village:
        from core.confirmations import ask_village_to_confirm

        ask_village_to_confirm(session, household, year)
    return rows


def member_year(session: Session, household: Household, born: date, today: date
                ) -> tuple[SchemeYear, bool]:
    """The scheme year a member added today joins, and whether it is as a newborn: the open
    enrolment year if the household is in it; else the running year, for a child born at most
    the scheme's `enrolment.newborn_days` days ago (0: nobody joins outside the window)."""
    open_year = scheme_years.enrolling(session, household.pool_id, today)
    if open_year is not None and household_enrolled(session, household.id, open_year.id):
        return open_year, False
    running = scheme_years.running(session, household.pool_id, today)
    if running is None or not household_enrolled(session, household.id, running.id):
        raise HouseholdError("not_enrolled", household=household.number,
                             **window_info(session, household.pool_id, today))
    days = running.scheme.enrolment.newborn_days
    if not days or not 0 <= (today - born).days <= days:
        raise HouseholdError("not_newborn", year_start=running.start, year_end=running.end,
                             newborn_days=days, earliest=today - timedelta(days=days),
                             **window_info(session, household.pool_id, today))
    return running, True


def add_member(session: Session, vault: PersonalDataVault, household: Household,
               member: NewMember, actor: str, today: date) -> Enrolment:
    """Add a member to a registered household: while the window is open anyone, outside it a
    newborn of the running scheme year. The enrolment is pending until its share is paid."""
    if member.relation is Relation.head:
        raise HouseholdError("one_head")
    year, newborn = member_year(session, household, member.birth_date, today)
    _check_members(session, vault, year, [member], household_id=household.id)
    if any(m.id_number_hash == vault.lookup_hash(member.id_number) for m in household.members):
        raise HouseholdError("already_member", id_number=mask_id(member.id_number),
                             name=mask_name(member.name))
    (row,) = _member_rows(session, vault, household.id, [member])
    session.flush()
    enrolment = Enrolment(member_id=row.id, scheme_year_id=year.id,
                          id_number_hash=row.id_number_hash, status=EnrolmentStatus.pending,
                          newborn=newborn)
    session.add(enrolment)
    audit(session, actor, "household.add_member", "household", household.number, None, {
        "member": member.masked(), "scheme_year_id": year.id, "newborn": newborn,
        "enrolment": "pending",
        "personal_due_fen": personal_due_fen(year.scheme, [member], newborn=newborn)})
    session.flush()
    session.refresh(household, ["members"])
    return enrolment


# ---------------------------------------------------------------------------------------------
# Relatives as proxies.

@dataclass
class ProxyView:
    index: int  # 1-based, as listed to the head
    link_id: int
    label: str
    since: datetime


def create_proxy_code(session: Session, household: Household, openid: str, label: str,
                      now: datetime) -> ProxyCode:
    """A 6-digit code, valid 24 hours, for a relative to bind to the household with
    `绑定 <code>`. Unique among the codes still usable; the head's older unused codes stay valid
    until they run out."""
    now = _utc(now)
    label = (label or "").strip()[:LABEL_MAX] or None
    live = set(session.scalars(select(ProxyCode.code).where(ProxyCode.used_by.is_(None),
                                                            ProxyCode.expires_at > now)))
    while True:
        code = f"{secrets.randbelow(10**6):06d}"
        if code not in live:
            break
    row = ProxyCode(code=code, household_id=household.id, created_by=openid,
                    expires_at=now + PROXY_CODE_TTL, label=label)
    session.add(row)
    audit(session, openid, "proxy.code", "household", household.number, None,
          {"label": label, "expires_at": row.expires_at.isoformat()})
    session.flush()
    return row


def _utc(now: datetime) -> datetime:
    """Stored timestamps are UTC (SQLite keeps them without a zone): compare in UTC."""
    return now.astimezone(timezone.utc) if now.tzinfo else now.replace(tzinfo=timezone.utc)


def bind_proxy(session: Session, openid: str, code: str, now: datetime) -> HouseholdLink:
    """Bind the user as a proxy of the code's household. Refusals (bad, expired or used code;
    the user's own household; already bound; too many tries) raise HouseholdError, and the
    caller audits them with `audit_bind_refusal` in its own transaction."""
    now = _utc(now)
    if attempts.lock_of(session, attempts.PROXY_CODE, openid, now) is not None:
        raise HouseholdError("too_many_attempts")  # 5 wrong codes within the hour
    if not (len(code) == 6 and code.isdigit()):
        raise HouseholdError("bad_code")
    row = session.scalar(select(ProxyCode).where(ProxyCode.code == code)
                         .order_by(ProxyCode.id.desc()).limit(1))
    if row is None:
        raise HouseholdError("bad_code")
    if row.used_by is not None:
        raise HouseholdError("used_code")
    if as_utc(row.expires_at) <= now:
        raise HouseholdError("expired_code")
    hh = session.get_one(Household, row.household_id)
    existing = session.scalar(select(HouseholdLink).where(HouseholdLink.household_id == hh.id,
                                                          HouseholdLink.openid == openid))
    if existing is not None:
        raise HouseholdError("own_household" if existing.role is LinkRole.head
                             else "already_proxy", household=hh.number)
    row.used_by = openid
    link = HouseholdLink(household_id=hh.id, openid=openid, role=LinkRole.proxy, label=row.label)
    session.add(link)
    session.flush()
    audit(session, openid, "proxy.bind", "household", hh.number, None,
          {"link_id": link.id, "label": row.label, "code_id": row.id})
    text_ = render("proxy_bound_head", label=row.label, household=hh.number)
    for head_link in session.scalars(select(HouseholdLink).where(
            HouseholdLink.household_id == hh.id, HouseholdLink.role == LinkRole.head)):
        send_text(session, head_link.openid, text_)
    link.household = hh
    return link


def audit_bind_refusal(session: Session, openid: str, error: HouseholdError) -> None:
    if error.code in ("bad_code", "used_code", "expired_code"):
        audit(session, openid, "proxy.bind_refused", None, None, None, {"why": error.code})
        attempts.record_failure(session, attempts.PROXY_CODE, openid)


def proxies(session: Session, household: Household) -> list[ProxyView]:
    links = session.scalars(select(HouseholdLink).where(
        HouseholdLink.household_id == household.id, HouseholdLink.role == LinkRole.proxy)
        .order_by(HouseholdLink.id))
    return [ProxyView(i, link.id, link.label or "", link.created_at)
            for i, link in enumerate(links, start=1)]


def remove_proxy(session: Session, household: Household, index: int, actor: str) -> ProxyView:
    """Remove the head's proxy number `index` (as listed by `proxies`); the relative is told."""
    listed = proxies(session, household)
    if not 1 <= index <= len(listed):
        raise HouseholdError("no_such_proxy", count=len(listed))
    view = listed[index - 1]
    link = session.get_one(HouseholdLink, view.link_id)
    openid = link.openid
    session.delete(link)
    audit(session, actor, "proxy.remove", "household", household.number,
          {"link_id": view.link_id, "label": view.label}, None)
    send_text(session, openid, render("proxy_removed_relative", household=household.number))
    session.flush()
    return view


def leave_as_proxy(session: Session, openid: str, household: Household) -> None:
    """A relative ends their own proxy link."""
    link = session.scalar(select(HouseholdLink).where(
        HouseholdLink.household_id == household.id, HouseholdLink.openid == openid,
        HouseholdLink.role == LinkRole.proxy))
    if link is None:
        raise HouseholdError("not_proxy")
    session.delete(link)
    audit(session, openid, "proxy.leave", "household", household.number,
          {"link_id": link.id, "label": link.label}, None)
    session.flush()


# ---------------------------------------------------------------------------------------------
# Listing (huzhu households list).

def listing_year(session: Session, pool_id: int, today: date) -> SchemeYear | None:
    """The year `households list` reports: the running one, else the one enrolling."""
    return scheme_years.running_or_enrolling(session, pool_id, today)


def list_households(session: Session, today: date, village: Village | None = None,
                    pool_id: int | None = None) -> list[dict]:
    """SPEC `households list --json`: [{number, village, status, members: [{name, id_number,
    relation, insurance, category, enrolment, cover_from}]}], names and ID numbers masked;
    `enrolment` is the current year's status or null, `cover_from` the first day of cover (ISO
    date), null until paid."""
    q = (select(Household.id, Household.number, Household.status, Household.pool_id,
                Village.full_name).join(Village, Village.id == Household.village_id)
         .order_by(Household.id))
    if village is not None:
        q = q.where(Household.village_id == village.id)
    if pool_id is not None:
        q = q.where(Household.pool_id == pool_id)
    out: dict[int, dict] = {}
    pools: set[int] = set()
    for hid, number, status, pid, vname in session.execute(q):
        out[hid] = {"number": number, "village": vname, "status": status, "members": []}
        pools.add(pid)
    if not out:
        return []
    years = {pid: listing_year(session, pid, today) for pid in pools}
    year_ids = [y.id for y in years.values() if y is not None]
    status_of: dict[int, str] = {}
    cover_of: dict[int, str | None] = {}
    year_of = {y.id: y for y in years.values() if y is not None}
    tz = local_tz()
    if year_ids:
        eq = select(Enrolment).where(
            Enrolment.scheme_year_id.in_(year_ids))
        if village is not None:
            eq = eq.join(Member).join(Household).where(Household.village_id == village.id)
        elif pool_id is not None:
            eq = eq.join(Member).join(Household).where(Household.pool_id == pool_id)
        for e in session.scalars(eq):
            status_of[e.member_id] = e.status.value
            start = cover_start(e, year_of[e.scheme_year_id], tz)
            cover_of[e.member_id] = start.isoformat() if start else None
    mq = (select(Member.id, Member.household_id, Member.name, Member.id_number_masked,
                 Member.relation, Member.insurance, Member.category).order_by(Member.id))
    if village is not None:
        mq = mq.join(Household).where(Household.village_id == village.id)
    elif pool_id is not None:
        mq = mq.join(Household).where(Household.pool_id == pool_id)
    for mid, hid, name, masked, relation, insurance, category in session.execute(mq):
        hh = out.get(hid)
        if hh is None:
            continue
        hh["members"].append({
            "name": mask_name(name), "id_number": masked,
            "relation": relation.value if hasattr(relation, "value") else relation,
            "insurance": insurance.value if hasattr(insurance, "value") else insurance,
            "category": category, "enrolment": status_of.get(mid),
            "cover_from": cover_of.get(mid)})
    return list(out.values())


def find_village(session: Session, text_: str, pool_id: int | None = None) -> list[Village]:
    """Villages matching what someone typed: the full name 镇/村, else the village name, else a
    unique part of a name."""
    t = (text_ or "").strip().replace("／", "/")
    q = select(Village).order_by(Village.id)
    if pool_id is not None:
        q = q.where(Village.pool_id == pool_id)
    villages = list(session.scalars(q))
    for test in (lambda v: v.full_name == t, lambda v: v.name == t,
                 lambda v: t and (t in v.full_name)):
        found = [v for v in villages if test(v)]
        if found:
            return found
    return []
