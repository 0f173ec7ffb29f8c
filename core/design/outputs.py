"""The designer's files: `quotas.csv` (every group, ready for a scheme file's benefit.quotas),
`design.xlsx` (inputs, quotas, the simulation table, the back-test) and `design.png` (the
payout distribution against the funds, the month-by-month balance band), drawn with Pillow in
the CJK face core/fonts.py finds. Words in templates/messages/design.yaml."""
from __future__ import annotations

import io
from decimal import Decimal
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import yaml
from PIL import Image, ImageDraw

from core.config import TEMPLATES_DIR
from core.design.fit import Design
from core.design.simulate import Simulation
from core.fonts import find_cjk_face
from core.money import format_yuan


def _cell_yuan(fen) -> Decimal:
    """Fen as exact yuan for a workbook cell (no float on the way)."""
    return Decimal(int(round(fen))).scaleb(-2)

WIDTH, HEIGHT = 1400, 760
PAPER, INK, GREY, BAR, BAND, LINE, RED = ("#ffffff", "#1f2933", "#6b7785", "#5b8def",
                                          "#cfe0ff", "#1d4ed8", "#d64545")


@lru_cache(maxsize=1)
def words() -> dict:
    with open(TEMPLATES_DIR / "messages" / "design.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def percent(p: float) -> str:
    """A probability as the summaries print it: a small risk keeps its digits (0.04%, not 0.0%),
    one too small to show is "under 0.01%"."""
    if p <= 0:
        return "0%"
    if p < 0.0001:
        return words()["percent_below"].format(p="0.01%")
    return f"{p:.2%}" if p < 0.01 else f"{p:.1%}"


def _yuan(fen: int | float) -> str:
    return format_yuan(int(round(fen)), unit=False)


def quotas_csv(d: Design, names: Mapping[str, str]) -> str:
    """Every group: its quota, or `-` with the scheme's reason for an excluded one."""
    out = io.StringIO()
    for line in words()["quotas_csv"]:
        out.write(line.format(pool=d.scheme.pool.name, members=d.model.members,
                              funds=_yuan(d.funds_fen), reserve=d.reserve, fee_rate=d.fee_rate,
                              expected=_yuan(d.expected_payout_fen),
                              weights=d.weights_source) + "\n")
    out.write("drg_code,quota,note\n")
    for code in sorted(set(d.quotas_fen) | set(d.excluded)):
        if code in d.quotas_fen:
            out.write(f"{code},{format_yuan(d.quotas_fen[code], unit=False).replace(',', '')},\n")
        else:
            reason = d.excluded[code].replace(",", "，").replace("\n", " ")
            out.write(f"{code},-,{reason}\n")
    return out.getvalue()


def workbook(d: Design, sim: Simulation | None, names: Mapping[str, str],
             backtest: Iterable | None = None) -> bytes:
    from openpyxl import Workbook

    w = words()["workbook"]
    wb = Workbook()
    ws = wb.active
    ws.title = w["inputs"]
    r = w["input_rows"]
    s = d.scheme
    for label, value in (
            (r["scheme"], s.source or ""), (r["pool"], f"{s.pool.code} {s.pool.name}"),
            (r["year"], f"{s.year.start} – {s.year.end}"), (r["members"], d.model.members),
            (r["funds"], _cell_yuan(d.funds_fen)), (r["reserve"], float(d.reserve)),
            (r["reserve_yuan"], _cell_yuan(d.reserve_fen)), (r["fee"], _cell_yuan(d.fee_fen)),
            (r["target"], _cell_yuan(d.target_fen)),
            (r["expected"], _cell_yuan(d.expected_payout_fen)),
            (r["claims"], round(d.expected_claims, 1)), (r["scale"], round(d.scale, 2)),
            (r["weights"], d.weights_source),
            (r["at_maximum"], words()["yes_no"][0 if d.at_maximum else 1])):
        ws.append([label, value])
    ws.column_dimensions["A"].width = 28
    ws.column_dimensions["B"].width = 50

    wq = wb.create_sheet(w["quotas"])
    wq.append(w["quota_header"])
    index = {code: i for i, code in enumerate(d.model.codes)}
    for code in sorted(set(d.quotas_fen) | set(d.excluded)):
        if code in d.quotas_fen:
            i = index[code]
            wq.append([code, names.get(code, ""), round(float(d.model.weight[i]), 4),
                       round(float(d.model.rate[i]) * 1000, 4), _cell_yuan(d.quotas_fen[code]), ""])
        else:
            wq.append([code, names.get(code, ""), None, None, None,
                       w["excluded"].format(reason=d.excluded[code])])
    wq.column_dimensions["B"].width = 48

    if sim is not None:
        j = sim.to_json()
        wsim = wb.create_sheet(w["simulation"])
        sr = w["simulation_rows"]
        for label, value in ((sr["years"], j["years"]), (sr["p_exhaust"], j["p_exhaust"]),
                             (sr["month_exhaust"], j["month_exhaust"]),
                             (sr["p50"], _cell_yuan(j["payout_fen"]["p50"])),
                             (sr["p90"], _cell_yuan(j["payout_fen"]["p90"])),
                             (sr["p99"], _cell_yuan(j["payout_fen"]["p99"])),
                             (sr["mean"], _cell_yuan(j["payout_fen"]["mean"])),
                             (sr["checked"], j["checked_by_rule"])):
            wsim.append([label, value])
        wsim.append([])
        wsim.append(w["month_header"])
        b = j["balance_fen"]
        for m in range(12):
            wsim.append([m + 1, j["exhaust_by_month"][m], _cell_yuan(b["p5"][m]),
                         _cell_yuan(b["p50"][m]), _cell_yuan(b["p95"][m])])
        wsim.column_dimensions["A"].width = 28
    if backtest is not None:
        wb_ = wb.create_sheet(w["backtest"])
        wb_.append(w["backtest_header"])
        for line in backtest:
            wb_.append([line.village, line.claims, _cell_yuan(line.paid_fen),
                        _cell_yuan(line.proposed_fen)])
        wb_.column_dimensions["A"].width = 24
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def chart(d: Design, sim: Simulation | None, drawn: list[str] | None = None) -> bytes:
    """design.png: the year's payout distribution against the funds (left) and the balance
    month by month, 5–95% band and median (right). Amounts in 万元, or in yuan when the funds
    are under 100,000 yuan (a village's trial pool), so that no two ticks read the same.
    `drawn` collects every text drawn."""
    face = find_cjk_face()
    t = words()["chart"]
    img = Image.new("RGB", (WIDTH, HEIGHT), PAPER)
    draw = ImageDraw.Draw(img)
    if drawn is not None:
        text = draw.text

        def recorded(xy, label, *args, **kw):
            drawn.append(label)
            return text(xy, label, *args, **kw)

        draw.text = recorded
    font = face.get

    years = sim.years if sim else 0
    j = sim.to_json() if sim else None
    draw.text((40, 24), t["title"].format(pool=d.scheme.pool.name, years=years), font=font(34),
              fill=INK)
    draw.text((40, 76), t["subtitle"].format(
        members=f"{d.model.members:,}", funds=format_yuan(d.funds_fen),
        reserve=format_yuan(d.reserve_fen), expected=format_yuan(d.expected_payout_fen),
        p_exhaust=percent(j["p_exhaust"]) if j else "—"), font=font(22), fill=GREY)
    if sim is None:
        draw.text((40, 140), t["none"], font=font(26), fill=GREY)
        return _png(img)

    wan, unit = (1_000_000.0, t["wan"]) if d.funds_fen >= 10_000_000 else (100.0, t["yuan"])
    # left: histogram of annual payouts, with the funds and the money available marked
    x0, y0, x1, y1 = 80, 170, 660, 680
    draw.text((x0, 130), t["left"].format(unit=unit), font=font(22), fill=INK)
    totals = sim.totals_fen / wan
    funds = d.funds_fen / wan
    available = (d.funds_fen - d.reserve_fen) / wan
    lo = min(float(totals.min()), available) * 0.98
    hi = max(float(totals.max()), funds) * 1.02
    counts, edges = np.histogram(totals, bins=40, range=(lo, hi))
    top = max(int(counts.max()), 1)

    def xl(v: float) -> float:
        return x0 + (v - lo) / (hi - lo) * (x1 - x0)

    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        h = (y1 - y0) * c / top
        draw.rectangle((xl(a) + 1, y1 - h, xl(b) - 1, y1), fill=BAR)
    draw.line((x0, y1, x1, y1), fill=INK, width=2)
    for v, label, colour in ((funds, t["funds"], RED), (available, t["available"], GREY)):
        draw.line((xl(v), y0, xl(v), y1), fill=colour, width=3)
        draw.text((xl(v) + 6, y0 + (0 if colour == RED else 30)), label, font=font(20),
                  fill=colour)
    for v in np.linspace(lo, hi, 5):
        draw.text((xl(v), y1 + 10), _tick(v), font=font(18), fill=GREY, anchor="ma")

    # right: balance at the end of each month
    X0, Y0, X1, Y1 = 760, 170, 1340, 680
    draw.text((X0, 130), t["right"].format(unit=unit), font=font(22), fill=INK)
    b = j["balance_fen"]
    p5, p50, p95 = (np.array(b[k]) / wan for k in ("p5", "p50", "p95"))
    start = funds
    vmin = min(float(p5.min()), 0.0)
    vmax = start * 1.05

    def xr(m: int) -> float:
        return X0 + m / 12 * (X1 - X0)

    def yr(v: float) -> float:
        return Y1 - (v - vmin) / (vmax - vmin) * (Y1 - Y0)

    band = [(xr(0), yr(start))] + [(xr(m + 1), yr(p95[m])) for m in range(12)]
    band += [(xr(m + 1), yr(p5[m])) for m in reversed(range(12))] + [(xr(0), yr(start))]
    draw.polygon(band, fill=BAND)
    draw.line([(xr(0), yr(start))] + [(xr(m + 1), yr(p50[m])) for m in range(12)], fill=LINE,
              width=3)
    draw.line((X0, yr(0), X1, yr(0)), fill=RED, width=2)
    for m in range(0, 13, 3):
        draw.text((xr(m), Y1 + 10), t["month"].format(m=m) if m else "0", font=font(18),
                  fill=GREY, anchor="ma")
    for v in np.linspace(vmin, vmax, 5):
        draw.text((X0 - 8, yr(v)), _tick(v), font=font(18), fill=GREY, anchor="rm")
    draw.text((xr(12) - 4, yr(p50[-1]) - 28), t["median"], font=font(18), fill=LINE, anchor="ra")
    return _png(img)


def _tick(v: float) -> str:
    """An axis label: whole numbers with separators, never "-0"."""
    label = f"{v:,.0f}"
    return "0" if label == "-0" else label


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def write_all(folder: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write the files into `folder` (made if missing), each whole (temporary file, then
    rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, folder / name)
        written.append(folder / name)
    return written
