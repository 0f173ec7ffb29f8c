"""Posters and charts drawn with Pillow: the monthly disclosure poster posted to the village
groups as an image, and the year report's bar charts.

Chinese text needs a CJK face: `find_font()` takes the one core/fonts.py finds (FONT_FILE, else a
system CJK font, else the packaged Noto Sans CJK; the Simplified Chinese face of a collection).
If FONT_FILE names a file that is not a CJK font (or cannot be read), one warning line says so
and nothing is drawn: the callers fall back to text alone.

Every text drawn is also returned (`Drawing.lines`), so tests can check what the poster says
(no full name, no ID number) without OCR. Texts come from templates/messages/poster.yaml.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml
from PIL import Image, ImageDraw, ImageFont

from core import fonts
from core.config import TEMPLATES_DIR
from core.messages import environment
from core.money import format_yuan

log = logging.getLogger("huzhu.poster")

BOLD_OF = {"NotoSansCJK-Regular.ttc": "NotoSansCJK-Bold.ttc"}

WIDTH = 900
MARGIN = 48
RED = (178, 34, 34)
INK = (40, 40, 40)
GREY = (120, 120, 120)
PAPER = (255, 251, 242)
BAR = (210, 105, 30)
BAR2 = (70, 130, 180)
LIST_ROWS = 12  # subsidies listed on the poster; the full list is in the group post


@dataclass(frozen=True)
class Font:
    path: str
    index: int

    def get(self, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
        path = self.path
        if bold:
            name = Path(path).name
            if name in BOLD_OF and Path(path).with_name(BOLD_OF[name]).exists():
                path = str(Path(path).with_name(BOLD_OF[name]))
        return _truetype(path, self.index, size)


@lru_cache(maxsize=64)
def _truetype(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, index=index)


def find_font() -> Font | None:
    """The CJK face to draw with, or None (after one warning line naming the file) if there is
    none: the caller then posts its text alone."""
    try:
        face = fonts.find_cjk_face()
    except fonts.FontError as exc:
        log.warning("%s; drawing nothing, the text goes out alone", exc)
        return None
    return Font(face.path, face.index)


@lru_cache(maxsize=1)
def texts() -> dict:
    with open(TEMPLATES_DIR / "messages" / "poster.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _t(snippet: str, **ctx) -> str:
    return environment().from_string(snippet).render(**ctx).strip()


@dataclass
class Drawing:
    """What was drawn: the PNG's path (None when no font was found) and every text on it."""
    path: Path | None
    lines: list[str] = field(default_factory=list)


class _Canvas:
    def __init__(self, font: Font, height: int):
        self.font = font
        self.image = Image.new("RGB", (WIDTH, height), PAPER)
        self.draw = ImageDraw.Draw(self.image)
        self.lines: list[str] = []

    def text(self, xy, text: str, size: int, fill=INK, bold=False, anchor="la") -> tuple:
        f = self.font.get(size, bold)
        self.draw.text(xy, text, font=f, fill=fill, anchor=anchor)
        self.lines.append(text)
        return self.draw.textbbox(xy, text, font=f, anchor=anchor)

    def fit(self, text: str, size: int, width: int) -> str:
        f = self.font.get(size)
        if f.getlength(text) <= width:
            return text
        while text and f.getlength(text + "…") > width:
            text = text[:-1]
        return text + "…"

    def save(self, path: Path, height: int) -> Path:
        image = self.image.crop((0, 0, WIDTH, height))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
        os.close(fd)
        image.save(tmp, format="PNG", optimize=True)
        os.replace(tmp, path)  # several workers may draw the same poster: last one wins whole
        return path


def _bars(c: _Canvas, y: int, items: list[tuple[str, int]], label_w: int = 150) -> int:
    top = max([v for _, v in items] + [1])
    room = WIDTH - 2 * MARGIN - label_w - 190
    for i, (label, fen) in enumerate(items):
        c.text((MARGIN, y + 4), label, 26, GREY)
        w = int(room * max(fen, 0) / top) if top > 0 else 0
        c.draw.rectangle((MARGIN + label_w, y + 6, MARGIN + label_w + max(w, 2), y + 34),
                         fill=BAR if i % 2 else BAR2)
        c.text((MARGIN + label_w + max(w, 2) + 12, y + 4), format_yuan(fen), 26)
        y += 48
    return y


def disclosure_poster(data: dict, path: Path, font: Font | None = None) -> Drawing:
    """The month's disclosure poster from core.disclosure.build's dict (names masked)."""
    font = font or find_font()
    if font is None:
        return Drawing(None)
    t = texts()["disclosure"]
    y_, m_ = (int(x) for x in data["month"].split("-"))
    ctx = {"d": data, "year": y_, "month": m_}
    rows = data["subsidies"][:LIST_ROWS]
    c = _Canvas(font, 1000 + 56 * len(rows))
    c.draw.rectangle((0, 0, WIDTH, 170), fill=RED)
    c.text((WIDTH // 2, 62), _t(t["title"], **ctx), 50, (255, 255, 255), bold=True, anchor="mm")
    c.text((WIDTH // 2, 128), _t(t["subtitle"], **ctx), 30, (255, 236, 200), anchor="mm")
    y = 200
    box_w = (WIDTH - 2 * MARGIN - 2 * 20) // 3
    for i, box in enumerate(t["boxes"]):
        x = MARGIN + i * (box_w + 20)
        c.draw.rounded_rectangle((x, y, x + box_w, y + 130), 14, fill=(255, 255, 255),
                                 outline=(230, 200, 170), width=2)
        c.text((x + box_w // 2, y + 38), _t(box["label"], **ctx), 26, GREY, anchor="mm")
        c.text((x + box_w // 2, y + 92), c.fit(_t(box["value"], **ctx), 32, box_w - 16), 32,
               RED, bold=True, anchor="mm")
    y += 170
    c.text((MARGIN, y), t["chart"], 30, bold=True)
    y += 52
    fund = data["fund"]
    y = _bars(c, y, [(b["label"], int(fund.get(b["field"], 0) or 0)) for b in t["bars"]
                     if b["field"] != "fees_fen" or fund.get("fees_fen")])
    y += 20
    c.text((MARGIN, y), _t(t["list"] if rows else t["none"], **ctx), 30, bold=True)
    y += 56
    for row in rows:
        c.draw.line((MARGIN, y - 10, WIDTH - MARGIN, y - 10), fill=(235, 225, 210), width=1)
        c.text((MARGIN, y), c.fit(row["village_name"], 26, 150), 26)
        c.text((MARGIN + 160, y), row["name"], 26)
        c.text((MARGIN + 300, y), c.fit(row["drg_name"] or "", 26, 330), 26, GREY)
        c.text((WIDTH - MARGIN, y), format_yuan(row["amount_fen"]), 26, RED, anchor="ra")
        y += 56
    if len(data["subsidies"]) > len(rows):
        c.text((MARGIN, y), _t(t["more"], **ctx), 24, GREY)
        y += 48
    y += 24
    for line in t["footer"]:
        c.text((WIDTH // 2, y), _t(line, **ctx), 24, GREY, anchor="mm")
        y += 40
    return Drawing(c.save(path, y + 20), c.lines)


def bar_chart(title: str, items: list[tuple[str, int | None]], path: Path, money: bool = True,
              note: str | None = None, font: Font | None = None) -> Drawing:
    """A horizontal bar chart: money in fen (money=True) or basis points of a rate (10000 =
    100%); a value None is shown as — with no bar."""
    font = font or find_font()
    if font is None:
        return Drawing(None)
    c = _Canvas(font, 200 + 56 * len(items) + 80)
    c.text((MARGIN, 40), title, 34, bold=True)
    y = 110
    top = max([v for _, v in items if v is not None] + [1])
    label_w = 200
    room = WIDTH - 2 * MARGIN - label_w - 200
    for i, (label, value) in enumerate(items):
        c.text((MARGIN, y + 4), c.fit(label, 26, label_w - 10), 26, GREY)
        if value is None:
            c.text((MARGIN + label_w, y + 4), "—", 26, GREY)
            y += 56
            continue
        w = max(int(room * max(value, 0) / (top if money else 10000)), 2)
        c.draw.rectangle((MARGIN + label_w, y + 6, MARGIN + label_w + w, y + 34),
                         fill=BAR2 if i % 2 else BAR)
        shown = format_yuan(value) if money else f"{value / 100:.2f}%"
        c.text((MARGIN + label_w + w + 12, y + 4), shown, 26)
        y += 56
    if note:
        c.text((MARGIN, y + 20), c.fit(note, 24, WIDTH - 2 * MARGIN), 24, GREY)
        y += 60
    return Drawing(c.save(path, y + 30), c.lines)


def year_charts(report: dict, directory: Path, stem: str,
                font: Font | None = None) -> list[Drawing]:
    """The year report's charts: participation per village, and the fund's year."""
    from decimal import Decimal

    font = font or find_font()
    if font is None:
        return []
    t = texts()["year"]
    r = dict(report)
    for key in ("utilisation", "benefit_rate", "burden_reduction"):
        v = report.get(key)
        r[f"{key}_percent"] = "—" if v is None else f"{Decimal(v) * 100:.2f}%"
    villages = [(v["village_name"], None if v["rate"] is None else int(Decimal(v["rate"]) * 10000))
                for v in report["villages"]]
    out = [bar_chart(_t(t["participation"], r=r), villages,
                     directory / f"{stem}-participation.png", money=False, font=font)]
    bars = [(b["label"], int(report.get(b["field"]) or 0)) for b in t["fund_bars"]]
    out.append(bar_chart(_t(t["fund"], r=r), bars, directory / f"{stem}-fund.png",
                         note=_t(t["note"], r=r), font=font))
    return out
