"""OCR (rapidocr 3.x, default models): the settlement sheet's read-out on clean and degraded
photos, the classification of the three documents, the parsing of what OCR gives back, and the
claim dialogue when OCR is not installed."""
from __future__ import annotations

import threading
import time
from datetime import date

import pytest
from PIL import Image

from bot.devtools import claim_samples as samples
from core import ocr

STAY = samples.Stay()
EXPECTED = {"total_fen": 4823650, "fund_paid_fen": 3012000, "out_of_pocket_fen": 1811650,
            "admission_date": "2025-03-02", "discharge_date": "2025-03-15",
            "hospital": "张家港市第一人民医院", "insurance": "resident"}


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    return samples.degrade(img, blur=0, angle=0, quality=quality)


SHEETS = {
    "clean table": lambda: samples.settlement_sheet(),
    "clean lines": lambda: samples.settlement_sheet(table=False, total_label="个人现金支付"),
    "blurred": lambda: samples.degrade(samples.settlement_sheet(), blur=1.6, angle=0, quality=90),
    "rotated 2.5°": lambda: samples.degrade(samples.settlement_sheet(), blur=0, angle=2.5,
                                            quality=90),
    "rotated -3°": lambda: samples.degrade(samples.settlement_sheet(table=False), blur=0,
                                           angle=-3, quality=90),
    "jpeg q20": lambda: _jpeg(samples.settlement_sheet(), 20),
    "all three": lambda: samples.degrade(samples.settlement_sheet(), blur=1.2, angle=2,
                                         quality=35),
    "phone photo": lambda: samples.degrade(samples.photo(samples.settlement_sheet(), 5),
                                           blur=0.8, angle=0, quality=50),
}


@pytest.mark.parametrize("variant", list(SHEETS))
def test_settlement_sheet_values_are_read_right(variant):
    reading = ocr.read(SHEETS[variant]())
    fields = ocr.read_settlement(reading)
    assert {k: f.value for k, f in fields.items()} == EXPECTED
    floor = 0.9 if variant.startswith("clean") else 0.6
    assert all(floor <= f.confidence <= 1.0 for f in fields.values()), {
        k: f.confidence for k, f in fields.items()}
    assert ocr.consistent(fields) is True
    assert ocr.classify(reading).kind == "settlement_sheet"


def test_out_of_pocket_without_a_total_line_is_self_pay_plus_self_funded():
    stay = samples.Stay(insurance="职工基本医疗保险", hospital="常熟市第二人民医院",
                        total_fen=1234567, fund_paid_fen=1000000, self_pay_fen=200000,
                        self_funded_fen=34567, admission=date(2025, 12, 30),
                        discharge=date(2026, 1, 6))
    reading = ocr.read(samples.settlement_sheet(stay, total_label=None))
    fields = ocr.read_settlement(reading)
    assert fields["out_of_pocket_fen"].value == 234567
    assert fields["out_of_pocket_fen"].confidence < 0.95  # derived, not printed
    assert fields["insurance"].value == "employee"
    assert fields["hospital"].value == "常熟市第二人民医院"
    assert fields["admission_date"].value == "2025-12-30"
    assert fields["discharge_date"].value == "2026-01-06"
    assert ocr.consistent(fields) is True


KINDS = {
    "discharge_record": samples.discharge_record,
    "itemized_bill": samples.itemized_bill,
    "settlement_sheet": samples.settlement_sheet,
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("degraded", [False, True])
def test_each_document_kind_is_recognised(kind, degraded):
    img = KINDS[kind]()
    if degraded:
        img = samples.degrade(samples.photo(img, seed=len(kind)), blur=1.0, angle=-1.5,
                              quality=40)
    guess = ocr.classify(ocr.read(img))
    assert guess.kind == kind and 0.5 < guess.confidence <= 1


@pytest.mark.parametrize("img", [
    samples.other_photo(), samples.other_photo(seed=3, with_text=False),
    Image.new("RGB", (800, 600), "white")], ids=["notice", "picture", "blank"])
def test_other_photos_are_not_guessed(img):
    guess = ocr.classify(ocr.read(img))
    assert guess.kind is None and guess.confidence == 0.0


def test_a_discharge_record_is_not_taken_for_a_sheet_by_its_dates():
    fields = ocr.read_settlement(ocr.read(samples.discharge_record()))
    assert fields["admission_date"].value == "2025-03-02"  # read, but the kind decides use
    assert "out_of_pocket_fen" not in fields


# -- parsing, without the engine ---------------------------------------------------------------

def test_amounts_dates_and_labels_as_ocr_gives_them():
    r = ocr.reading_from_text("\n".join([
        "医疗费用总额：￥48.236.50",   # a thousands comma read as a point
        "统筹基金支付 30，120.00元",
        "个人自付",                    # the value on the next row
        "12116.5",
        "个人自费 6000",
        "入院时间 2025年3月2日 出院时间 20250315",
        "定点医疗机构名称 张家港市第一人民医院（东院）",
        "人员类别 在职职工",
    ]), score=0.97)
    f = ocr.read_settlement(r)
    assert f["total_fen"].value == 4823650
    assert f["fund_paid_fen"].value == 3012000
    assert f["out_of_pocket_fen"].value == 1811650  # 自付 + 自费
    assert f["admission_date"].value == "2025-03-02"
    assert f["discharge_date"].value == "2025-03-15"
    assert f["hospital"].value.startswith("张家港市第一人民医院")
    assert f["insurance"].value == "employee"
    assert f["total_fen"].confidence == pytest.approx(0.97)
    assert ocr.read_settlement(ocr.reading_from_text("今天天气很好")) == {}
    assert ocr.read_settlement(None) == {}
    assert ocr.consistent({}) is None


def test_invalid_dates_and_inconsistent_sheets():
    f = ocr.read_settlement(ocr.reading_from_text(
        "入院日期 2025-02-30\n医疗费用总额 100.00\n统筹基金支付 50.00\n个人支付 60.00"))
    assert "admission_date" not in f
    assert ocr.consistent(f) is False


def test_rows_are_rebuilt_from_slightly_rotated_boxes():
    # a page turned 3° (right side up): each value box sits higher than its label, and
    # rapidocr lists it first
    def box(x, y, w, h):
        dy = -0.05 * w
        return [(x, y), (x + w, y + dy), (x + w, y + h + dy), (x, y + h)]
    boxes = [box(420, 473, 160, 30), box(80, 490, 180, 30),
             box(420, 538, 160, 30), box(80, 555, 180, 30)]
    rows = ocr.rows_from(boxes, ["48,236.50", "医疗费用总额", "30,120.00", "统筹基金支付"],
                         [0.99, 0.98, 0.97, 0.96])
    assert [r.text for r in rows] == ["医疗费用总额 48,236.50", "统筹基金支付 30,120.00"]
    assert rows[0].score_of(0, 6) == 0.98 and rows[0].score_of(0, 15) == 0.98
    assert rows[1].score_of(7, 15) == 0.97


# -- the engine ------------------------------------------------------------------------------

def test_one_engine_loaded_once_with_the_default_models():
    engines = []
    threads = [threading.Thread(target=lambda: engines.append(ocr.engine())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(e) for e in engines}) == 1
    cfg = engines[0].cfg
    for task in ("Det", "Cls", "Rec"):  # nothing but the defaults shipped in the wheel
        assert cfg[task].model_path is None and cfg[task].model_dir is None
    assert str(cfg.Det.ocr_version.value if hasattr(cfg.Det.ocr_version, "value")
               else cfg.Det.ocr_version).startswith("PP-OCR")


def test_a_reading_gives_rows_in_page_order_with_scores_and_its_time():
    engine = ocr.engine()
    started = time.perf_counter()
    reading = ocr.read(samples.photo(samples.itemized_bill(), seed=4))
    assert 0 < reading.seconds <= time.perf_counter() - started
    assert ocr.engine() is engine  # not loaded again
    texts = [r.text for r in reading.rows]
    assert "住院费用清单" in texts[0] and texts[-1].startswith("打印日期")
    assert reading.mean_score > 0.9 and "费用合计：3,441.20" in reading.text


def test_without_ocr_every_unlabelled_photo_is_asked_about(app_ctx, villager, db, tmp_path,
                                                           monkeypatch):
    from tests.test_claims import household, processed, pushed, wait_for

    monkeypatch.setattr(ocr, "available", lambda: False)
    assert ocr.read(samples.settlement_sheet()) is None
    assert ocr.classify(None).kind is None
    household(app_ctx, "o_no_ocr")
    path = samples.save(samples.settlement_sheet(), tmp_path / "ss.png")
    villager.text("o_no_ocr", "申请补助")
    since = villager.last_call_id()
    villager.image("o_no_ocr", path)
    texts = wait_for(lambda: pushed(villager, "o_no_ocr", since))
    assert "认不出" in texts[0]
    assert processed(db, "o_no_ocr")
    r = villager.text("o_no_ocr", "结算单")
    assert "这张是结算单" in r.reply and "还差：出院记录、费用清单" in r.reply
