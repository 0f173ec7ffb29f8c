"""The console in a real browser: Playwright driving Debian's chromium (/usr/bin/chromium, no
browser download). Sign in from `/后台`, review a claim with its photos, approve it, confirm the
payout and download the bank file, on a phone-sized screen and a desktop one; screenshots are
kept under the test's temporary folder. Without chromium the tests skip, saying so; the same
pages are tested over HTTP in tests/test_console.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.models import ClaimStatus
from tests.console_support import bind, claim_of, claim_with_photos, good_ocr, login_link

CHROMIUM = os.environ.get("HUZHU_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason=f"no browser at {CHROMIUM}: apt-get install chromium")

ADMIN = "o_browser_admin"
VILLAGER = "o_browser_villager"


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


def test_review_approve_confirm_and_download_in_a_browser(bot, villager, db, cfg, app_ctx,
                                                          browser, tmp_path):
    from tests.test_payouts import fund, household_with_card, run

    shots = tmp_path / "screenshots"
    shots.mkdir()
    bind(villager, db, ADMIN, "super")
    fund(db, 5_000_000)
    family = household_with_card(db, app_ctx.vault, openid=VILLAGER)
    number = claim_with_photos(db, cfg, family["id"], ocr=good_ocr())

    # a phone inside WeChat: 360 px wide
    phone = browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2,
                                accept_downloads=True)
    page = phone.new_page()
    page.goto(bot.url + login_link(villager, ADMIN))
    assert page.locator("h1").inner_text().startswith("补助申请")
    page.screenshot(path=str(shots / "queue-360.png"), full_page=True)
    page.click(f"text={number}")
    page.wait_for_selector(".photos img")
    # the three photos loaded (not broken)
    widths = page.eval_on_selector_all(".photos img", "els => els.map(e => e.naturalWidth)")
    assert len(widths) == 3 and all(w > 0 for w in widths)
    assert page.input_value("#amount") == "12000.00"  # filled from the read-out
    page.screenshot(path=str(shots / "claim-360.png"))
    # no horizontal scrolling of the page itself on a 360-px screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 362

    # the DRG search fills the form's group
    page.fill("#q", "FM19")
    page.click("#drgs button")
    page.click("text=用这个")
    assert page.input_value("#drg") == "FM19"
    page.click("#record button[type=submit]")
    page.wait_for_selector("#result")
    assert "8,000.00 元" in page.inner_text("#result")
    page.screenshot(path=str(shots / "decision-360.png"))

    # a desktop sees the photos beside the read-out, the trace and the approval's form
    desk = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    dpage = desk.new_page()
    dpage.goto(bot.url + login_link(villager, ADMIN))
    dpage.goto(f"{bot.url}/admin/claims/{number}")
    dpage.wait_for_selector(".photos img")
    dpage.screenshot(path=str(shots / "claim-desktop.png"), full_page=True)

    page.click("form[action$='/approve'] button")
    page.wait_for_selector("#result")
    assert "已通过" in page.inner_text("#result")
    assert claim_of(db, number).status is ClaimStatus.approved

    batch = run(app_ctx).batch
    dpage.goto(bot.url + "/admin/payouts")
    dpage.click(f"text={batch}")
    dpage.fill("#number", batch)
    with dpage.expect_download() as got:
        dpage.click("form[action$='/file'] button")
    saved = tmp_path / "bank.xlsx"
    got.value.save_as(saved)
    assert saved.read_bytes()[:2] == b"PK" and got.value.suggested_filename == f"{batch}.xlsx"
    dpage.click("form[action$='/confirm'] button")
    dpage.wait_for_selector("#result")
    assert "已确认" in dpage.inner_text("#result")
    dpage.screenshot(path=str(shots / "batch-desktop.png"), full_page=True)
    assert claim_of(db, number).status is ClaimStatus.paid
    assert len(list(shots.glob("*.png"))) == 5


def test_a_used_link_in_the_browser_says_how_to_get_a_new_one(bot, villager, db, browser):
    bind(villager, db, ADMIN, "super")
    path = login_link(villager, ADMIN)
    page = browser.new_page()
    page.goto(bot.url + path)
    page.context.clear_cookies()
    page.goto(bot.url + path)
    assert "已经用过" in page.inner_text("main") and "/后台" in page.inner_text("main")
