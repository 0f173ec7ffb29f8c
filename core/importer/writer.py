"""Writing a checked file: new households (ids reserved up front), new members (ID numbers
encrypted, here or by the helper process), pending enrolments and audit rows, in bulk."""
from __future__ import annotations

import enum
import json
from typing import Callable

from sqlalchemy import JSON, insert
from sqlalchemy.orm import Session

from core.crypto import mask_phone
from core.households import household_number, reserve_ids
from core.stats import refresh_tally
from core.models import AuditLog, Enrolment, EnrolmentStatus, Household, Member, Relation, utcnow
from core.importer.checks import (GROUP_CHUNK, _NEW, _R_BIRTH, _R_CAT, _R_CONTINUED, _R_HASH,
                                  _R_ID, _R_INS, _R_NAME, _R_PHONE, _R_REL, _R_VILLAGE, _Checker,
                                  _Group)
from core.importer.common import _chunks
from core.importer.helper import _Helper


# the columns each bulk insert fills, in the order of its row tuples
_HOUSEHOLD_COLUMNS = ("id", "number", "pool_id", "village_id", "phone_enc", "phone_masked",
                      "status", "created_at")
_MEMBER_COLUMNS = ("id", "household_id", "name", "id_number_enc", "id_number_hash",
                   "id_number_masked", "birth_year", "relation", "insurance", "category",
                   "created_at")
_ENROLMENT_COLUMNS = ("member_id", "scheme_year_id", "id_number_hash", "status", "created_at",
                      "continued")
_AUDIT_COLUMNS = ("at", "actor", "action", "entity", "entity_id", "before", "after")


def _memo(process: Callable) -> Callable:
    """A column's bind processor, remembering its results (dates, enums, the import's time)."""
    done: dict = {}

    def run(value):
        try:
            return done[value]
        except KeyError:
            done[value] = out = process(value)
            return out
    return run


def _bulk_insert(session: Session, table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert tuples of `columns` values, in the session's transaction: on PostgreSQL with COPY
    (several times faster than INSERT), on SQLite with one executemany of the DB-API driver,
    the values converted by the columns' own SQLAlchemy types first (what Core would do per
    row and per parameter, done here per column and per distinct value)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        raw = session.connection().connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy(f'COPY "{table.name}" ({", ".join(columns)}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row([v.value if isinstance(v, enum.Enum) else
                                    (json.dumps(v, ensure_ascii=False, default=str)
                                     if isinstance(v, dict) else v) for v in row])
        return
    if dialect.paramstyle != "qmark":  # not SQLite: Core's executemany
        session.execute(insert(table), [dict(zip(columns, row)) for row in rows])
        return
    processors = []
    for name in columns:
        type_ = table.c[name].type
        process = type_.dialect_impl(dialect).bind_processor(dialect)
        if process is not None and not isinstance(type_, JSON):
            process = _memo(process)
        processors.append(process)
    if any(processors):
        values = zip(*rows)
        rows = list(zip(*[map(p, v) if p else v for p, v in zip(processors, values)]))
    q = dialect.identifier_preparer
    sql = (f"INSERT INTO {q.format_table(table)} ({', '.join(q.quote(c) for c in columns)}) "
           f"VALUES ({', '.join('?' * len(columns))})")
    session.connection().exec_driver_sql(sql, rows)


def _write(ck: _Checker, groups: list[_Group], actor: str, file_name: str,
           progress: Callable[[str], None] | None, helper: _Helper | None = None) -> None:
    """Insert, a chunk of households at a time: new households (ids reserved up front),
    new members (ID encrypted), pending enrolments, one audit row per household changed.
    With a helper process, a chunk's ID numbers are encrypted there while the chunk before
    is inserted here."""
    s = ck.s
    now = utcnow()
    new_groups = [g for g in groups if g.household_id is None]
    new_ids = set()
    for hid, g in zip(reserve_ids(s, Household.__table__, len(new_groups)), new_groups):
        g.household_id, g.number = hid, household_number(hid)
        new_ids.add(hid)
    encrypt = ck.vault.encrypt

    def numbers(prepared: list) -> list[str]:
        return [r[_R_ID] for r, _hid, _year in prepared[1]]

    def take_encrypted(prepared: list, helper: _Helper) -> None:
        tokens = helper.encrypted()  # None: the helper is gone
        prepared.append(tokens if tokens is not None else
                        [encrypt(n) for n in numbers(prepared)])

    if helper is not None and helper.gone:
        helper = None
    waiting = None  # the chunk prepared before, its ID numbers being encrypted
    done_rows = 0
    for chunk in _chunks(groups, GROUP_CHUNK):
        prepared = _prepare(ck, chunk, new_ids, actor, file_name, now)
        if waiting is not None and helper is not None:
            take_encrypted(waiting, helper)
            if helper.gone:
                helper = None
        if helper is None:
            prepared.append([encrypt(n) for n in numbers(prepared)])
        else:
            helper.encrypt(numbers(prepared))
        if waiting is not None:
            done_rows = _insert(ck, waiting, now, done_rows, progress)
        waiting = prepared
    if waiting is not None:
        if helper is not None:
            take_encrypted(waiting, helper)
        _insert(ck, waiting, now, done_rows, progress)


def _prepare(ck: _Checker, chunk: list[_Group], new_ids: set[int], actor: str,
             file_name: str, now) -> list:
    """What a chunk of households writes: [household rows, (row, household id, year id) of
    new members, enrolment rows of known members, audit rows, number of file rows]."""
    result, pool_of = ck.result, ck.pool_of
    households, new_members, enrolments, audits = [], [], [], []
    pending = EnrolmentStatus.pending
    rows = 0
    for g in chunk:
        head = next((r for r in g.rows if r[_R_REL] is Relation.head), g.rows[0])
        year_id = ck.year(pool_of[head[_R_VILLAGE]]).id
        if g.household_id in new_ids:
            phone = head[_R_PHONE] or next((r[_R_PHONE] for r in g.rows if r[_R_PHONE]), None)
            households.append((g.household_id, g.number, pool_of[head[_R_VILLAGE]],
                               head[_R_VILLAGE], ck.vault.encrypt(phone) if phone else None,
                               mask_phone(phone), "active", now))
        added = renewed = 0
        for r, state in zip(g.rows, g.states):
            if state is _NEW:
                new_members.append((r, g.household_id, year_id))
                added += 1
            elif state:
                enrolments.append((state, year_id, r[_R_HASH], pending, now, r[_R_CONTINUED]))
                renewed += 1
            else:
                result.unchanged += 1
        rows += len(g.rows)
        if added or renewed:
            if g.household_id not in new_ids:
                result.households_renewed += 1
            audits.append((
                now, actor,
                "household.import" if g.household_id in new_ids else "household.import_update",
                "household", g.number, None,
                {"file": file_name, "scheme_year_id": year_id,
                 "village": ck.village_names[head[_R_VILLAGE]],
                 "members_new": added, "enrolments_renewed": renewed,
                 "enrolment": "pending"}))
    return [households, new_members, enrolments, audits, rows]


def _insert(ck: _Checker, prepared: list, now, done_rows: int,
            progress: Callable[[str], None] | None) -> int:
    """Write a prepared chunk (its encrypted ID numbers appended); the rows written so far."""
    s, result = ck.s, ck.result
    households, new_members, enrolments, audits, rows, tokens = prepared
    if households:
        _bulk_insert(s, Household.__table__, _HOUSEHOLD_COLUMNS, households)
        result.households_new += len(households)
    member_ids = reserve_ids(s, Member.__table__, len(new_members))
    members = []
    pending = EnrolmentStatus.pending
    for mid, (r, hid, year_id), token in zip(member_ids, new_members, tokens):
        n = r[_R_ID]
        members.append((mid, hid, r[_R_NAME], token, r[_R_HASH], n[:3] + "*" * 13 + n[-2:],
                        r[_R_BIRTH].year, r[_R_REL], r[_R_INS], r[_R_CAT], now))
        enrolments.append((mid, year_id, r[_R_HASH], pending, now, r[_R_CONTINUED]))
    if members:
        _bulk_insert(s, Member.__table__, _MEMBER_COLUMNS, members)
        result.members_new += len(members)
    if enrolments:
        _bulk_insert(s, Enrolment.__table__, _ENROLMENT_COLUMNS, enrolments)
        result.enrolments_new += len(enrolments)
    # rows written past the ORM: participation's household_tally counted here
    refresh_tally(s, [h[0] for h in households] + [hid for _, hid, _ in new_members],
                  [e[0] for e in enrolments])
    if audits:
        _bulk_insert(s, AuditLog.__table__, _AUDIT_COLUMNS, audits)
    before, done_rows = done_rows, done_rows + rows
    if progress and (done_rows // 150_000 != before // 150_000 or done_rows == result.rows):
        progress(f"written {done_rows} of {result.rows} rows")
    return done_rows
