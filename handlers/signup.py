"""参加互助: the sign-up dialogue (SPEC "Villager dialogue"), and 添加成员 for a member added later.

Order, as SPEC fixes it: village (skipped when the user followed a village QR code), head's name,
head's ID number, phone, head's insurance type; then `1 添加成员` / `2 完成` repeatedly, each
member: name, ID number, relation, insurance type; then a summary with masked IDs and the amount
due, answered `确认` (or `取消`, which the router handles). Nothing is written before `确认`:
until then the answers live in the dialogue state, ID numbers encrypted by the vault.

`添加成员` (the same dialogue, so the word works inside it too) adds a member to the user's
registered household: anyone while the enrolment window is open, outside it only a child born
inside the running scheme year. A head whose household is not yet in the year now enrolling is
offered to renew with the same members.
"""
from __future__ import annotations


from sqlalchemy import select

from core import scheme_years
from core.crypto import mask_id, mask_name
from core.households import (INSURANCE_LABELS, INSURANCE_WORDS, RELATION_LABELS, RELATION_WORDS,
                             HouseholdError, NewMember, add_member, check_name, enrolment_of,
                             enrolments_in, headed_household, household_enrolled,
                             household_for_user, known_category, member_year, personal_due_fen,
                             register_household, renew_household, window_info)
from core.ids import IdError, birth_date_of, check_id, check_phone
from core.messages import render
from core.models import Household, InsuranceType, Relation, SchemeYear, Village
from handlers.dialogue import Dialogue, Step, register, say
from handlers.types import Ctx, Incoming

MAX_MEMBERS = 20
VILLAGE_LIST_MAX = 20  # more villages than this: ask for the name instead of listing them
ADD_WORD = "添加成员"
DONE_WORD = "完成"
CONFIRM_WORDS = ("确认", "确定", "是", "对")
# answers that are never a name: the user meant to steer the dialogue
NOT_NAMES = ("参加互助", ADD_WORD, DONE_WORD, "确认", "确定", "缴费", "取消")

INSURANCE_CHOICES = {"1": InsuranceType.resident, "2": InsuranceType.employee,
                     "3": InsuranceType.uninsured, **INSURANCE_WORDS}
RELATION_CHOICES = {"1": Relation.spouse, "2": Relation.child, "3": Relation.parent,
                    "4": Relation.other,
                    **{w: r for w, r in RELATION_WORDS.items() if r is not Relation.head}}


def _say(template: str, state: str | None = None, data: dict | None = None, **context) -> Step:
    return say(render(template, **context), state=state, data=data)


def _village_of(ctx: Ctx, data: dict) -> Village | None:
    return ctx.session.get(Village, data["village_id"]) if data.get("village_id") else None


def _contact(village: Village | None) -> str:
    return village.full_name if village else ""


def _closed(ctx: Ctx, village: Village, **extra) -> Step:
    return _say("signup_closed", village=_contact(village),
                **window_info(ctx.session, village.pool_id, ctx.today), **extra)


# ---------------------------------------------------------------------------------------------
# Entry.

def entry(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    if msg.text.split(maxsplit=1)[0:1] == [ADD_WORD]:
        return _add_entry(ctx)
    hh = headed_household(ctx.session, ctx.openid)
    if hh is not None:
        step = _existing_household(ctx, hh)
        if step is not None:
            return step
    if ctx.user.village_id:
        return _after_village(ctx, ctx.session.get_one(Village, ctx.user.village_id), {})
    return _ask_village(ctx, {})


def _household_summary(ctx: Ctx, hh: Household, year: SchemeYear) -> dict:
    enrolments = enrolments_in(ctx.session, hh.id, year.id)
    pending = [e.member for e in enrolments if e.status.value == "pending"]
    return {"household": hh.number, "village": hh.village.full_name, "count": len(enrolments),
            "paid": sum(1 for e in enrolments if e.status.value == "paid"),
            "pending": len(pending), "due": personal_due_fen(year.scheme, pending),
            "closes": year.enrolment_closes}


def _existing_household(ctx: Ctx, hh: Household) -> Step | None:
    """The user already heads a household: say where it stands, or offer to renew it."""
    s = ctx.session
    open_year = scheme_years.enrolling(s, hh.pool_id, ctx.today)
    if open_year is not None and household_enrolled(s, hh.id, open_year.id):
        return _say("signup_already", **_household_summary(ctx, hh, open_year), window_open=True)
    if open_year is not None and hh.members:
        scheme = open_year.scheme
        members = [_stored_view(m) for m in hh.members]
        blocked = [m for m in hh.members if not scheme.contribution.may_join(m.category)]
        if blocked:
            return _say("signup_excluded", name=mask_name(blocked[0].name),
                        category=blocked[0].category, village=hh.village.full_name,
                        end=True)
        return _say("signup_renew", state="renew_confirm", data={"household_id": hh.id,
                                                                "year_id": open_year.id},
                    household=hh.number, village=hh.village.full_name, members=members,
                    due=personal_due_fen(scheme, hh.members), year=open_year,
                    closes=open_year.enrolment_closes)
    running = scheme_years.running(s, hh.pool_id, ctx.today)
    if running is not None and household_enrolled(s, hh.id, running.id):
        return _say("signup_already", **_household_summary(ctx, hh, running), window_open=False)
    return None


def _stored_view(m) -> dict:
    return {"name": mask_name(m.name), "masked": m.id_number_masked,
            "relation": RELATION_LABELS[m.relation], "insurance": INSURANCE_LABELS[m.insurance],
            "category": m.category}


# ---------------------------------------------------------------------------------------------
# Village.

def _ask_village(ctx: Ctx, data: dict, villages: list[Village] | None = None,
                 bad: str | None = None) -> Step:
    if villages is None:
        villages = list(ctx.session.scalars(select(Village).order_by(Village.id)))
    listed = villages if len(villages) <= VILLAGE_LIST_MAX else []
    data = {**data, "choices": [v.id for v in listed]}
    return _say("signup_ask_village", state="village", data=data, bad=bad,
                villages=[v.full_name for v in listed])


def village(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    from core.households import find_village

    text = msg.text.strip()
    choices = data.get("choices") or []
    if text.isdigit():
        n = int(text)
        if choices and 1 <= n <= len(choices):
            return _after_village(ctx, ctx.session.get_one(Village, choices[n - 1]), data)
        return _ask_village(ctx, data, _villages(ctx, choices), bad=text)
    found = find_village(ctx.session, text) if text else []
    if len(found) == 1:
        return _after_village(ctx, found[0], data)
    if len(found) > 1:
        return _ask_village(ctx, data, found, bad=None)
    return _ask_village(ctx, data, _villages(ctx, choices), bad=text or "（空）")


def _villages(ctx: Ctx, ids: list[int]) -> list[Village] | None:
    if not ids:
        return None
    return [ctx.session.get_one(Village, i) for i in ids]


def _after_village(ctx: Ctx, v: Village, data: dict) -> Step:
    year = scheme_years.enrolling(ctx.session, v.pool_id, ctx.today)
    if year is None:
        return _closed(ctx, v)
    data = {"mode": "signup", "village_id": v.id, "pool_id": v.pool_id, "year_id": year.id,
            "members": [], "from_qr": bool(ctx.user.village_id == v.id)}
    return _say("signup_ask_head_name", state="head_name", data=data, village=v.full_name,
                from_qr=data["from_qr"], closes=year.enrolment_closes)


# ---------------------------------------------------------------------------------------------
# Head of household.

def _name(msg: Incoming) -> str | None:
    if msg.kind == "image" or msg.text in NOT_NAMES:
        return None
    return check_name(msg.text)


def head_name(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    name = _name(msg)
    if name is None:
        return _say("signup_bad_name", state="head_name", data=data, who="户主", text=msg.text)
    data = {**data, "cur": {"name": name, "relation": Relation.head.value}}
    return _say("signup_ask_id", state="head_id", data=data, name=mask_name(name), head=True)


def _take_id(ctx: Ctx, msg: Incoming, data: dict, state: str) -> tuple[dict | None, Step | None]:
    """Check an ID number answer; (the member dict with it, None) or (None, the re-ask)."""
    cur = data["cur"]
    who = mask_name(cur["name"])
    try:
        idn = check_id(msg.text, ctx.today)
    except IdError as e:
        return None, _say("signup_bad_id", state=state, data=data, code=e.code, name=who)
    s, vault = ctx.session, ctx.vault
    h = vault.lookup_hash(idn.number)
    if any(m["hash"] == h for m in data.get("members", [])):
        return None, _say("signup_id_twice", state=state, data=data, name=who)
    year = s.get_one(SchemeYear, data["year_id"])
    if data.get("mode") == "add":
        hh = s.get_one(Household, data["household_id"])
        try:
            year, _newborn = member_year(s, hh, idn.birth_date, ctx.today)
        except HouseholdError as e:
            return None, _say("signup_not_newborn" if e.code == "not_newborn"
                              else "signup_not_enrolled", state=state, data=data,
                              name=who, village=hh.village.full_name, **e.details)
        data = {**data, "year_id": year.id, "newborn": _newborn}
        if any(m.id_number_hash == h for m in hh.members):
            return None, _say("signup_id_twice", state=state, data=data, name=who)
    found = enrolment_of(s, year.id, h)
    if found is not None:
        from core.households import already_registered_info

        return None, _say("signup_id_registered", state=state, data=data,
                          masked=mask_id(idn.number), **already_registered_info(s, found))
    category = known_category(s, data["pool_id"], h)
    scheme = year.scheme
    if not scheme.contribution.may_join(category):
        village = _village_of(ctx, data)
        return None, _say("signup_excluded", state=state, data=data, name=who,
                          category=category, village=_contact(village), end=False)
    member = {**cur, "id_enc": vault.encrypt(idn.number), "hash": h,
              "masked": mask_id(idn.number), "category": category}
    return member, None


def head_id(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    member, retry = _take_id(ctx, msg, data, "head_id")
    if retry is not None:
        return retry
    data = {**data, "cur": member}
    return _say("signup_ask_phone", state="phone", data=data)


def phone(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    number = check_phone(msg.text)
    if number is None:
        return _say("signup_bad_phone", state="phone", data=data, text=msg.text[:20])
    data = {**data, "phone_enc": ctx.vault.encrypt(number)}  # never in plain in the state
    return _say("signup_ask_insurance", state="head_insurance", data=data,
                name=mask_name(data["cur"]["name"]), head=True)


def head_insurance(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    return _insurance(ctx, msg, data, "head_insurance")


def _insurance(ctx: Ctx, msg: Incoming, data: dict, state: str) -> Step:
    choice = INSURANCE_CHOICES.get(msg.text.strip())
    if choice is None:
        return _say("signup_ask_insurance", state=state, data=data, bad=True,
                    name=mask_name(data["cur"]["name"]), head=state == "head_insurance")
    scheme = ctx.session.get_one(SchemeYear, data["year_id"]).scheme
    if choice is InsuranceType.uninsured and scheme.enrolment.uninsured == "refused":
        return _say("signup_uninsured_refused", state=state, data=data,
                    name=mask_name(data["cur"]["name"]), head=state == "head_insurance")
    member = {**data["cur"], "insurance": choice.value}
    if member.get("category") is None and _categories(ctx, data):
        data = {**data, "cur": member}
        return _ask_category(ctx, data)
    return _member_done(ctx, data, member)


# ---------------------------------------------------------------------------------------------
# Category (低保, 特困, …): asked when the scheme names subsidized or excluded categories and
# the village does not confirm the members itself (enrolment.village_confirms).

NO_CATEGORY = "无"


def _categories(ctx: Ctx, data: dict) -> list[str]:
    """The choices, 无 first, then the scheme's subsidized and excluded categories; empty when
    the sign-up does not ask."""
    scheme = ctx.session.get_one(SchemeYear, data["year_id"]).scheme
    c = scheme.contribution
    if scheme.enrolment.village_confirms or not (c.subsidized or c.excluded):
        return []
    return [NO_CATEGORY, *c.subsidized, *c.excluded]


def _ask_category(ctx: Ctx, data: dict, bad: str | None = None) -> Step:
    return _say("signup_ask_category", state="category", data=data, bad=bad,
                name=mask_name(data["cur"]["name"]), head=data["cur"]["relation"] == "head",
                choices=_categories(ctx, data))


def category(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    choices = _categories(ctx, data)
    text = msg.text.strip()
    if text.isdigit() and 1 <= int(text) <= len(choices):
        chosen = choices[int(text) - 1]
    elif text in choices:
        chosen = text
    else:
        return _ask_category(ctx, data, bad=text[:20] or "（空）")
    member = {**data["cur"], "category": None if chosen == NO_CATEGORY else chosen}
    scheme = ctx.session.get_one(SchemeYear, data["year_id"]).scheme
    if not scheme.contribution.may_join(member["category"]):
        head = member["relation"] == "head"
        data = {**data, "cur": None}
        step = _say("signup_excluded", name=mask_name(member["name"]), category=chosen,
                    village=_contact(_village_of(ctx, data)),
                    end=head or data.get("mode") == "add", chosen=True)
        if head or data.get("mode") == "add":
            return step
        more_text = _ask_more(data).replies[0].text
        return say(step.replies[0].text + "\n" + more_text, state="more", data=data)
    return _member_done(ctx, data, member)


def _member_done(ctx: Ctx, data: dict, member: dict) -> Step:
    if data.get("mode") == "add":
        data = {**data, "cur": member}
        return _add_summary(ctx, data)
    data = {**data, "members": [*data["members"], member], "cur": None}
    return _ask_more(data)


# ---------------------------------------------------------------------------------------------
# Members.

def _ask_more(data: dict, bad: bool = False) -> Step:
    return _say("signup_ask_more", state="more", data=data, bad=bad,
                names=[mask_name(m["name"]) for m in data["members"]],
                full=len(data["members"]) >= MAX_MEMBERS, limit=MAX_MEMBERS)


def more(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    text = msg.text.strip()
    if text in ("1", ADD_WORD):
        if len(data["members"]) >= MAX_MEMBERS:
            return _ask_more(data)
        return _say("signup_ask_member_name", state="member_name", data=data,
                    n=len(data["members"]) + 1)
    if text in ("2", DONE_WORD):
        return _summary(ctx, data)
    return _ask_more(data, bad=True)


def member_name(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    if data.get("mode") != "add" and msg.text.strip() == DONE_WORD:
        return _summary(ctx, data)
    name = _name(msg)
    if name is None:
        return _say("signup_bad_name", state="member_name", data=data, who="这位成员",
                    text=msg.text)
    data = {**data, "cur": {"name": name}}
    return _say("signup_ask_id", state="member_id", data=data, name=mask_name(name), head=False)


def member_id(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    member, retry = _take_id(ctx, msg, data, "member_id")
    if retry is not None:
        return retry
    data = {**data, "cur": member}
    return _say("signup_ask_relation", state="member_relation", data=data,
                name=mask_name(member["name"]))


def member_relation(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    choice = RELATION_CHOICES.get(msg.text.strip())
    if choice is None:
        return _say("signup_ask_relation", state="member_relation", data=data, bad=True,
                    name=mask_name(data["cur"]["name"]))
    data = {**data, "cur": {**data["cur"], "relation": choice.value}}
    return _say("signup_ask_insurance", state="member_insurance", data=data,
                name=mask_name(data["cur"]["name"]), head=False)


def member_insurance(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    return _insurance(ctx, msg, data, "member_insurance")


# ---------------------------------------------------------------------------------------------
# Summary and confirmation.

def _view(m: dict) -> dict:
    return {"name": mask_name(m["name"]), "masked": m["masked"],
            "relation": RELATION_LABELS[Relation(m["relation"])],
            "insurance": INSURANCE_LABELS[InsuranceType(m["insurance"])],
            "category": m.get("category")}


def _due(ctx: Ctx, data: dict, members: list[dict]) -> tuple[int, int]:
    scheme = ctx.session.get_one(SchemeYear, data["year_id"]).scheme
    subsidized = sum(1 for m in members if m.get("category") in scheme.contribution.subsidized)
    return personal_due_fen(scheme, members, newborn=bool(data.get("newborn"))), subsidized


def _summary(ctx: Ctx, data: dict) -> Step:
    members = data["members"]
    due, subsidized = _due(ctx, data, members)
    scheme = ctx.session.get_one(SchemeYear, data["year_id"]).scheme
    return _say("signup_summary", state="confirm", data=data,
                village=_village_of(ctx, data).full_name, phone=_phone(ctx, data),
                members=[_view(m) for m in members], due=due, subsidized=subsidized,
                share=scheme.contribution.shares_fen.get("personal", 0))


def _phone(ctx: Ctx, data: dict) -> str | None:
    if data.get("phone_enc"):
        return ctx.vault.decrypt(data["phone_enc"])
    return data.get("phone")  # a dialogue begun before phones were kept encrypted


def _new_members(ctx: Ctx, members: list[dict]) -> list[NewMember]:
    return [NewMember(name=m["name"], id_number=ctx.vault.decrypt(m["id_enc"]),
                      birth_date=birth_date_of(ctx.vault.decrypt(m["id_enc"])),
                      relation=Relation(m["relation"]),
                      insurance=InsuranceType(m["insurance"]), category=m.get("category"))
            for m in members]


def _refused(ctx: Ctx, e: HouseholdError, data: dict) -> Step:
    v = _village_of(ctx, data)
    if e.code == "window_closed":
        return _closed(ctx, v)
    if e.code == "already_registered":
        return _say("signup_id_registered", end=True, masked=e.details.pop("id_number"),
                    **e.details)
    if e.code == "excluded":
        return _say("signup_excluded", village=_contact(v), end=True, **e.details)
    return _say("signup_refused", code=e.code, village=_contact(v), **e.details)


def confirm(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    if msg.text.strip() not in CONFIRM_WORDS:
        return _say("signup_bad_confirm", state="confirm", data=data)
    v = _village_of(ctx, data)
    try:
        hh = register_household(ctx.session, ctx.vault, village=v,
                                 members=_new_members(ctx, data["members"]),
                                 phone=_phone(ctx, data), openid=ctx.openid, actor=ctx.openid,
                                 today=ctx.today)
    except HouseholdError as e:
        return _refused(ctx, e, data)
    year = scheme_years.enrolling(ctx.session, v.pool_id, ctx.today)
    due, _ = _due(ctx, {**data, "year_id": year.id}, data["members"])
    return _say("signup_done", household=hh.number, count=len(data["members"]), due=due,
                closes=year.enrolment_closes, awaits_village=hh.awaits_village,
                village=_contact(v))


def renew_confirm(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    if msg.text.strip() not in CONFIRM_WORDS:
        return _say("signup_bad_confirm", state="renew_confirm", data=data)
    s = ctx.session
    hh = s.get_one(Household, data["household_id"])
    year = scheme_years.enrolling(s, hh.pool_id, ctx.today)
    if year is None:
        return _closed(ctx, hh.village)
    try:
        renew_household(s, ctx.vault, hh, year, actor=ctx.openid)
    except HouseholdError as e:
        return _refused(ctx, e, {"village_id": hh.village_id})
    return _say("signup_done", household=hh.number, count=len(hh.members),
                due=personal_due_fen(year.scheme, hh.members),
                closes=year.enrolment_closes, renewed=True,
                awaits_village=hh.awaits_village, village=hh.village.full_name)


# ---------------------------------------------------------------------------------------------
# 添加成员: a member added to a registered household (newborns outside the window).

def _add_entry(ctx: Ctx) -> Step:
    s = ctx.session
    hh = headed_household(s, ctx.openid)
    if hh is None:
        other = household_for_user(s, ctx.openid)
        return _say("signup_add_not_head", household=other.number if other else None)
    open_year = scheme_years.enrolling(s, hh.pool_id, ctx.today)
    running = scheme_years.running(s, hh.pool_id, ctx.today)
    if open_year is not None and household_enrolled(s, hh.id, open_year.id):
        year, newborn_only = open_year, False
    elif running is not None and household_enrolled(s, hh.id, running.id):
        year, newborn_only = running, True
    else:
        return _say("signup_not_enrolled", household=hh.number, village=hh.village.full_name,
                    end=True, **window_info(s, hh.pool_id, ctx.today))
    if len(hh.members) >= MAX_MEMBERS:
        return _say("signup_refused", code="too_many", village=hh.village.full_name,
                    limit=MAX_MEMBERS)
    data = {"mode": "add", "household_id": hh.id, "village_id": hh.village_id,
            "pool_id": hh.pool_id, "year_id": year.id, "members": [], "cur": None}
    return _say("signup_add_ask_name", state="member_name", data=data, household=hh.number,
                newborn_only=newborn_only, year_start=year.start, year_end=year.end,
                newborn_days=year.scheme.enrolment.newborn_days)


def _add_summary(ctx: Ctx, data: dict) -> Step:
    member = data["cur"]
    due, _ = _due(ctx, data, [member])
    hh = ctx.session.get_one(Household, data["household_id"])
    return _say("signup_add_summary", state="add_confirm", data=data, household=hh.number,
                member=_view(member), due=due)


def add_confirm(ctx: Ctx, msg: Incoming, data: dict) -> Step:
    if msg.text.strip() not in CONFIRM_WORDS:
        return _say("signup_bad_confirm", state="add_confirm", data=data)
    s = ctx.session
    hh = s.get_one(Household, data["household_id"])
    (member,) = _new_members(ctx, [data["cur"]])
    try:
        enrolment = add_member(s, ctx.vault, hh, member, actor=ctx.openid, today=ctx.today)
    except HouseholdError as e:
        if e.code in ("not_newborn", "not_enrolled"):
            return _say("signup_not_newborn" if e.code == "not_newborn" else
                        "signup_not_enrolled", name=mask_name(member.name),
                        village=hh.village.full_name, household=hh.number, end=True, **e.details)
        return _refused(ctx, e, data)
    year = s.get_one(SchemeYear, enrolment.scheme_year_id)
    summary = _household_summary(ctx, hh, year)
    return _say("signup_add_done", household=hh.number, name=mask_name(member.name),
                due=summary["due"], count=len(hh.members))


register(Dialogue("signup", entry, {
    "village": village, "head_name": head_name, "head_id": head_id, "phone": phone,
    "head_insurance": head_insurance, "more": more, "member_name": member_name,
    "member_id": member_id, "member_relation": member_relation,
    "member_insurance": member_insurance, "category": category, "confirm": confirm,
    "renew_confirm": renew_confirm,
    "add_confirm": add_confirm,
}, words=(ADD_WORD,)))
