"""Village group chats through WeCom group bots, against the emulator over loopback HTTP."""
from __future__ import annotations

import hashlib
import io

import pytest
import requests
from PIL import Image

from bot.outbox import worker
from bot.web.app import AppContext
from bot.devtools.emulator import BackgroundServer, create_emulator_app
from bot.clients.wecom import MARKDOWN_LIMIT, GroupBot, WeComError, split_markdown
from core import outbox
from core.config import load_config
from core.models import OutboxMessage, OutboxStatus

SEND = "/cgi-bin/webhook/send"


def disclosure(rows: int) -> str:
    """A monthly disclosure as the group sees it: a heading and one line per subsidy."""
    lines = ["## 大溪村互助基金 2026年10月 补助公示", ""]
    lines += [f"- C{20260000 + i:08d} 张*{'三四五'[i % 3]} 住院补助 **{1200 + i:,}.00 元**"
              for i in range(rows)]
    return "\n".join(lines + ["", "> 如有异议，请于7日内向村委会反映。"])


@pytest.fixture
def emu():
    with BackgroundServer(create_emulator_app(wecom_rate_limit=3)) as server:
        yield server


@pytest.fixture
def bot(emu):
    return GroupBot(emu.url, "village-key-1")


def posted(emu):
    return requests.get(f"{emu.url}/_emulator/calls", params={"path": SEND}).json()


# -- splitting -------------------------------------------------------------------------------------

def test_short_markdown_is_one_message():
    text = disclosure(3)
    assert split_markdown(text) == [text]


def test_long_markdown_splits_on_line_ends_under_4096_bytes():
    text = disclosure(300)
    assert len(text.encode()) > 3 * MARKDOWN_LIMIT
    parts = split_markdown(text)
    assert len(parts) >= 4
    assert all(len(p.encode()) <= MARKDOWN_LIMIT for p in parts)
    assert "\n".join(parts) == text  # nothing lost, no line cut in two
    lines = set(text.split("\n"))
    assert all(line in lines for p in parts for line in p.split("\n"))


def test_a_line_longer_than_the_limit_is_cut_between_characters():
    line = "公示" * 3000  # 18,000 bytes, no line end
    parts = split_markdown(line)
    assert all(len(p.encode()) <= MARKDOWN_LIMIT for p in parts)
    assert "".join(parts) == line


def test_empty_markdown_is_refused(bot):
    with pytest.raises(ValueError):
        bot.send_markdown("\n\n")


# -- posting ---------------------------------------------------------------------------------------

def test_long_disclosure_arrives_in_order_in_several_messages(emu):
    bot = GroupBot(emu.url, "big-group")
    text = disclosure(200)  # three messages: within this emulator's 3 a minute
    assert bot.send_markdown(text) == 3
    calls = posted(emu)
    assert all(c["errcode"] == 0 and c["query"]["key"] == "big-group" for c in calls)
    assert "\n".join(c["json"]["markdown"]["content"] for c in calls) == text


def test_image_is_posted_with_its_md5(bot, emu, tmp_path):
    path = tmp_path / "fund.png"
    Image.new("RGB", (120, 80), (255, 255, 255)).save(path, format="PNG")
    bot.send_image(path)
    call = posted(emu)[0]
    assert call["errcode"] == 0
    assert call["json"]["image"]["md5"] == hashlib.md5(path.read_bytes()).hexdigest()


def test_image_over_2_mb_is_refused_before_posting(bot, emu):
    buf = io.BytesIO()
    Image.effect_noise((1200, 1200), 100).convert("RGB").save(buf, format="PNG")
    assert len(buf.getvalue()) > 2 << 20
    with pytest.raises(ValueError):
        bot.send_image(buf.getvalue())
    assert posted(emu) == []


def test_rate_limit_is_a_retryable_error(emu):
    bot = GroupBot(emu.url, "busy-group")
    for i in range(3):
        bot.send_text(f"通知 {i}")
    with pytest.raises(WeComError) as exc:
        bot.send_text("第四条")
    assert exc.value.errcode == 45009 and exc.value.retryable


def test_invalid_key_is_permanent(emu):
    requests.post(f"{emu.url}/_emulator/fail", json={"path": SEND, "errcode": 93000})
    with pytest.raises(WeComError) as exc:
        GroupBot(emu.url, "revoked").send_text("通知")
    assert exc.value.errcode == 93000 and not exc.value.retryable


def test_unreachable_webhook_is_retryable():
    with pytest.raises(WeComError) as exc:
        GroupBot("http://127.0.0.1:9", "k", timeout=2).send_text("通知")
    assert exc.value.retryable


# -- through the outbox ----------------------------------------------------------------------------

@pytest.fixture
def cfg(tmp_path, db, emu):
    return load_config({"HUZHU_DATABASE_URL": db.url, "HUZHU_DATA_DIR": str(tmp_path / "var"),
                        "HUZHU_WECHAT_API_BASE": emu.url, "HUZHU_WECOM_WEBHOOK_BASE": emu.url,
                        "HUZHU_OUTBOX_BACKOFF_SECONDS": "0"})


def test_rate_limited_disclosure_resumes_without_posting_a_part_twice(cfg, db, emu):
    text = disclosure(500)
    parts = split_markdown(text)
    assert len(parts) > 6  # more than two rate windows' worth
    with db.session() as s:
        row = outbox.enqueue(s, "wecom.post", {"key": "village-key-1", "markdown": text})
        s.flush()
        row_id = row.id
    x = AppContext(cfg=cfg, db=db)

    worker.drain(x)  # 3 parts go, the 4th meets the rate limit
    with db.session() as s:
        row = s.get(OutboxMessage, row_id)
        assert row.status == OutboxStatus.pending and row.attempts == 1
        assert row.payload["parts_sent"] == 3 and "45009" in row.last_error

    while True:  # a minute later (the emulator forgets its window), and again
        requests.post(f"{emu.url}/_emulator/wecom/rate")
        worker.drain(x)
        with db.session() as s:
            if s.get(OutboxMessage, row_id).status != OutboxStatus.pending:
                break
    with db.session() as s:
        assert s.get(OutboxMessage, row_id).status == OutboxStatus.sent
    delivered = [c["json"]["markdown"]["content"] for c in posted(emu) if c["errcode"] == 0]
    assert delivered == parts  # every part exactly once, in order


def test_revoked_group_key_is_dead_at_once(cfg, db, emu):
    requests.post(f"{emu.url}/_emulator/fail", json={"path": SEND, "errcode": 93000})
    with db.session() as s:
        row = outbox.enqueue(s, "wecom.post", {"key": "old-key", "markdown": "## 公告"})
        s.flush()
        row_id = row.id
    worker.drain(AppContext(cfg=cfg, db=db))
    with db.session() as s:
        row = s.get(OutboxMessage, row_id)
        assert row.status == OutboxStatus.dead and "93000" in row.last_error
