"""Sample claim documents drawn with Pillow and a CJK font, for the demo, the benchmark and the
tests: a settlement sheet (医保结算单), a discharge record (出院记录), an itemized bill (住院费用清单),
a photo of something else, and `degrade()` to make a clean page look like a phone photo (blur,
a slight rotation, strong JPEG compression).

The font is the one core/fonts.py finds (FONT_FILE, else a system CJK font, else the packaged
Noto Sans CJK), its Simplified Chinese face. Without a real CJK face nothing is drawn:
`FontMissing` names the file tried, rather than pages of .notdef boxes.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from core import fonts


class FontMissing(RuntimeError):
    pass


def face() -> fonts.Face:
    """The CJK face the documents are drawn with; FontMissing (naming the file) if none."""
    try:
        return fonts.find_cjk_face()
    except fonts.FontError as exc:
        raise FontMissing(f"the sample documents need a Chinese font: {exc}") from None


def font(size: int) -> ImageFont.FreeTypeFont:
    return face().get(size)


# ---------------------------------------------------------------------------------------------

@dataclass
class Stay:
    """The facts a set of documents shows (amounts in fen)."""
    name: str = "王大山"
    id_number: str = "320582196005171236"  # printed on the sheet; never stored unmasked
    hospital: str = "张家港市第一人民医院"
    insurance: str = "城乡居民基本医疗保险"
    admission: date = date(2025, 3, 2)
    discharge: date = date(2025, 3, 15)
    total_fen: int = 4823650
    fund_paid_fen: int = 3012000
    self_pay_fen: int = 1211650  # 个人自付
    self_funded_fen: int = 600000  # 个人自费
    diagnosis: str = "社区获得性肺炎"
    items: list[tuple[str, str, str, int]] = field(default_factory=lambda: [
        ("床位费", "天", "13", 45000), ("头孢曲松钠注射液", "支", "26", 181220),
        ("胸部CT平扫", "次", "2", 64000), ("血常规检查", "次", "6", 12600),
        ("护理费", "天", "13", 32500), ("氯化钠注射液", "袋", "40", 8800)])

    @property
    def out_of_pocket_fen(self) -> int:
        return self.self_pay_fen + self.self_funded_fen


def yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


def _page(size=(1080, 1440)) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", size, (250, 250, 246))
    return img, ImageDraw.Draw(img)


def _title(d: ImageDraw.ImageDraw, width: int, y: int, text: str, size: int = 40) -> int:
    d.text((width // 2, y), text, font=font(size), fill=(20, 20, 20), anchor="mt")
    return y + size + 40


def settlement_sheet(stay: Stay | None = None, *, table: bool = True,
                     total_label: str = "个人支付合计") -> Image.Image:
    """A basic-insurance settlement sheet. `table`: labels and values in separate cells (as most
    printed sheets), else `标签：数值` lines. `total_label`: the line with the whole personal
    payment (None leaves it out, as some sheets do)."""
    s = stay or Stay()
    img, d = _page()
    w = img.width
    y = _title(d, w, 60, "苏州市基本医疗保险住院费用结算单")
    f = font(28)
    rows = [("医院名称", s.hospital), ("姓名", s.name), ("身份证号", s.id_number),
            ("险种类型", s.insurance),
            ("入院日期", f"{s.admission:%Y-%m-%d}"), ("出院日期", f"{s.discharge:%Y-%m-%d}"),
            ("医疗费用总额", yuan(s.total_fen)), ("统筹基金支付", yuan(s.fund_paid_fen)),
            ("个人自付", yuan(s.self_pay_fen)), ("个人自费", yuan(s.self_funded_fen))]
    if total_label:
        rows.append((total_label, yuan(s.out_of_pocket_fen)))
    rows.append(("结算日期", f"{s.discharge:%Y-%m-%d}"))
    left, mid, right, h = 70, 400, w - 70, 64
    for label, value in rows:
        if table:
            d.rectangle([left, y, right, y + h], outline=(60, 60, 60), width=2)
            d.line([mid, y, mid, y + h], fill=(60, 60, 60), width=2)
            d.text((left + 20, y + h // 2), label, font=f, fill=(20, 20, 20), anchor="lm")
            d.text((mid + 24, y + h // 2), value, font=f, fill=(20, 20, 20), anchor="lm")
        else:
            d.text((left, y + h // 2), f"{label}：{value}", font=f, fill=(20, 20, 20), anchor="lm")
        y += h
    d.text((left, y + 50), "经办机构：苏州市医疗保障局（盖章）", font=font(24), fill=(40, 40, 40))
    return img


def discharge_record(stay: Stay | None = None) -> Image.Image:
    s = stay or Stay()
    img, d = _page()
    w = img.width
    y = _title(d, w, 60, s.hospital)
    y = _title(d, w, y - 10, "出院记录", 44)
    f = font(28)
    lines = [f"姓名：{s.name}　　性别：男　　年龄：65岁", "科别：呼吸内科　　住院号：2025030217",
             f"入院日期：{s.admission:%Y年%m月%d日}", f"出院日期：{s.discharge:%Y年%m月%d日}",
             f"入院诊断：{s.diagnosis}", f"出院诊断：{s.diagnosis}", "入院情况：咳嗽、发热3天。",
             "诊疗经过：入院后予抗感染、化痰等治疗，", "症状好转。", "出院情况：体温正常，咳嗽明显减轻。",
             "出院医嘱：注意休息，两周后门诊复查。", "医师签名：李明"]
    for line in lines:
        d.text((70, y), line, font=f, fill=(20, 20, 20))
        y += 62
    return img


def itemized_bill(stay: Stay | None = None) -> Image.Image:
    s = stay or Stay()
    img, d = _page()
    w = img.width
    y = _title(d, w, 60, f"{s.hospital}住院费用清单")
    f = font(26)
    d.text((70, y), f"姓名：{s.name}　住院号：2025030217　科室：呼吸内科", font=f, fill=(20, 20, 20))
    y += 70
    cols = (70, 470, 600, 760, 900)
    for x, head in zip(cols, ("项目名称", "单位", "数量", "单价", "金额")):
        d.text((x, y), head, font=f, fill=(20, 20, 20))
    y += 56
    d.line([70, y - 10, w - 70, y - 10], fill=(60, 60, 60), width=2)
    for name, unit, qty, amount in s.items:
        price = amount // int(qty)
        for x, text in zip(cols, (name, unit, qty, yuan(price), yuan(amount))):
            d.text((x, y), text, font=f, fill=(20, 20, 20))
        y += 54
    d.line([70, y, w - 70, y], fill=(60, 60, 60), width=2)
    d.text((70, y + 24), f"费用合计：{yuan(sum(i[3] for i in s.items))}", font=f, fill=(20, 20, 20))
    d.text((70, y + 84), "打印日期：2025-03-15", font=font(24), fill=(40, 40, 40))
    return img


def other_photo(seed: int = 7, with_text: bool = True) -> Image.Image:
    """Not a claim document: a noisy picture, with a line of unrelated text if asked."""
    rng = random.Random(seed)
    img = Image.new("RGB", (900, 1200), (rng.randrange(120, 200), rng.randrange(150, 220), 180))
    d = ImageDraw.Draw(img)
    for _ in range(60):
        x, y = rng.randrange(900), rng.randrange(1200)
        r = rng.randrange(10, 80)
        d.ellipse([x, y, x + r, y + r], fill=(rng.randrange(256), rng.randrange(256),
                                               rng.randrange(256)))
    if with_text:
        d.rectangle([80, 520, 820, 620], fill=(255, 255, 255))
        d.text((100, 540), "村委会通知：周六上午打扫卫生", font=font(36), fill=(0, 0, 0))
    return img


def degrade(img: Image.Image, *, blur: float = 1.2, angle: float = 2.0,
            quality: int = 35) -> Image.Image:
    """A phone photo of the page: slightly out of focus, a little rotated, JPEG-compressed."""
    out = img.filter(ImageFilter.GaussianBlur(blur)) if blur else img
    if angle:
        out = out.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=(235, 235, 228))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def photo(page: Image.Image, seed: int = 0, size=(1080, 1440)) -> Image.Image:
    """The page as a phone photographs it: on a table, a little smaller, off-centre, turned a
    few degrees, lit differently. Different seeds give pictures no perceptual hash confuses;
    re-saving or resizing one keeps it recognisable."""
    rng = random.Random(seed)
    table = (rng.randrange(90, 170), rng.randrange(70, 140), rng.randrange(40, 110))
    out = Image.new("RGB", size, table)
    scale = rng.uniform(0.8, 0.92)
    p = page.resize((int(page.width * scale), int(page.height * scale)), Image.LANCZOS)
    p = p.rotate(rng.uniform(-3, 3), resample=Image.BICUBIC, expand=True, fillcolor=table)
    out.paste(p, (rng.randrange(0, max(1, size[0] - p.width)),
                  rng.randrange(0, max(1, size[1] - p.height))))
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.88, 1.08))


def save(img: Image.Image, path: str | Path, fmt: str | None = None, quality: int = 85) -> Path:
    path = Path(path)
    fmt = fmt or {".png": "PNG", ".webp": "WEBP"}.get(path.suffix.lower(), "JPEG")
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    img.save(path, fmt, **kwargs)
    return path
