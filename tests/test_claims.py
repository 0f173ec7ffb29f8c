"""Claims by photo, through the webhook and the emulator: the 申请补助 dialogue, photos stored by
SHA-256 and read by OCR (through the outbox), refusals, duplicate flags, the /补件 loop, 查询进度,
and the notification of status changes inside and outside the 48-hour window."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.devtools import claim_samples as samples
from core import claims as svc
from core import media
from core.models import (AuditLog, Claim, ClaimDocument, ClaimStatus as S, DocumentKind,
                         Enrolment, EnrolmentStatus, Household, HouseholdLink, LinkRole,
                         OutboxMessage, OutboxStatus, WechatUser, utcnow)
from core.workdays import review_due_date
from tests.factories import local_today, M, make_household

K = DocumentKind
NUMBER = re.compile(r"C\d{8,}")


# ---------------------------------------------------------------------------------------------
# sample photos (drawn once per session)

@pytest.fixture(scope="session")
def docs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("docs")
    stay2 = samples.Stay(name="李小花", hospital="苏州大学附属第一医院", total_fen=2000000,
                         fund_paid_fen=1500000, self_pay_fen=400000, self_funded_fen=100000,
                         admission=date(2025, 6, 1), discharge=date(2025, 6, 9))
    files = {
        "discharge": samples.save(samples.photo(samples.discharge_record(), 1), d / "dr.jpg"),
        "bill": samples.save(samples.photo(samples.itemized_bill(), 2), d / "ib.jpg"),
        "sheet": samples.save(samples.photo(samples.settlement_sheet(), 3), d / "ss.jpg"),
        "other": samples.save(samples.other_photo(), d / "other.png"),
        "sheet2": samples.save(samples.photo(samples.settlement_sheet(stay2), 13), d / "ss2.jpg"),
        "discharge2": samples.save(samples.photo(samples.discharge_record(stay2), 11),
                                   d / "dr2.webp"),
        "bill2": samples.save(samples.photo(samples.itemized_bill(stay2), 12), d / "ib2.png"),
    }
    # the first settlement sheet again, re-compressed and resized: another file, same picture
    img = Image.open(files["sheet"])
    files["sheet_copy"] = samples.save(img.resize((900, 1200)), d / "ss_copy.jpg", quality=60)
    (d / "letter.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF\n")
    files["pdf"] = d / "letter.pdf"
    Image.new("RGB", (40, 40), "red").save(d / "sticker.gif", "GIF")
    files["gif"] = d / "sticker.gif"
    noise = Image.frombytes("RGB", (2000, 1900), os.urandom(2000 * 1900 * 3))
    noise.save(d / "huge.png", "PNG", compress_level=0)
    files["huge"] = d / "huge.png"
    assert files["huge"].stat().st_size > media.MAX_BYTES
    return files


# ---------------------------------------------------------------------------------------------
# helpers

def household(app_ctx, openid, members=None, enrolment="paid"):
    with app_ctx.db.session() as s:
        hh = make_household(s, app_ctx.vault, members or [M("王大山")], openid=openid,
                            enrolment=enrolment)
        return hh.id


def wait_for(pred, seconds=60.0, step=0.1):  # a photo is OCR'd: slow on a busy machine
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def claim_of(db, openid=None, number=None) -> Claim | None:
    with db.session() as s:
        q = select(Claim)
        if number:
            q = q.where(Claim.number == number)
        else:
            hh = s.scalar(select(HouseholdLink.household_id).where(HouseholdLink.openid == openid))
            q = q.where(Claim.household_id == hh)
        claim = s.scalars(q.order_by(Claim.id.desc())).first()
        if claim is not None:
            claim.documents  # load them before the session closes
        s.expunge_all()
        return claim


def processed(db, openid) -> bool:
    """Every photo of the user's newest claim is downloaded and read."""
    claim = claim_of(db, openid)
    return bool(claim and claim.documents and all(d.sha256 for d in claim.documents))


def pushed(villager, openid, since) -> list[str]:
    texts = []
    for call in villager.calls(touser=openid, since=since):
        body = call.get("json") or {}
        if body.get("msgtype") == "text":
            texts.append(body["text"]["content"])
    return texts


def send_labelled(villager, db, openid, label, path):
    assert "请发" in villager.text(openid, label).reply
    r = villager.image(openid, path)
    assert wait_for(lambda: processed(db, openid))
    return r


# ---------------------------------------------------------------------------------------------
# the whole dialogue

def test_full_claim_dialogue_through_webhook_and_emulator(app_ctx, villager, db, docs, cfg,
                                                          caplog):
    caplog.set_level(logging.DEBUG)
    openid = "o_claim_full"
    hh_id = household(app_ctx, openid)
    with db.session() as s:  # a relative helping the household sees the status changes too
        s.add(HouseholdLink(household_id=hh_id, openid="o_claim_proxy", role=LinkRole.proxy))
    villager.text("o_claim_proxy", "0")  # the proxy's 48-hour window is open

    r = villager.text(openid, "3")
    assert "为王*山申请补助" in r.reply and "出院记录、费用清单、结算单" in r.reply
    assert "哪位家人" not in r.reply  # one member: no choice

    # a labelled photo: answered at once with what is still missing
    assert "请发出院记录的照片" in villager.text(openid, "出院记录").reply
    r = villager.image(openid, docs["discharge"])
    assert "收到出院记录" in r.reply and "还差：费用清单、结算单" in r.reply
    assert wait_for(lambda: processed(db, openid))

    # an unlabelled photo: recognised by OCR, the missing list follows as a push
    since = villager.last_call_id()
    r = villager.image(openid, docs["bill"])
    assert "正在识别" in r.reply
    texts = wait_for(lambda: pushed(villager, openid, since))
    assert "刚才的照片是费用清单" in texts[0] and "还差：结算单" in texts[0]

    since = villager.last_call_id()
    villager.image(openid, docs["sheet"])
    texts = wait_for(lambda: pushed(villager, openid, since))
    assert "刚才的照片是结算单" in texts[0] and "三种材料已收齐" in texts[0]
    assert "回复“提交”" in texts[0]

    # the optional values as text
    assert "个人自付 18,116.50 元" in villager.text(openid, "18116.50").reply
    assert "出院日期 2025年3月15日" in villager.text(openid, "2025-03-15").reply

    since = villager.last_call_id()
    r = villager.text(openid, "提交")
    number = NUMBER.search(r.reply).group(0)
    due = review_due_date(local_today(), 5)
    assert "申请已提交" in r.reply and f"{due.year}年{due.month}月{due.day}日前" in r.reply

    claim = claim_of(db, number=number)
    assert claim.status is S.submitted and claim.due_date == due
    assert sorted(d.kind.value for d in claim.documents) == sorted(
        ["discharge_record", "itemized_bill", "settlement_sheet"])
    for d in claim.documents:
        path = media.path_for(cfg.data_dir, d.sha256, d.content_type)
        assert path.is_file() and path.parent.parent == cfg.data_dir / "media"
        assert media.hashlib.sha256(path.read_bytes()).hexdigest() == d.sha256
        assert d.phash and d.size == path.stat().st_size and d.ocr_text
    assert claim.stated == {"out_of_pocket_fen": 1811650, "discharge_date": "2025-03-15"}
    fields = claim.ocr["fields"]
    assert fields["out_of_pocket_fen"]["value"] == 1811650
    assert fields["total_fen"]["value"] == 4823650
    assert fields["fund_paid_fen"]["value"] == 3012000
    assert fields["admission_date"]["value"] == "2025-03-02"
    assert fields["discharge_date"]["value"] == "2025-03-15"
    assert fields["hospital"]["value"] == "张家港市第一人民医院"
    assert fields["insurance"]["value"] == "resident"
    assert all(0.5 < f["confidence"] <= 1 for f in fields.values())
    assert claim.ocr["consistent"] is True and not claim.flags.get("possible_duplicate")
    # the ID number printed on the sheet is kept masked only
    sheet = next(d for d in claim.documents if d.kind is K.settlement_sheet)
    full_id = samples.Stay().id_number
    assert "320*************36" in sheet.ocr_text
    assert full_id not in sheet.ocr_text and full_id not in json.dumps(claim.ocr)
    assert "media document=" in caplog.text  # the deliverer logged, without personal data
    assert full_id not in caplog.text and "王大山" not in caplog.text

    # the status change: audited, and pushed to the proxy (the sender had it in the reply)
    with db.session() as s:
        actions = list(s.scalars(select(AuditLog.action).where(AuditLog.entity_id == number)))
    assert "claim.collecting" in actions and "claim.submitted" in actions
    proxy_texts = wait_for(lambda: pushed(villager, "o_claim_proxy", since))
    assert any(number in t and "已提交" in t for t in proxy_texts)
    time.sleep(0.5)
    assert not any(number in t for t in pushed(villager, openid, since))

    # progress shows it
    r = villager.text(openid, "查询进度")
    assert number in r.reply and "已提交，等待审核" in r.reply
    assert f"{due.year}年{due.month}月{due.day}日前完成" in r.reply


def test_member_choice_and_who_may_claim(app_ctx, villager, db, docs):
    openid = "o_claim_family"
    hh_id = household(app_ctx, openid, [M("王大山"), M("李小花", "spouse"), M("王小明", "child")])
    with db.session() as s:  # the child's share is not paid yet
        e = s.scalars(select(Enrolment).join(Enrolment.member)
                      .where(Enrolment.member.has(name="王小明"))).one()
        e.status, e.paid_at = EnrolmentStatus.pending, None
    r = villager.text(openid, "申请补助")
    assert "1 王*山（户主）" in r.reply and "2 李*花（配偶）" in r.reply
    assert "3 王*明（子女）" in r.reply and "李小花" not in r.reply
    assert "没有这个序号" in villager.text(openid, "7").reply
    r = villager.text(openid, "3")
    assert "王*明本年度的互助费还没有缴" in r.reply and "回复 2 缴费" in r.reply
    assert "回复序号" in r.reply
    with db.session() as s:
        assert s.scalar(select(func.count(Claim.id))) == 0
    r = villager.text(openid, "李小花")  # the word works as well as the number
    assert "为李*花申请补助" in r.reply
    villager.image(openid, docs["discharge2"])
    assert wait_for(lambda: processed(db, openid))
    with db.session() as s:
        c = s.scalar(select(Claim).where(Claim.household_id == hh_id))
        assert c.status is S.collecting and c.member.name == "李小花"
        assert c.documents[0].kind is K.discharge_record


def test_who_may_not_claim_is_told_why(app_ctx, villager, db):
    assert "还没有参加互助" in villager.text("o_claim_stranger", "申请补助").reply
    household(app_ctx, "o_claim_unpaid", enrolment="pending")
    r = villager.text("o_claim_unpaid", "申请补助")
    assert "还没有缴" in r.reply and "回复 2 缴费" in r.reply
    household(app_ctx, "o_claim_never", enrolment=None)
    r = villager.text("o_claim_never", "申请补助")
    assert "没有参加本年度的互助" in r.reply and "参加互助" in r.reply
    with db.session() as s:
        assert s.scalar(select(func.count(Claim.id))) == 0
        assert s.scalar(select(func.count(ClaimDocument.id))) == 0


def test_an_image_outside_any_dialogue_starts_the_claim(app_ctx, villager, db, docs):
    household(app_ctx, "o_claim_img1")
    r = villager.image("o_claim_img1", docs["sheet"])
    assert "为王*山申请补助" in r.reply and "正在识别" in r.reply
    assert wait_for(lambda: processed(db, "o_claim_img1"))
    assert claim_of(db, "o_claim_img1").documents[0].kind is K.settlement_sheet

    # several members: the photo waits for the member choice, then belongs to that claim
    household(app_ctx, "o_claim_img2", [M("张三丰"), M("张翠山", "child")])
    r = villager.image("o_claim_img2", docs["discharge2"])
    assert "哪位家人" in r.reply
    with db.session() as s:
        assert s.scalar(select(func.count(ClaimDocument.id))) == 1
    r = villager.text("o_claim_img2", "2")
    assert "为张*山申请补助" in r.reply and "正在识别" in r.reply
    assert wait_for(lambda: processed(db, "o_claim_img2"))
    claim = claim_of(db, "o_claim_img2")
    with db.session() as s:
        assert s.get(Claim, claim.id).member.name == "张翠山"
    assert [d.kind for d in claim.documents] == [K.discharge_record]


def test_refusals_change_nothing(app_ctx, villager, db, docs):
    openid = "o_claim_refuse"
    household(app_ctx, openid)
    villager.text(openid, "申请补助")
    # 提交 with nothing yet, and bad texts: a clear answer, nothing stored
    r = villager.text(openid, "提交")
    assert "还差：出院记录、费用清单、结算单" in r.reply and "收齐后再回复" in r.reply
    assert "没有看懂“你好”" in villager.text(openid, "你好").reply
    assert "金额不对" in villager.text(openid, "0.5").reply
    tomorrow = local_today() + timedelta(days=1)
    assert "日期不对" in villager.text(openid, f"{tomorrow:%Y-%m-%d}").reply
    assert "日期不对" in villager.text(openid, "2025-02-30").reply
    assert "现在没有要选的序号" in villager.text(openid, "2").reply
    with db.session() as s:
        assert s.scalar(select(func.count(Claim.id))) == 0

    # a file that is not an image, an image type not accepted, and one too large
    for key, words in (("pdf", "不是照片"), ("gif", "不是照片"), ("huge", "太大")):
        since = villager.last_call_id()
        villager.image(openid, docs[key])
        texts = wait_for(lambda: pushed(villager, openid, since))
        assert words in texts[0] and "还差：出院记录、费用清单、结算单" in texts[0], key
        with db.session() as s:
            assert s.scalar(select(func.count(ClaimDocument.id))) == 0
            refused = s.scalar(select(func.count(AuditLog.id))
                               .where(AuditLog.action == "claim.document_refused"))
    assert refused == 3
    assert not list((app_ctx.cfg.data_dir / "media").rglob("*.*"))  # nothing stored

    # the same photo twice in one claim is kept once
    send_labelled(villager, db, openid, "结算单", docs["sheet"])
    since = villager.last_call_id()
    villager.image(openid, docs["sheet"])
    texts = wait_for(lambda: pushed(villager, openid, since))
    assert "已经收到过了" in texts[0]
    assert [d.kind for d in claim_of(db, openid).documents] == [K.settlement_sheet]
    r = villager.text(openid, "提交")
    assert "还差：出院记录、费用清单" in r.reply
    assert claim_of(db, openid).status is S.collecting


def test_an_unrecognisable_photo_is_asked_about(app_ctx, villager, db, docs):
    openid = "o_claim_ask"
    household(app_ctx, openid)
    villager.text(openid, "申请补助")
    since = villager.last_call_id()
    villager.image(openid, docs["other"])
    texts = wait_for(lambda: pushed(villager, openid, since))
    assert "认不出是哪种材料" in texts[0] and "1 出院记录" in texts[0] and "3 结算单" in texts[0]
    assert claim_of(db, openid).documents[0].kind is None
    # 提交 asks again rather than submitting
    assert "认不出" in villager.text(openid, "提交").reply
    r = villager.text(openid, "1")
    assert "这张是出院记录" in r.reply and "还差：费用清单、结算单" in r.reply
    assert claim_of(db, openid).documents[0].kind is K.discharge_record

    # another one, deleted instead
    since = villager.last_call_id()
    villager.image(openid, docs["other"])  # the same file again: repeated
    texts = wait_for(lambda: pushed(villager, openid, since))
    assert "已经收到过了" in texts[0]
    odd = docs["other"].parent / "other2.png"
    samples.save(samples.other_photo(seed=99, with_text=False), odd)
    since = villager.last_call_id()
    villager.image(openid, odd)
    assert "认不出" in wait_for(lambda: pushed(villager, openid, since))[0]
    r = villager.text(openid, "删除")
    assert "这张照片不要了" in r.reply
    assert [d.kind for d in claim_of(db, openid).documents] == [K.discharge_record]


def test_a_retried_image_message_gives_one_document(app_ctx, villager, db, docs):
    openid = "o_claim_retry"
    household(app_ctx, openid)
    villager.text(openid, "申请补助")
    villager.text(openid, "费用清单")
    up = villager.http.post(f"{villager.emulator}/_emulator/media",
                            files={"media": ("ib.jpg", docs["bill"].read_bytes())}).json()
    xml = villager._xml(openid, "image", {"PicUrl": up["pic_url"], "MediaId": up["media_id"]},
                        msg_id=880000001)
    first = villager.post(openid, xml)
    again = [villager.post(openid, xml) for _ in range(3)]
    assert "收到费用清单" in first.reply and all(r.reply == first.reply for r in again)
    assert wait_for(lambda: processed(db, openid))
    with db.session() as s:
        assert s.scalar(select(func.count(ClaimDocument.id))) == 1
        doc = s.scalars(select(ClaimDocument)).one()
        assert doc.source_key == f"msg:{openid}:880000001"
        claim = doc.claim
        # the service itself: the same source key gives back the same document
        again_doc, created = svc.add_document(s, claim, kind=None, media_id="x",
                                              source_key=f"msg:{openid}:880000001", actor=openid)
        assert again_doc.id == doc.id and not created
        downloads = s.scalar(select(func.count(OutboxMessage.id))
                             .where(OutboxMessage.kind == "media.download"))
    assert downloads == 1


def test_duplicate_photos_of_another_claim_flag_the_claim(app_ctx, villager, db, docs):
    first, second = "o_claim_dup1", "o_claim_dup2"
    household(app_ctx, first)
    household(app_ctx, second, [M("赵老四")])
    villager.text(first, "申请补助")
    for label, key in (("出院记录", "discharge"), ("费用清单", "bill"), ("结算单", "sheet")):
        send_labelled(villager, db, first, label, docs[key])
    number_a = NUMBER.search(villager.text(first, "提交").reply).group(0)

    villager.text(second, "申请补助")
    send_labelled(villager, db, second, "出院记录", docs["discharge2"])  # a different stay
    assert not claim_of(db, second).flags.get("possible_duplicate")
    send_labelled(villager, db, second, "费用清单", docs["bill2"])
    assert not claim_of(db, second).flags.get("possible_duplicate")
    send_labelled(villager, db, second, "结算单", docs["sheet"])  # the very same file
    flags = claim_of(db, second).flags
    assert flags["possible_duplicate"] == [number_a]
    assert flags["duplicate_matches"][0]["match"] == "sha256"
    # not rejected: the claim goes on and can be submitted for the reviewer to judge
    r = villager.text(second, "提交")
    number_b = NUMBER.search(r.reply).group(0)
    claim_b = claim_of(db, number=number_b)
    assert claim_b.status is S.submitted and claim_b.flags["possible_duplicate"] == [number_a]
    assert claim_of(db, number=number_a).flags == {}


def test_perceptual_hash_catches_a_resaved_copy_but_not_another_sheet(app_ctx, db, docs):
    """pHash distance ≤ 4 against documents of other claims (service level, the deliverer's
    own processing function)."""
    from bot.outbox.deliver import Context
    from bot.outbox.media import process

    ctx = Context(app_ctx.cfg, db)
    hh_a, hh_b = household(app_ctx, "o_ph_a"), household(app_ctx, "o_ph_b", [M("钱大")])

    def claim_with(hh_id, path, key):
        with db.session() as s:
            h = s.get(Household, hh_id)
            c = svc.start_claim(s, h, h.members[0], "test", local_today())
            doc, _ = svc.add_document(s, c, kind=K.settlement_sheet, media_id=None,
                                      source_key=key, actor=None)
            ids = c.id, c.number, doc.id
        assert process(ctx, ids[2], path.read_bytes(), None) == "stored"
        return ids

    _, number_a, _ = claim_with(hh_a, docs["sheet"], "k-a")
    b_id, _, _ = claim_with(hh_b, docs["sheet_copy"], "k-b")  # re-saved and resized
    with db.session() as s:
        b = s.get(Claim, b_id)
        assert b.flags["possible_duplicate"] == [number_a]
        match = b.flags["duplicate_matches"][0]
        assert match["match"] == "phash" and match["distance"] <= 4
    c_id, _, _ = claim_with(hh_b, docs["sheet2"], "k-c")  # another stay's sheet
    with db.session() as s:
        assert not s.get(Claim, c_id).flags.get("possible_duplicate")


def test_need_documents_loop(app_ctx, villager, db, docs):
    openid = "o_claim_more"
    household(app_ctx, openid)
    villager.text(openid, "申请补助")
    for label, key in (("出院记录", "discharge"), ("费用清单", "bill"), ("结算单", "sheet")):
        send_labelled(villager, db, openid, label, docs[key])
    number = NUMBER.search(villager.text(openid, "提交").reply).group(0)

    since = villager.last_call_id()
    with db.session() as s:  # the reviewer's /补件 (handlers of the review area do this)
        claim = s.scalar(select(Claim).where(Claim.number == number))
        claim.note = "结算单看不清，请重新拍"
        svc.transition(s, claim, S.need_documents, "o_reviewer", notify="claim_need_documents")
    app_ctx.waker.wake()
    texts = wait_for(lambda: pushed(villager, openid, since))
    assert number in texts[0] and "结算单看不清" in texts[0] and "提交" in texts[0]

    # outside the dialogue: 提交 with no new photo is refused, a photo goes to that claim
    r = villager.text(openid, "提交")
    assert "还没有收到补充的照片" in r.reply
    assert claim_of(db, number=number).status is S.need_documents
    r = villager.image(openid, docs["sheet2"])
    assert "正在识别" in r.reply
    assert wait_for(lambda: processed(db, openid))
    since = villager.last_call_id()
    r = villager.text(openid, "提交")
    assert "补充材料已提交" in r.reply and number in r.reply
    claim = claim_of(db, number=number)
    assert claim.status is S.submitted and len(claim.documents) == 4
    # the newest settlement sheet's read-out is the claim's now
    assert claim.ocr["fields"]["out_of_pocket_fen"]["value"] == 500000
    with db.session() as s:
        actions = list(s.scalars(select(AuditLog.action).where(AuditLog.entity_id == number)
                                 .order_by(AuditLog.id)))
    assert actions.count("claim.submitted") == 2 and "claim.need_documents" in actions


def _claims_in(db, hh_id, statuses):
    made = {}
    with db.session() as s:
        h = s.get(Household, hh_id)
        for status in statuses:
            c = svc.start_claim(s, h, h.members[0], "test", local_today())
            c.status = status
            if status in (S.approved, S.paid):
                c.amount_fen = 456789
            if status is S.submitted:
                c.due_date = date(2026, 12, 1)
            if status is S.rejected:
                c.reasons = ["below_threshold"]
            s.flush()
            made[status] = c.number
    return made


def test_progress_lists_each_claim_with_status_amount_and_next_step(app_ctx, villager, db):
    openid = "o_claim_progress"
    hh_id = household(app_ctx, openid, [M("王大山"), M("李小花", "spouse")])
    assert "还没有补助申请" in villager.text(openid, "查询进度").reply
    made = _claims_in(db, hh_id, [S.collecting, S.submitted, S.approved])
    r = villager.text(openid, "4")
    assert f"{made[S.submitted]} 王*山：已提交，等待审核" in r.reply
    assert "2026年12月1日前完成" in r.reply
    assert f"{made[S.approved]} 王*山：审核通过，补助 4,567.89 元" in r.reply
    assert "回复“银行卡”登记银行卡" in r.reply
    assert f"{made[S.collecting]} 王*山：还没提交" in r.reply and "还差出院记录" in r.reply
    assert "王大山" not in r.reply and "更早" not in r.reply

    # the three newest, and how many older ones there are
    openid = "o_claim_progress2"
    hh_id = household(app_ctx, openid, [M("孙老五")])
    older = _claims_in(db, hh_id, [S.rejected, S.submitted])
    made = _claims_in(db, hh_id, [S.rejected, S.paid, S.in_review])
    r = villager.text(openid, "查询进度")
    assert f"{made[S.rejected]} 孙*五：未通过" in r.reply and "未达起付标准" in r.reply
    assert f"{made[S.paid]} 孙*五：已发放，补助 4,567.89 元" in r.reply
    assert f"{made[S.in_review]} 孙*五：审核中" in r.reply
    assert older[S.submitted] not in r.reply and "另有 2 笔更早的申请" in r.reply
    assert len(r.reply.splitlines()) <= 8
    assert "还没有参加互助" in villager.text("o_nobody", "查询进度").reply


# ---------------------------------------------------------------------------------------------
# notifications of a status change: the 48-hour window

def _change_status(app_ctx, number):
    with app_ctx.db.session() as s:
        claim = s.scalar(select(Claim).where(Claim.number == number))
        claim.note = "费用清单缺页"
        svc.transition(s, claim, S.need_documents, "o_reviewer", notify="claim_need_documents")


def _held(db, openid) -> bool:
    with db.session() as s:
        return any((r.last_error or "").startswith("held") for r in s.scalars(
            select(OutboxMessage).where(OutboxMessage.recipient == openid)))


def _submitted_claim(app_ctx, openid):
    household(app_ctx, openid)
    with app_ctx.db.session() as s:
        hh = s.scalar(select(HouseholdLink).where(HouseholdLink.openid == openid)).household
        c = svc.start_claim(s, hh, hh.members[0], openid, local_today())
        c.status = S.submitted
        return c.number


def _open_window(villager, db, openid, hours_ago=0.0):
    villager.text(openid, "0")
    with db.session() as s:
        user = s.scalar(select(WechatUser).where(WechatUser.openid == openid))
        user.last_inbound_at = utcnow() - timedelta(hours=hours_ago)
        user.pushes_since_inbound = 0


def test_inside_the_window_a_customer_service_message(app_ctx, villager, db, bot):
    openid = "o_win_in"
    number = _submitted_claim(app_ctx, openid)
    _open_window(villager, db, openid, hours_ago=47)
    since = villager.last_call_id()
    _change_status(app_ctx, number)
    bot.x.waker.wake()
    calls = wait_for(lambda: villager.calls(touser=openid, since=since))
    assert calls[0]["path"] == "/cgi-bin/message/custom/send"
    assert number in calls[0]["json"]["text"]["content"]


def test_at_most_five_pushes_per_inbound_message(app_ctx, villager, db, bot):
    openid = "o_win_five"
    number = _submitted_claim(app_ctx, openid)
    _open_window(villager, db, openid)
    since = villager.last_call_id()
    with db.session() as s:
        claim = s.scalar(select(Claim).where(Claim.number == number))
        for i in range(7):
            svc.transition(s, claim, S.in_review, "o_reviewer", notify="claim_in_review")
    bot.x.waker.wake()
    assert wait_for(lambda: len(villager.calls(touser=openid, since=since)) >= 5)
    time.sleep(1.0)
    calls = villager.calls(touser=openid, since=since)
    assert len(calls) == 5 and all(c["path"].endswith("custom/send") for c in calls)
    # the other two are held until the user writes again
    r = villager.text(openid, "0", wait=4)
    assert len([t for t in r.pushed_texts if number in t]) == 2


def test_outside_the_window_without_template_held_until_the_user_writes(
        app_ctx, villager, db, bot):
    openid = "o_win_held"
    number = _submitted_claim(app_ctx, openid)
    _open_window(villager, db, openid, hours_ago=49)
    since = villager.last_call_id()
    _change_status(app_ctx, number)
    bot.x.waker.wake()
    assert wait_for(lambda: _held(db, openid))
    assert villager.calls(touser=openid, since=since) == []
    r = villager.text(openid, "你好", wait=4)
    assert any(number in t for t in r.pushed_texts)
    # delivered once: writing again does not bring it back
    r = villager.text(openid, "你好", wait=2)
    assert not any(number in t for t in r.pushed_texts)
    with db.session() as s:
        rows = list(s.scalars(select(OutboxMessage).where(OutboxMessage.recipient == openid)))
        assert all(row.status is OutboxStatus.sent for row in rows)


@pytest.fixture
def template_bot(tmp_path, db, db_url, emulator):
    from bot.web.app import AppContext
    from bot.devtools.chat import Villager
    from bot.server import bootstrap
    from tests.conftest import make_cfg, start_bot

    cfg = make_cfg(tmp_path, db_url, emulator, WECHAT_TEMPLATE_ID="tpl_claim_status")
    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    running = start_bot(x)
    yield x, running, Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)
    running.stop()


def test_outside_the_window_a_template_message(template_bot, db):
    x, running, villager = template_bot
    openid = "o_win_tpl"
    number = _submitted_claim(x, openid)
    _open_window(villager, db, openid, hours_ago=50)
    since = villager.last_call_id()
    _change_status(x, number)
    running.x.waker.wake()
    calls = wait_for(lambda: villager.calls(touser=openid, since=since))
    assert calls[0]["path"] == "/cgi-bin/message/template/send"
    assert calls[0]["json"]["template_id"] == "tpl_claim_status"
    assert number in calls[0]["json"]["data"]["content"]["value"]


# ---------------------------------------------------------------------------------------------
# media storage on its own

def test_media_store_checks_type_and_size(tmp_path, docs):
    stored = media.store(tmp_path, docs["sheet"].read_bytes())
    assert stored.content_type == "image/jpeg" and stored.path.is_file()
    assert stored.path == tmp_path / "media" / stored.sha256[:2] / f"{stored.sha256}.jpg"
    assert oct(stored.path.stat().st_mode & 0o777) == "0o600"
    again = media.store(tmp_path, docs["sheet"].read_bytes())
    assert again.path == stored.path and len(list((tmp_path / "media").rglob("*.jpg"))) == 1
    assert media.store(tmp_path, docs["bill2"].read_bytes()).content_type == "image/png"
    assert media.store(tmp_path, docs["discharge2"].read_bytes()).content_type == "image/webp"
    for data, reason in ((b"", "empty"), (docs["pdf"].read_bytes(), "not_image"),
                         (docs["gif"].read_bytes(), "unsupported_type"),
                         (docs["huge"].read_bytes(), "too_large"),
                         (docs["sheet"].read_bytes()[:5000], "not_image"),
                         (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not_image")):
        with pytest.raises(media.MediaRefused) as err:
            media.store(tmp_path / "refused", data)
        assert err.value.reason == reason
    assert not (tmp_path / "refused").exists()
    # a decompression bomb: tiny file, enormous picture
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, "PNG")
    with pytest.raises(media.MediaRefused) as err:
        media.store(tmp_path, buf.getvalue())
    assert err.value.reason == "too_large"


def test_an_enrolment_lapsing_mid_dialogue_stops_the_claim(app_ctx, villager, db, docs):
    openid = "o_claim_lapsed"
    household(app_ctx, openid)
    assert "为王*山申请补助" in villager.text(openid, "申请补助").reply
    with db.session() as s:
        for e in s.scalars(select(Enrolment)):
            e.status = EnrolmentStatus.lapsed
    r = villager.image(openid, docs["sheet"])
    assert "没有参加本年度的互助" in r.reply
    with db.session() as s:
        assert s.scalar(select(func.count(Claim.id))) == 0
        assert s.scalar(select(func.count(ClaimDocument.id))) == 0


def test_a_photo_wechat_no_longer_has_is_asked_for_again(app_ctx, villager, db):
    openid = "o_claim_lost"
    household(app_ctx, openid)
    villager.text(openid, "申请补助")
    since = villager.last_call_id()
    xml = villager._xml(openid, "image", {"PicUrl": "http://x/y.jpg",
                                          "MediaId": "expired_media_id_0001"})
    assert "正在识别" in villager.post(openid, xml).reply
    texts = wait_for(lambda: pushed(villager, openid, since))
    assert "没有收到" in texts[0] and "重新发一次" in texts[0]
    with db.session() as s:
        assert s.scalar(select(func.count(ClaimDocument.id))) == 0
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "media.download")).one()
        assert row.status is OutboxStatus.sent and row.attempts == 1


def test_each_status_change_template_tells_the_household(app_ctx, db):
    """The default notification of every status (transition(notify="claim_<status>")): one
    outbox row per linked user, written with the change and its audit row."""
    hh_id = household(app_ctx, "o_tpl_head", [M("吴大海")])
    with db.session() as s:
        s.add(HouseholdLink(household_id=hh_id, openid="o_tpl_proxy", role=LinkRole.proxy))
    number = None
    path = [(S.submitted, "已提交"), (S.in_review, "正在审核"), (S.approved, "审核通过"),
            (S.in_payout, "正在发放"), (S.payout_failed, "转账没有成功"), (S.approved, "审核通过"),
            (S.in_payout, "正在发放"), (S.paid, "已转到您的银行卡"), (S.recovered, "需要退回")]
    with db.session() as s:
        h = s.get(Household, hh_id)
        claim = svc.start_claim(s, h, h.members[0], "test", local_today())
        claim.due_date, claim.amount_fen = date(2026, 12, 1), 800000
        number = claim.number
        for status, words in path:
            before = s.scalar(select(func.count(OutboxMessage.id)))
            svc.transition(s, claim, status, "o_reviewer", notify=f"claim_{status.value}",
                           card="***************8903")
            rows = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())
                                  .limit(2)))
            assert s.scalar(select(func.count(OutboxMessage.id))) == before + 2
            assert {r.recipient for r in rows} == {"o_tpl_head", "o_tpl_proxy"}
            text = rows[0].payload["message"]["content"]
            assert words in text and number in text and "吴*海" in text, text
            if status in (S.approved, S.paid, S.in_payout):
                assert "8,000.00 元" in text
    with db.session() as s:  # a rejection explains its reasons
        h = s.get(Household, hh_id)
        claim = svc.start_claim(s, h, h.members[0], "test", local_today())
        claim.status, claim.reasons = S.submitted, ["below_threshold"]
        svc.transition(s, claim, S.rejected, "o_reviewer", notify="claim_rejected",
                       text="结算单金额不足")
        text = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())).first() \
            .payload["message"]["content"]
        assert "没有通过" in text and "未达起付标准" in text and "结算单金额不足" in text
        audits = s.scalar(select(func.count(AuditLog.id)).where(AuditLog.entity_id == number))
        assert audits == 1 + len(path)


def test_a_claim_number_given_at_the_same_moment_elsewhere_is_drawn_again(app_ctx, db,
                                                                         monkeypatch):
    """Claim numbers are drawn at random and checked unique, but a number another transaction
    is giving at that moment (not committed yet) passes the check; the insert is then refused
    by the unique number, and the claim is started with a new number instead of failing."""
    with db.session() as s:
        first = make_household(s, app_ctx.vault, [M("钱一")], openid="o_num_a")
        second = make_household(s, app_ctx.vault, [M("钱二")], openid="o_num_b")
    with db.session() as s:
        taken = svc.start_claim(s, s.get(type(first), first.id),
                                s.get(type(first), first.id).members[0], "o_num_a",
                                local_today()).number
    drawn = iter([taken])  # the first draw collides as if unseen; then draw as usual
    real = svc.new_claim_number
    monkeypatch.setattr(svc, "new_claim_number", lambda s: next(drawn, None) or real(s))
    with db.session() as s:
        h = s.get(type(second), second.id)
        claim = svc.start_claim(s, h, h.members[0], "o_num_b", local_today())
        number = claim.number
    assert number != taken
    with db.session() as s:
        assert s.scalar(select(func.count(Claim.id)).where(
            Claim.number.in_([taken, number]))) == 2
        assert s.scalar(select(func.count(AuditLog.id)).where(AuditLog.entity_id == number)) == 1
