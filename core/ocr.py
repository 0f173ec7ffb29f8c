"""OCR of claim photos: what kind of document a photo is, and the settlement sheet's read-out.

The engine is rapidocr 3.x on onnxruntime with its DEFAULT models, which ship inside the
rapidocr wheel (PP-OCR det/cls/rec). Never configure another model, language or OCR version
here: rapidocr downloads any non-default model at first use, which fails offline. Only the log
level is set. The engine is built once, lazily, under a lock; calls run one at a time (the
machine's cores are better spent on one image than shared by two). Without rapidocr installed
(`pip install huzhu[ocr]`), `read()` returns None and every unlabelled photo is asked about.

- `read_photo(sha256, image) -> Reading | None`: `read`, once per photo content in this process:
  the same photo again (a resend, the copy in another claim) reuses its reading.
- `read(image) -> Reading | None`: the text as rows (boxes on one visual line joined left to
  right, after undoing a slight rotation), each with the recogniser's confidence.
- `classify(reading) -> Guess`: discharge_record, itemized_bill or settlement_sheet from keywords
  of each kind (titles weigh most), or None when the text does not tell.
- `read_settlement(reading) -> {field: Field}`: total_fen, fund_paid_fen, out_of_pocket_fen
  (个人支付合计 / 个人现金支付 / 个人支付, else 个人自付 + 个人自费), admission_date, discharge_date,
  hospital, insurance (resident | employee | uninsured), each with its confidence (0–1: the
  recogniser's score of the text it came from, lowered when the value had to be guessed).
  The read-out only pre-fills the review; it never decides on its own.
"""
from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from statistics import median
from typing import Any

log = logging.getLogger("huzhu.ocr")

_engine: Any = None
_warmed = False
_engine_lock = threading.Lock()
_run_lock = threading.Lock()
_readings: OrderedDict[str, "Reading"] = OrderedDict()  # by photo SHA-256, newest last
_readings_lock = threading.Lock()  # not _run_lock: a look-up must not wait for a running OCR
_READINGS_KEPT = 256
DETECT_SIDE = 640  # the detector's input: longer side in pixels


@lru_cache(maxsize=1)
def available() -> bool:
    try:
        import rapidocr  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def engine():
    """The one RapidOCR engine of this process (built on first use)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                from rapidocr import RapidOCR

                # default models only: do not add Det/Rec/Cls model or version parameters.
                # The detector sees the photo with its longer side at most DETECT_SIDE pixels
                # (its default keeps a 1080×1440 phone photo whole: 5× the pixels). It only
                # finds the lines; each line is then read from the full-size photo, so a
                # smaller detector input costs no reading accuracy while a printed line stays
                # about 10 pixels high in it (28-pixel print on a 1440-pixel photo: the same
                # read-out of every sample at 512, 576 and 640; 640 keeps a margin).
                _engine = RapidOCR(params={"Global.log_level": "warning",
                                           "Det.limit_type": "max",
                                           "Det.limit_side_len": DETECT_SIDE})
    return _engine


def warm_up() -> None:
    """Build the engine and run it once on a small page with one line of text, so that the first
    photo a worker reads does not wait for the models to load (called as the worker starts)."""
    global _warmed
    with _engine_lock:
        if _warmed or not available():
            return
        _warmed = True
    from PIL import Image, ImageDraw, ImageFont

    started = time.perf_counter()
    page = Image.new("RGB", (480, 120), "white")  # a line of text: the detector finds a box
    ImageDraw.Draw(page).text((20, 30), "huzhu 2025", fill="black",
                              font=ImageFont.load_default(size=48))
    try:
        with _run_lock:
            engine()(page, use_cls=False)
    except Exception:  # a warm-up must never stop the worker
        log.exception("OCR warm-up failed")
        return
    log.info("OCR models loaded in %.1f s", time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# Reading: boxes → rows

@dataclass(frozen=True)
class Part:
    text: str
    score: float
    x: float  # left edge, after deskew
    y: float  # vertical centre, after deskew
    h: float  # height


@dataclass(frozen=True)
class Row:
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.parts)

    def score_of(self, start: int, end: int) -> float:
        """The lowest score of the parts covering text[start:end]."""
        pos, scores = 0, []
        for p in self.parts:
            lo, hi = pos, pos + len(p.text)
            if lo < end and start < hi:
                scores.append(p.score)
            pos = hi + 1
        return min(scores) if scores else 0.0


@dataclass
class Reading:
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return "\n".join(r.text for r in self.rows)

    @property
    def mean_score(self) -> float:
        scores = [p.score for r in self.rows for p in r.parts]
        return sum(scores) / len(scores) if scores else 0.0


def _skew(boxes) -> float:
    """The page's rotation in radians, from the top edges of the wider boxes."""
    angles = []
    for b in boxes:
        (x0, y0), (x1, y1) = b[0], b[1]
        if x1 - x0 > 60:
            angles.append(math.atan2(y1 - y0, x1 - x0))
    return median(angles) if angles else 0.0


def rows_from(boxes, txts, scores) -> list[Row]:
    """Group recognised boxes into visual rows (centres within half a box height)."""
    if not txts:
        return []
    angle = _skew(boxes)
    c, s = math.cos(-angle), math.sin(-angle)
    parts = []
    for b, t, sc in zip(boxes, txts, scores):
        xs = [p[0] for p in b]
        ys = [p[1] for p in b]
        cx, cy = sum(xs) / 4, sum(ys) / 4
        h = max(1.0, (abs(b[3][1] - b[0][1]) + abs(b[2][1] - b[1][1])) / 2)
        w = max(xs) - min(xs)
        rx, ry = cx * c - cy * s, cx * s + cy * c
        parts.append(Part(str(t).strip(), float(sc), rx - w / 2, ry, h))
    parts = [p for p in parts if p.text]
    parts.sort(key=lambda p: p.y)
    rows: list[list[Part]] = []
    for p in parts:
        if rows:
            last = rows[-1]
            ref = sum(q.y for q in last) / len(last)
            tol = 0.5 * min(p.h, median(q.h for q in last))
            if abs(p.y - ref) <= tol:
                last.append(p)
                continue
        rows.append([p])
    return [Row(tuple(sorted(r, key=lambda p: p.x))) for r in rows]


def read(image, turned: bool = False) -> Reading | None:
    """OCR a PIL image (or a path / bytes); None when OCR is not installed. Text lines are taken
    as upright (a photo of a page on a table), unless `turned`: then each line is checked for
    being upside down first (the angle classifier, about a third more time)."""
    if not available():
        return None
    started = time.perf_counter()
    try:
        with _run_lock:
            result = engine()(image, use_cls=turned)
    except Exception:  # a broken image or an engine error must not lose the photo
        log.exception("OCR failed")
        return Reading([], time.perf_counter() - started)
    boxes = [] if result.boxes is None else [[(float(x), float(y)) for x, y in b]
                                             for b in result.boxes]
    rows = rows_from(boxes, list(result.txts or ()), list(result.scores or ()))
    return Reading(rows, time.perf_counter() - started)


def read_photo(sha256: str, image) -> Reading | None:
    """`read` for a stored photo, keyed by its SHA-256: a photo already read in this process is
    not read again (OCR costs about a second of CPU a photo). A failed reading is not kept."""
    if not available():
        return None
    with _readings_lock:
        kept = _readings.get(sha256)
        if kept is not None:
            _readings.move_to_end(sha256)
            return kept
    reading = read(image)
    if reading is not None and classify(reading).kind is None:
        # not told upright: perhaps photographed upside down; read with the angle classifier
        again = read(image, turned=True)
        if again is not None and classify(again).kind is not None:
            reading = Reading(again.rows, reading.seconds + again.seconds)
    if reading is not None and reading.rows:
        with _readings_lock:
            _readings[sha256] = reading
            while len(_readings) > _READINGS_KEPT:
                _readings.popitem(last=False)
    return reading


def reading_from_text(text: str, score: float = 1.0) -> Reading:
    """A Reading of plain text lines (for OCR text stored earlier, and tests)."""
    rows = [Row((Part(line.strip(), score, 0.0, float(i), 1.0),))
            for i, line in enumerate(text.splitlines()) if line.strip()]
    return Reading(rows)


# ---------------------------------------------------------------------------------------------
# Classification

KINDS = ("discharge_record", "itemized_bill", "settlement_sheet")

# keyword → weight; a document kind's title weighs most
KEYWORDS: dict[str, dict[str, float]] = {
    "discharge_record": {"出院记录": 6, "出院小结": 6, "出院证明": 5, "出院诊断": 2, "入院诊断": 1,
                         "诊疗经过": 2, "住院经过": 2, "出院医嘱": 2, "出院情况": 2, "入院情况": 1,
                         "主诉": 1, "医师签名": 1, "治疗结果": 1},
    "itemized_bill": {"费用清单": 6, "费用明细": 6, "明细清单": 5, "一日清单": 5, "项目名称": 2,
                      "单价": 1.5, "数量": 1, "规格": 1, "单位": 0.5, "费用合计": 1, "金额": 0.5},
    "settlement_sheet": {"结算单": 6, "报销单": 6, "结算清单": 5, "统筹基金": 2, "基金支付": 2,
                         "个人自付": 2, "个人自费": 1, "医保结算": 2, "起付标准": 1,
                         "结算日期": 1, "个人支付": 1, "个人现金支付": 1, "大病保险": 1},
}
MIN_SCORE = 4.0  # weight needed to decide without asking


@dataclass(frozen=True)
class Guess:
    kind: str | None
    confidence: float
    scores: dict[str, float]


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def classify(reading: Reading | None) -> Guess:
    if reading is None or not reading.rows:
        return Guess(None, 0.0, {})
    text = _compact(reading.text)
    scores = {kind: sum(w for word, w in words.items() if word in text)
              for kind, words in KEYWORDS.items()}
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < MIN_SCORE or top < 1.5 * second:
        return Guess(None, 0.0, scores)
    confidence = round(min(1.0, top / (top + second)) * min(1.0, reading.mean_score + 0.05), 3)
    return Guess(best, confidence, scores)


# ---------------------------------------------------------------------------------------------
# The settlement sheet's read-out

@dataclass(frozen=True)
class Field:
    value: Any  # fen (int), ISO date string, or text
    confidence: float
    text: str  # the row it was read from

    def to_json(self) -> dict:
        return {"value": self.value, "confidence": round(self.confidence, 3), "text": self.text}


_AMOUNT = re.compile(r"[¥￥]?\s*(\d{1,3}(?:[,，.．]\d{3})+|\d+)(?:[.．]\s?(\d{1,2}))?(?!\d)")
_DATE = re.compile(r"(20\d{2})\s*[-./年]\s*(\d{1,2})\s*[-./月]\s*(\d{1,2})|(20\d{2})(\d{2})(\d{2})")
_HOSPITAL = re.compile(r"[\u4e00-\u9fa5（）()]{2,30}?(?:人民医院|中医院|医院|卫生院|医疗中心|"
                       r"卫生服务中心|保健院)")

AMOUNT_LABELS = {
    "total_fen": ("医疗费用总额", "医疗总费用", "住院总费用", "医疗费总额", "费用总额", "总费用",
                  "费用合计", "合计金额", "总金额"),
    "fund_paid_fen": ("基金支付合计", "医保基金支付", "医保支付合计", "统筹基金支付", "统筹支付",
                      "基金支付", "医保支付", "统筹基金"),
    "out_of_pocket_fen": ("个人支付合计", "个人现金支付", "个人支付金额", "个人负担合计", "个人支付",
                          "个人负担", "现金支付"),
}
SELF_PAY = ("个人自付",)
SELF_FUNDED = ("个人自费",)
DATE_LABELS = {"admission_date": ("入院日期", "入院时间", "住院日期"),
               "discharge_date": ("出院日期", "出院时间")}
HOSPITAL_LABELS = ("定点医疗机构名称", "医疗机构名称", "医院名称", "就诊医院", "定点医疗机构",
                   "就诊机构", "住院医院")
INSURANCE_LABELS = ("险种类型", "参保类型", "医保类型", "参保险种", "险种", "人员类别", "医疗类别")
INSURANCE_WORDS = (("职工", "employee"), ("城乡居民", "resident"), ("居民", "resident"),
                   ("新农合", "resident"), ("农村合作医疗", "resident"), ("未参保", "uninsured"))


def _amount(text: str) -> tuple[int, float] | None:
    """(fen, factor) of the first amount in text; factor < 1 when separators were guessed."""
    m = _AMOUNT.search(text)
    if not m:
        return None
    whole, cents = m.group(1), m.group(2) or ""
    factor = 1.0
    if re.search(r"[.．](\d{3})", whole) and not cents:
        factor = 0.8  # "30.120" read where "30,120" was printed, or a decimal point misread
    digits = re.sub(r"[,，.．]", "", whole)
    if len(digits) > 10:
        return None
    return int(digits) * 100 + int(cents.ljust(2, "0") or 0), factor


def _date(text: str) -> str | None:
    m = _DATE.search(text)
    if not m:
        return None
    y, mo, d = (m.group(1), m.group(2), m.group(3)) if m.group(1) else m.group(4, 5, 6)
    try:
        return date(int(y), int(mo), int(d)).isoformat()
    except ValueError:
        return None


def _find_label(reading: Reading, labels: tuple[str, ...]):
    """(row index, row, label start, value start) of the first label found, labels in order."""
    for label in labels:
        for i, row in enumerate(reading.rows):
            text = row.text
            at = text.find(label)
            if at < 0:
                # labels are printed as one word; OCR may split them with a space
                squeezed = text.replace(" ", "")
                if label not in squeezed:
                    continue
                at = _locate_squeezed(text, label)
                if at < 0:
                    continue
            end = at
            for ch in label:
                end = text.index(ch, end) + 1
            return i, row, at, end
    return None


def _locate_squeezed(text: str, label: str) -> int:
    for start in range(len(text)):
        j, k = start, 0
        while j < len(text) and k < len(label):
            if text[j] == " ":
                j += 1
                continue
            if text[j] != label[k]:
                break
            j, k = j + 1, k + 1
        if k == len(label):
            return start
    return -1


def _value_after(reading: Reading, found, parse, max_gap: int = 14):
    """Parse the value right after the label, else at the start of the next row."""
    i, row, at, end = found
    text = row.text
    rest = text[end:]
    value = parse(rest.lstrip(" :：")[:max_gap + 20])
    if value is not None:
        offset = len(rest) - len(rest.lstrip(" :："))
        span_end = min(len(text), end + offset + max_gap + 20)
        return value, row.score_of(at, span_end), text
    if i + 1 < len(reading.rows):
        nxt = reading.rows[i + 1]
        value = parse(nxt.text[:max_gap + 20])
        if value is not None:
            return value, min(row.score_of(at, end), nxt.score_of(0, len(nxt.text))) * 0.9, \
                f"{text} / {nxt.text}"
    return None


def _amount_field(reading: Reading, labels) -> Field | None:
    found = _find_label(reading, labels)
    if not found:
        return None
    got = _value_after(reading, found, _amount)
    if not got:
        return None
    (fen, factor), score, text = got
    return Field(fen, score * factor, text)


def read_settlement(reading: Reading | None) -> dict[str, Field]:
    fields: dict[str, Field] = {}
    if reading is None or not reading.rows:
        return fields
    for name, labels in AMOUNT_LABELS.items():
        f = _amount_field(reading, labels)
        if f is not None:
            fields[name] = f
    if "out_of_pocket_fen" not in fields:
        self_pay = _amount_field(reading, SELF_PAY)
        self_funded = _amount_field(reading, SELF_FUNDED)
        if self_pay and self_funded:
            fields["out_of_pocket_fen"] = Field(
                self_pay.value + self_funded.value,
                min(self_pay.confidence, self_funded.confidence) * 0.9,
                f"{self_pay.text} + {self_funded.text}")
        elif self_pay:
            fields["out_of_pocket_fen"] = Field(self_pay.value, self_pay.confidence * 0.8,
                                                self_pay.text)
        elif "total_fen" in fields and "fund_paid_fen" in fields:
            t, f = fields["total_fen"], fields["fund_paid_fen"]
            if t.value >= f.value:
                fields["out_of_pocket_fen"] = Field(t.value - f.value,
                                                    min(t.confidence, f.confidence) * 0.7,
                                                    f"{t.text} − {f.text}")
    for name, labels in DATE_LABELS.items():
        found = _find_label(reading, labels)
        if found:
            got = _value_after(reading, found, _date)
            if got:
                fields[name] = Field(got[0], got[1], got[2])
    hospital = _hospital(reading)
    if hospital:
        fields["hospital"] = hospital
    insurance = _insurance(reading)
    if insurance:
        fields["insurance"] = insurance
    return fields


def _hospital(reading: Reading) -> Field | None:
    found = _find_label(reading, HOSPITAL_LABELS)
    if found:
        def parse(text: str):
            m = _HOSPITAL.search(text.replace(" ", ""))
            return m.group(0) if m else None

        got = _value_after(reading, found, parse)
        if got:
            return Field(got[0], got[1], got[2])
    for row in reading.rows:  # a hospital's name anywhere (the title of many sheets)
        m = _HOSPITAL.search(row.text.replace(" ", ""))
        if m:
            return Field(m.group(0), row.score_of(0, len(row.text)) * 0.7, row.text)
    return None


def _insurance(reading: Reading) -> Field | None:
    def parse(text: str):
        for word, kind in INSURANCE_WORDS:
            if word in text.replace(" ", ""):
                return kind
        return None

    found = _find_label(reading, INSURANCE_LABELS)
    if found:
        got = _value_after(reading, found, parse, max_gap=20)
        if got:
            return Field(got[0], got[1], got[2])
    for row in reading.rows:
        text = row.text.replace(" ", "")
        if "医疗保险" in text or "医保" in text:
            kind = parse(text)
            if kind:
                return Field(kind, row.score_of(0, len(row.text)) * 0.7, row.text)
    return None


def consistent(fields: dict[str, Field]) -> bool | None:
    """total = fund paid + out of pocket, when all three were read (None: cannot tell)."""
    try:
        t, f, o = (fields[k].value for k in ("total_fen", "fund_paid_fen", "out_of_pocket_fen"))
    except KeyError:
        return None
    return t == f + o
