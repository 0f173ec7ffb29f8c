"""Helpers of the console's tests (HTTP and browser): administrators bound through the chat, a
signed-in requests session from `/后台`, claims with real photos stored, an exported batch."""
from __future__ import annotations

import io
import re
from datetime import timedelta

import requests
from sqlalchemy import select

from core.admins import create_invite
from core.models import Claim, ClaimDocument, Household, Member
from tests.factories import M, local_today, make_claim, make_household

TODAY = local_today()
ADMISSION = TODAY - timedelta(days=20)
DISCHARGE = TODAY - timedelta(days=12)
LOGIN_RE = re.compile(r"/admin/login/(\S+)")


def bind(villager, db, openid: str, role: str, **scope) -> None:
    with db.session() as s:
        code = create_invite(s, role, "cli:test", **scope)
    assert "绑定成功" in villager.text(openid, f"/绑定 {code}").reply


def login_link(villager, openid: str) -> str:
    """The path of the link `/后台` answers with (the bot's PUBLIC_URL is not the test server)."""
    reply = villager.text(openid, "/后台").reply
    m = LOGIN_RE.search(reply)
    assert m, reply
    return f"/admin/login/{m.group(1)}"


def sign_in(bot, villager, openid: str) -> requests.Session:
    web = requests.Session()
    r = web.get(bot.url + login_link(villager, openid), timeout=10)
    assert r.status_code == 200 and "补助申请" in r.text, r.text[:500]
    return web


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def photo_bytes(kind: str) -> bytes:
    from bot.devtools import claim_samples as cs

    img = {"discharge_record": cs.discharge_record, "itemized_bill": cs.itemized_bill,
           "settlement_sheet": cs.settlement_sheet}[kind](cs.Stay(
               admission=ADMISSION, discharge=DISCHARGE))
    img = img.convert("RGB").resize((540, 720))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=70)
    return buf.getvalue()


def claim_with_photos(db, cfg, household_id: int, member: str = "head", **fields) -> str:
    """A submitted claim whose three documents are real pictures stored in DATA_DIR/media."""
    from core.media import store

    with db.session() as s:
        hh = s.get(Household, household_id)
        mem = hh.members[0] if member == "head" else hh.members[1]
        claim = make_claim(s, hh, s.get(Member, mem.id), **fields)
        for doc in claim.documents:
            stored = store(cfg.data_dir, photo_bytes(doc.kind.value))
            doc.sha256, doc.content_type, doc.size = (stored.sha256, stored.content_type,
                                                       stored.size)
        return claim.number


def good_ocr() -> dict:
    d = lambda day: day.isoformat()  # noqa: E731
    return {"fields": {"out_of_pocket_fen": {"value": 1200000, "confidence": 0.97},
                       "admission_date": {"value": d(ADMISSION), "confidence": 0.95},
                       "discharge_date": {"value": d(DISCHARGE), "confidence": 0.93},
                       "insurance": {"value": "resident", "confidence": 0.92},
                       "hospital": {"value": "县人民医院", "confidence": 0.91}},
            "consistent": True, "documents": {}}


def home(db, vault, openid: str, village: str = "示范镇/东村") -> dict:
    people = [M("王大山"), M("李小花", "spouse")]
    with db.session() as s:
        hh = make_household(s, vault, people, village=village, openid=openid)
        return {"id": hh.id, "number": hh.number, "masked_id": hh.members[0].id_number_masked,
                "full_id": people[0].id_number, "head": hh.members[0].id}


def claim_of(db, number: str) -> Claim:
    with db.session() as s:
        c = s.scalar(select(Claim).where(Claim.number == number))
        s.expunge(c)
        return c
