"""`提交` never waits for OCR (through the webhook): a claim is accepted right after the last
photo while the photos are still being read; the read-out fills the claim in afterwards and the
reviewer sees it when it is there; a photo OCR cannot tell is still asked about, after `提交`."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.devtools import claim_samples as samples
from bot.devtools.chat import Villager
from bot.outbox.worker import OutboxLoop
from core.admins import create_invite
from core.models import ClaimStatus as S, DocumentKind
from tests.conftest import start_bot
from tests.test_claims import NUMBER, claim_of, docs, household, pushed, wait_for  # noqa: F401

K = DocumentKind


@pytest.fixture
def no_worker(app_ctx, cfg, emulator):
    """The web app alone: photos stay unread until the test starts a worker."""
    running = start_bot(app_ctx, worker=False)
    loops = []

    def start_worker():
        loop = OutboxLoop(app_ctx)
        loop.start()
        loops.append(loop)

    yield Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator), start_worker
    for loop in loops:
        loop.stop()
    running.stop()


def bind_reviewer(villager, db, openid):
    with db.session() as s:
        code = create_invite(s, "reviewer", "cli:test")
    assert "绑定成功" in villager.text(openid, f"/绑定 {code}").reply


def test_submit_right_after_the_last_photo_is_accepted(app_ctx, db, docs, no_worker):
    villager, start_worker = no_worker
    openid = "o_nowait"
    household(app_ctx, openid)
    bind_reviewer(villager, db, "o_nowait_rev")
    villager.text(openid, "申请补助")
    villager.image(openid, docs["discharge"])
    villager.image(openid, docs["bill"])
    r = villager.image(openid, docs["sheet"])
    assert "可以回复“提交”" in r.reply
    r = villager.text(openid, "提交")  # no photo has been read yet
    assert "申请已提交" in r.reply and "请稍等" not in r.reply
    assert "3张照片正在识别" in r.reply
    number = NUMBER.search(r.reply).group(0)
    claim = claim_of(db, number=number)
    assert claim.status is S.submitted and claim.due_date is not None
    assert all(d.sha256 is None and d.kind is None for d in claim.documents)
    view = villager.text("o_nowait_rev", f"/查看 {number}").reply
    assert "识别结果：没有" in view and "识别结果稍后自动补上" in view

    # the read-out joins the claim afterwards; the reviewer sees it then
    since = villager.last_call_id()
    start_worker()
    app_ctx.waker.wake()
    assert wait_for(lambda: all(d.sha256 for d in claim_of(db, number=number).documents))
    claim = claim_of(db, number=number)
    assert claim.status is S.submitted
    assert sorted(d.kind.value for d in claim.documents) == sorted(k.value for k in
                                                                   (K.discharge_record,
                                                                    K.itemized_bill,
                                                                    K.settlement_sheet))
    assert claim.ocr["fields"]["out_of_pocket_fen"]["value"] == 1811650
    view = villager.text("o_nowait_rev", f"/查看 {number}").reply
    assert "个人自付 18,116.50" in view and "还在接收" not in view
    texts = wait_for(lambda: len(pushed(villager, openid, since)) >= 3
                     and pushed(villager, openid, since))
    assert texts and all("不用再回复“提交”" in t for t in texts)
    assert not any("请继续拍照" in t or "即可提交申请" in t for t in texts)


def test_a_photo_ocr_cannot_tell_is_asked_about_after_submitting(app_ctx, db, docs,
                                                                  no_worker):
    villager, start_worker = no_worker
    openid = "o_nowait_ask"
    household(app_ctx, openid)
    villager.text(openid, "申请补助")
    villager.text(openid, "出院记录")
    villager.image(openid, docs["discharge"])
    villager.text(openid, "费用清单")
    villager.image(openid, docs["bill"])
    villager.image(openid, docs["other"])  # not a document OCR knows
    r = villager.text(openid, "提交")
    assert "申请已提交" in r.reply and "1张照片正在识别" in r.reply
    number = NUMBER.search(r.reply).group(0)
    assert claim_of(db, number=number).status is S.submitted

    since = villager.last_call_id()
    start_worker()
    app_ctx.waker.wake()
    texts = wait_for(lambda: [t for t in pushed(villager, openid, since) if "认不出" in t])
    assert texts and "3 结算单" in texts[0]
    r = villager.text(openid, "3")  # the answer, not the menu's 3 申请补助
    assert "这张是结算单" in r.reply and "不用再回复“提交”" in r.reply
    claim = claim_of(db, number=number)
    assert claim.status is S.submitted
    assert sorted(d.kind.value for d in claim.documents) == sorted(
        ["discharge_record", "itemized_bill", "settlement_sheet"])
    # the dialogue has ended: the menu answers again
    assert "还可补助" in villager.text(openid, "5").reply  # 5 查询余额


def test_while_photos_are_read_other_messages_go_their_way(app_ctx, db, docs, no_worker):
    villager, _ = no_worker
    openid = "o_nowait_menu"
    household(app_ctx, openid)
    villager.text(openid, "申请补助")
    for path in (docs["discharge"], docs["bill"], docs["sheet"]):
        villager.image(openid, path)
    assert "申请已提交" in villager.text(openid, "提交").reply
    r = villager.text(openid, "4")  # 查询进度 from the menu, not an answer about a photo
    number = claim_of(db, openid).number
    assert number in r.reply and "已提交" in r.reply
    assert all(d.kind is None for d in claim_of(db, openid).documents)


def test_too_few_photos_is_still_refused(app_ctx, db, docs, no_worker):
    villager, _ = no_worker
    openid = "o_nowait_few"
    household(app_ctx, openid)
    villager.text(openid, "申请补助")
    villager.image(openid, docs["discharge"])
    villager.image(openid, docs["bill"])
    r = villager.text(openid, "提交")
    assert "还差" in r.reply and "收齐后再回复" in r.reply and "申请已提交" not in r.reply
    assert claim_of(db, openid).status is S.collecting
