"""`huzhu demo` on a bare machine: no system fonts (none of the usual paths, fontconfig knowing
no fonts), an empty working folder, nothing but what pip installed. Every step runs — the photo
claim and its OCR read-out, review, payout, the disclosure poster, the year charts — and nothing
is skipped."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

# the demo's own command line, with the system's fonts out of sight
BARE = """
import sys
from core import fonts
fonts.SYSTEM_FONTS = ()
from bot.cli import main
sys.exit(main(["demo"]))
"""


@pytest.mark.skipif(bool(os.environ.get("HUZHU_TEST_DATABASE_URL")),
                    reason="the demo makes its own SQLite database: it runs in the SQLite run")
def test_demo_runs_every_step_with_no_system_font(tmp_path):
    empty = tmp_path / "fonts.conf"
    empty.write_text('<?xml version="1.0"?><fontconfig></fontconfig>')
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUZHU_")}
    env["FONTCONFIG_FILE"] = str(empty)
    folder = tmp_path / "empty"
    folder.mkdir()
    out = subprocess.run([sys.executable, "-c", BARE], cwd=folder, env=env, capture_output=True,
                         text=True, timeout=240)
    transcript = out.stdout
    assert out.returncode == 0, out.stderr[-3000:]
    assert "跳过" not in transcript and "skip" not in transcript.lower()
    assert "演示结束" in transcript
    for step in ("[发来一张照片：结算单",  # the claim by photo
                 "结算单识别结果",  # the OCR read-out
                 "out_of_pocket_fen = 1811650",
                 "/核定", "已通过",  # review
                 "已确认：1 笔",  # payout
                 "[公示海报 图片]",  # the disclosure poster, drawn and posted
                 "-participation.png", "-fund.png"):  # the year charts
        assert step in transcript, step
    assert "Traceback" not in out.stderr and "WARNING" not in out.stderr, out.stderr[-3000:]
    assert list(folder.iterdir()) == []  # the demo works in its own temporary folder
