"""Demo scene: after a hospital stay the villager claims by photo — picks the member, labels one
photo, lets OCR recognise the other two (the bot pushes what is still missing), types the
out-of-pocket amount, submits (claim number and review due date), and checks the progress.

Uses the villager's household from the earlier scenes (its head's enrolment paid by the payment
scene); without one, it makes a one-member household with a paid enrolment through the models.
Leaves state["claim"] (the submitted claim's number) for the review scene.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select


def _ensure_paid_household(x, openid: str) -> None:
    from stdnum.cn import ric

    from core import claims
    from core.crypto import mask_id
    from core.households import household_for_user
    from core.models import (Enrolment, EnrolmentStatus, Household, HouseholdLink,
                             InsuranceType, LinkRole, Member, Relation, Village, utcnow)
    from core.scheme import scheme_year_on

    today = datetime.now(x.cfg.tz).date()
    with x.db.session() as s:
        hh = household_for_user(s, openid)
        if hh is None:
            village = s.scalar(select(Village).where(Village.full_name == "示范镇/东村"))
            hh = Household(number="H100050", pool_id=village.pool_id, village_id=village.id,
                           phone_enc=x.vault.encrypt("13800000000"),
                           phone_masked="138****0000")
            s.add(hh)
            s.flush()
            body = "32058219600517123"
            idn = body + ric.calc_check_digit(body)
            s.add(Member(household_id=hh.id, name="王大山", id_number_enc=x.vault.encrypt(idn),
                         id_number_hash=x.vault.lookup_hash(idn), id_number_masked=mask_id(idn),
                         birth_year=1960, relation=Relation.head,
                         insurance=InsuranceType.resident))
            s.add(HouseholdLink(household_id=hh.id, openid=openid, role=LinkRole.head))
            s.flush()
            print("  (没有前面的参加/缴费场景：已用数据模型建了一户，户主已缴费)")
        head = hh.members[0]
        if claims.eligibility(s, head, today)[0] is None:
            year = scheme_year_on(s, hh.pool_id, today)
            enrolment = s.scalar(select(Enrolment).where(Enrolment.member_id == head.id,
                                                         Enrolment.scheme_year_id == year.id))
            if enrolment is None:
                enrolment = Enrolment(member_id=head.id, scheme_year_id=year.id,
                                      id_number_hash=head.id_number_hash)
                s.add(enrolment)
            enrolment.status, enrolment.paid_at = EnrolmentStatus.paid, utcnow()
            print("  (户主本年度还没有缴费：演示里直接记为已缴)")


def _photos(x) -> dict:
    from bot.devtools import claim_samples as cs

    today = datetime.now(x.cfg.tz).date()
    stay = cs.Stay(admission=today - timedelta(days=20), discharge=today - timedelta(days=12))
    folder = x.cfg.data_dir / "demo_photos"
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "出院记录": cs.save(cs.photo(cs.discharge_record(stay), 51), folder / "出院记录.jpg"),
        "费用清单": cs.save(cs.photo(cs.itemized_bill(stay), 52), folder / "费用清单.jpg"),
        "结算单": cs.save(cs.photo(cs.settlement_sheet(stay), 53), folder / "结算单.jpg"),
    }


def _image(t, x, openid: str, what: str, path) -> None:
    """Send a photo; wait until the outbox has downloaded and read it, then show its pushes."""
    import time

    from core.models import ClaimDocument

    print(f"\n【村民】 [发来一张照片：{what}]")
    since = t.v.last_call_id()
    r = t.v.image(openid, path)
    t.show(r)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with x.db.session() as s:
            waiting = s.scalar(select(ClaimDocument.id).where(ClaimDocument.sha256.is_(None))
                               .limit(1))
        if waiting is None:
            break
        time.sleep(0.2)
    for call in t.v.wait_pushes(openid, since, 1.5):
        body = call.get("json") or {}
        if body.get("msgtype") == "text":
            print("  ⇢ " + body["text"]["content"].replace("\n", "\n    "))


def scene(t, x, state: dict) -> None:
    from bot.devtools.claim_samples import FontMissing

    villager = state["villager"]
    print("\n【村民出院后申请补助：拍照上传三项资料】")
    try:
        photos = _photos(x)
    except FontMissing as exc:  # FONT_FILE names a file that is not a Chinese font
        raise SystemExit(f"huzhu demo: 无法画出示例单据：{exc}") from None
    _ensure_paid_household(x, villager)
    r = t.say("村民", villager, "3", wait=0)
    if "哪位家人" in r.reply:
        t.say("村民", villager, "1", wait=0)
    t.say("村民", villager, "出院记录", wait=0)
    _image(t, x, villager, "出院记录（先说明了是哪种）", photos["出院记录"])
    _image(t, x, villager, "费用清单（没有说明，由文字识别判断）", photos["费用清单"])
    _image(t, x, villager, "结算单（没有说明）", photos["结算单"])
    t.say("村民", villager, "18116.50", wait=0)
    r = t.say("村民", villager, "提交", wait=0)
    found = re.search(r"C\d{8,}", r.reply)
    if found:
        state["claim"] = found.group(0)
        _show_readout(x, found.group(0))
    t.say("村民", villager, "4", wait=0)


def _show_readout(x, number: str) -> None:
    from core.models import Claim

    with x.db.session() as s:
        claim = s.scalar(select(Claim).where(Claim.number == number))
        fields = (claim.ocr or {}).get("fields") or {}
        print(f"\n（申请 {number} 的结算单识别结果，供审核员参考：）")
        for name, f in fields.items():
            print(f"    {name} = {f['value']}  (置信度 {f['confidence']:.2f})")
        print(f"    到期：{claim.due_date}  重复标记：{claim.flags.get('possible_duplicate') or '无'}")
