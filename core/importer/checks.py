"""Checking the rows: each row's values, the households they make, and what is already on file
(people enrolled this year, the members of known households)."""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import scheme_years
from core.crypto import PersonalDataVault, mask_name
from core.households import (INSURANCE_WORDS, RELATION_WORDS, check_name, known_categories,
                             normalise_category)
from core.ids import IdError, check_id, check_phone
from core.models import Enrolment, Household, InsuranceType, Member, Relation, SchemeYear, Village
from core.importer.common import (CONTINUED_WORDS, MAX_ERRORS, ImportResult, RowError, _chunks,
                                 _text)
from core.importer.reader import _rows
from core.texts import text_of

if TYPE_CHECKING:
    from core.importer.helper import _Helper


_OUR_NUMBER = re.compile(r"^H\d{8,}$")


def _t(key: str, /, **values) -> str:
    """A text of templates/import_texts.yaml with `values` filled in."""
    return text_of("import_texts", key, **values)



# one checked row: (row, village_id, key, name, id_number, birth_date, relation, insurance,
# category, phone, head_name, id_hash)
_R_ROW, _R_VILLAGE, _R_KEY, _R_NAME, _R_ID, _R_BIRTH, _R_REL, _R_INS, _R_CAT, _R_PHONE, \
    _R_HEAD, _R_HASH, _R_CONTINUED = range(13)


class _Checker:
    def __init__(self, session: Session, vault: PersonalDataVault, today: date,
                 year_on: date | None, result: ImportResult):
        self.s, self.vault, self.today, self.year_on = session, vault, today, year_on
        self.result = result
        self.villages: dict[str, Village | None] = {}
        self.years: dict[int, SchemeYear | None] = {}
        self.categories: dict[tuple[int, str], str | None | ValueError] = {}
        self.excluded_of: dict[int, frozenset[str]] = {}
        self.all_villages = list(session.scalars(select(Village)))
        self.pool_of = {v.id: v.pool_id for v in self.all_villages}
        self.village_names = {v.id: v.full_name for v in self.all_villages}

    def error(self, row: int, column: str, message: str) -> None:
        if len(self.result.errors) < MAX_ERRORS:
            self.result.errors.append(RowError(row, column, message))
        else:
            self.result.more_errors += 1

    def village(self, text: str) -> Village | None:
        if text not in self.villages:
            t = text.replace("／", "/")
            found = [v for v in self.all_villages if v.full_name == t] or \
                [v for v in self.all_villages if v.name == t]
            self.villages[text] = found[0] if len(found) == 1 else None
        return self.villages[text]

    def year(self, pool_id: int) -> SchemeYear | None:
        if pool_id not in self.years:
            self.years[pool_id] = (
                scheme_years.running(self.s, pool_id, self.year_on) if self.year_on
                else scheme_years.enrolling(self.s, pool_id, self.today))
        return self.years[pool_id]

    def excluded(self, pool_id: int) -> frozenset[str]:
        """The categories the pool's scheme year does not take in."""
        if pool_id not in self.excluded_of:
            self.excluded_of[pool_id] = frozenset(
                self.year(pool_id).scheme.contribution.excluded)
        return self.excluded_of[pool_id]

    def category(self, pool_id: int, text: str):
        key = (pool_id, text)
        if key not in self.categories:
            year = self.year(pool_id)
            scheme = year.scheme if year else None
            try:
                self.categories[key] = normalise_category(text, scheme)
            except ValueError as exc:
                self.categories[key] = exc
        return self.categories[key]


def _check_rows(path: Path, ck: _Checker, helper: _Helper | None = None) -> list[tuple]:
    rows: list[tuple] = []
    seen_ids: dict[str, int] = {}
    error = ck.error
    relation_words, insurance_words = RELATION_WORDS, INSURANCE_WORDS
    today, lookup_hash = ck.today, ck.vault.lookup_hash
    closed_pools: set[int] = set()
    last_head: tuple = (None, None)  # a household's rows repeat the head's name: checked once
    for number, (v_raw, hh_raw, head_raw, name_raw, id_raw, rel_raw, ins_raw, cat_raw,
                 phone_raw, cont_raw) in _rows(path, helper.rows() if helper else None):
        ck.result.rows += 1
        bad = False
        v_text = _text(v_raw)
        village = ck.village(v_text) if v_text else None
        if village is None:
            error(number, "村", _t("check_rows.1", v_text=v_text) if v_text else _t("check_rows.2"))
            bad = True
        elif ck.year(village.pool_id) is None:
            if village.pool_id not in closed_pools:
                closed_pools.add(village.pool_id)
                when = (_t("check_rows.3", year_on=ck.year_on) if ck.year_on else _t("check_rows.4"))
                error(number, "村", _t("check_rows.5", full_name=village.full_name, when=when))
            bad = True
        hh_no = _text(hh_raw).upper()
        if len(hh_no) > 32:
            error(number, "户号", _t("check_rows.6"))
            bad = True
        if head_raw == last_head[0] and head_raw.__class__ is str:
            head = last_head[1]
        else:
            head = check_name(_text(head_raw))
            last_head = (head_raw, head)
        if head is None:
            error(number, "户主姓名", _t("check_rows.7"))
            bad = True
        name = check_name(_text(name_raw))
        if name is None:
            error(number, "姓名", _t("check_rows.8"))
            bad = True
        idn = None
        if isinstance(id_raw, float):
            error(number, "身份证号", _t("check_rows.9"))
            bad = True
        else:
            try:
                idn = check_id(_text(id_raw), today)
            except IdError as e:
                error(number, "身份证号", _t("id." + e.code))
                bad = True
        if idn is not None:
            first = seen_ids.get(idn.number)
            if first is not None:
                error(number, "身份证号", _t("check_rows.10", first=first))
                bad = True
            else:
                seen_ids[idn.number] = number
        relation = relation_words.get(_text(rel_raw))
        if relation is None:
            error(number, "与户主关系", _t("check_rows.11"))
            bad = True
        insurance = insurance_words.get(_text(ins_raw))
        if insurance is None:
            error(number, "医保类型", _t("check_rows.12"))
            bad = True
        elif (insurance is InsuranceType.uninsured and village is not None
              and ck.year(village.pool_id) is not None
              and ck.year(village.pool_id).scheme.enrolment.uninsured == "refused"):
            error(number, "医保类型", _t("check_rows.13"))
            bad = True
        category = None
        cat_text = _text(cat_raw)
        if cat_text and village is not None and ck.year(village.pool_id) is not None:
            category = ck.category(village.pool_id, cat_text)
            if isinstance(category, ValueError):
                error(number, "类别", _t("check_rows.14", given=cat_text[:16])
                      + "、".join(known_categories(ck.year(village.pool_id).scheme)))
                bad = True
                category = None
            elif category is not None and category in ck.excluded(village.pool_id):
                error(number, "类别", _t("check_rows.15", category=category))
                bad = True
        phone = None
        phone_text = _text(phone_raw)
        if phone_text:
            phone = check_phone(phone_text)
            if phone is None:
                error(number, "手机号", _t("check_rows.16"))
                bad = True
        continued = None
        cont_text = _text(cont_raw)
        if cont_text:
            continued = CONTINUED_WORDS.get(cont_text)
            if continued is None:
                error(number, "上年参加", _t("check_rows.17", given=cont_text[:8]))
                bad = True
        if bad:
            continue
        key = ("N", village.id, hh_no) if hh_no else ("V", village.id, head)
        rows.append((number, village.id, key, name, idn.number, idn.birth_date, relation,
                     insurance, category, phone, head, lookup_hash(idn.number), continued))
    return rows


@dataclass
class _Group:
    key: tuple
    rows: list[tuple]
    household_id: int | None = None  # an existing household
    number: str | None = None
    states: list | None = None  # per row: _NEW, _UNCHANGED or a known member's id


def _check_groups(ck: _Checker, rows: list[tuple]) -> list[_Group]:
    s, error = ck.s, ck.error
    groups: dict[tuple, _Group] = {}
    for r in rows:
        g = groups.get(r[_R_KEY])
        if g is None:
            groups[r[_R_KEY]] = g = _Group(r[_R_KEY], [])
        g.rows.append(r)
    # existing households named by 户号
    numbers = [k[2] for k in groups if k[0] == "N"]
    by_number: dict[str, tuple[int, int]] = {}
    for chunk in _chunks(numbers):
        for hid, num, vid in s.execute(select(Household.id, Household.number,
                                              Household.village_id)
                                       .where(Household.number.in_(chunk))):
            by_number[num] = (hid, vid)
    # last year's households, by their head's ID
    head_hashes = [next((r[_R_HASH] for r in g.rows if r[_R_REL] is Relation.head), None)
                   for g in groups.values() if g.key[0] == "V" or g.key[2] not in by_number]
    by_head: dict[tuple[str, int], tuple[int, str]] = {}
    for chunk in _chunks([h for h in head_hashes if h]):
        # the newest wins: sorted here, as ORDER BY member.id makes SQLite walk the whole
        # member table in id order instead of using the index on the hash
        for h, hid, vid, num, _mid in sorted(s.execute(
                select(Member.id_number_hash, Member.household_id, Household.village_id,
                       Household.number, Member.id)
                .join(Household, Household.id == Member.household_id)
                .where(Member.id_number_hash.in_(chunk), Member.relation == Relation.head)),
                key=operator.itemgetter(4)):
            by_head[(h, vid)] = (hid, num)
    for g in groups.values():
        heads = [r for r in g.rows if r[_R_REL] is Relation.head]
        first = g.rows[0][_R_ROW]
        if len(heads) > 1:
            rows_text = "、".join(str(r[_R_ROW]) for r in heads)
            error(heads[1][_R_ROW], "与户主关系",
                  _t("check_groups.1", rows_text=rows_text))
        heads_named = {r[_R_HEAD] for r in g.rows}
        if g.key[0] == "N" and len(heads_named) > 1:
            error(first, "户主姓名", _t("check_groups.2", household=g.key[2]))
        if g.key[0] == "N" and g.key[2] in by_number:
            found = by_number[g.key[2]]
            g.household_id, g.number = found[0], g.key[2]
            if found[1] != g.key[1]:
                error(first, "户号", _t("check_groups.3", household=g.key[2]))
        elif g.key[0] == "N" and _OUR_NUMBER.match(g.key[2]):
            error(first, "户号", _t("check_groups.4", household=g.key[2]))
        else:
            if not heads:
                error(first, "与户主关系",
                      _t("check_groups.5", head=mask_name(g.rows[0][_R_HEAD])))
                continue
            if heads[0][_R_NAME] != heads[0][_R_HEAD]:
                error(heads[0][_R_ROW], "姓名", _t("check_groups.6"))
            found = by_head.get((heads[0][_R_HASH], g.key[1]))
            if found is not None:
                g.household_id, g.number = found
        if g.household_id is None and not heads:
            error(first, "与户主关系", _t("check_groups.7"))
    return list(groups.values())


GROUP_CHUNK = 2000  # households per look-up / write round

# what writing a checked row means (_Group.states): a new member, or nothing (already enrolled
# in that household this year); a positive number is the id of a known member of the household
# who gets this year's enrolment
_NEW, _UNCHANGED = None, 0


def _existing_for(ck: _Checker, groups: list[_Group]) -> tuple[dict, dict]:
    """For a chunk of households: who is already enrolled this year ({hash: (household_id,
    member_id, number)}) and the members of the existing households ({(household_id, hash):
    (household_id, hash, id, name, relation, insurance, category)})."""
    s = ck.s
    enrolled: dict[str, tuple[int, int, str]] = {}
    per_year: dict[int, list[str]] = {}
    for g in groups:
        year = ck.year(ck.pool_of[g.rows[0][_R_VILLAGE]])
        per_year.setdefault(year.id, []).extend(r[_R_HASH] for r in g.rows)
    for year_id, hashes in per_year.items():
        for chunk in _chunks(hashes):
            for h, mid, hid, num in s.execute(
                    select(Enrolment.id_number_hash, Member.id, Member.household_id,
                           Household.number)
                    .join(Member, Member.id == Enrolment.member_id)
                    .join(Household, Household.id == Member.household_id)
                    .where(Enrolment.scheme_year_id == year_id,
                           Enrolment.id_number_hash.in_(chunk))):
                enrolled[h] = (hid, mid, num)
    members: dict[tuple[int, str], tuple] = {}
    existing = [g.household_id for g in groups if g.household_id is not None]
    for chunk in _chunks(existing):
        for row in s.execute(select(Member.household_id, Member.id_number_hash, Member.id,
                                    Member.name, Member.relation, Member.insurance,
                                    Member.category).where(Member.household_id.in_(chunk))):
            members[(row[0], row[1])] = tuple(row)
    return enrolled, members


def _check_existing(ck: _Checker, groups: list[_Group]) -> None:
    """Refuse people enrolled this year in another household, and note what writing each row
    means (`_Group.states`) and where it differs from what is on file (a chunk at a time; the
    only look-ups of the import's people, so writing needs none)."""
    result, error = ck.result, ck.error
    for chunk in _chunks(groups, GROUP_CHUNK):
        enrolled, members = _existing_for(ck, chunk)
        for g in chunk:
            hid, states = g.household_id, []
            for r in g.rows:
                h = r[_R_HASH]
                e = enrolled.get(h)
                m = members.get((hid, h)) if hid is not None else None
                if e is not None:
                    if e[0] != hid:
                        error(r[_R_ROW], "身份证号",
                              _t("check_existing.1", household=e[2]))
                    states.append(_UNCHANGED)
                elif m is not None:
                    states.append(m[2])
                else:
                    states.append(_NEW)
                if m is not None:
                    _differences(result, r, m)
            g.states = states
    if result.errors:
        result.differences.clear()  # only a file that is imported says what it left alone


def _differences(result: ImportResult, r: tuple, m: tuple) -> None:
    changed = []
    if m[3] != r[_R_NAME]:
        changed.append("姓名")
    if m[4] != r[_R_REL]:
        changed.append("与户主关系")
    if m[5] != r[_R_INS]:
        changed.append("医保类型")
    if (m[6] or None) != r[_R_CAT]:
        changed.append("类别")
    if changed and len(result.differences) < MAX_ERRORS:
        result.differences.append(RowError(r[_R_ROW], "、".join(changed),
                                           _t("differences.1")))
