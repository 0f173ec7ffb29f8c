"""Households on the command line: the import template, bulk import, the list; village QR codes.

    huzhu households template [FILE.xlsx]
    huzhu households import FILE.xlsx [--year YYYY-MM-DD] [--report FILE.csv] [--json]
    huzhu households list [--village V] [--pool P] [--json]
    huzhu villages qrcodes --pool P [--out DIR]
"""
from __future__ import annotations

import getpass
import sys
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select

from bot.cli import app_context, print_json

def register(sub) -> None:
    p = sub.add_parser("households", help="households: import template, bulk import, list")
    hsub = p.add_subparsers(dest="households_command", required=True)
    q = hsub.add_parser("template", help="write the xlsx template villages fill in")
    q.add_argument("file", nargs="?", default="households-template.xlsx")
    q.set_defaults(func=cmd_template)
    q = hsub.add_parser("import", help="import a village list (all or nothing per file)")
    q.add_argument("file")
    q.add_argument("--year", metavar="YYYY-MM-DD",
                   help="a day inside the scheme year to enrol for (default: the year whose "
                        "enrolment window is open today)")
    q.add_argument("--report", metavar="FILE.csv",
                   help="where to write the error report (default: FILE.errors.csv)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_import)
    q = hsub.add_parser("list", help="households with their members (masked)")
    q.add_argument("--village")
    q.add_argument("--pool")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)

    p = sub.add_parser("villages", help="villages: QR codes for sign-up posters")
    vsub = p.add_subparsers(dest="villages_command", required=True)
    q = vsub.add_parser("qrcodes", help="a permanent WeChat QR code and a printable poster per "
                                        "village of the pool")
    q.add_argument("--pool", required=True)
    q.add_argument("--out", help="directory for the PNG posters (default: DATA_DIR/qrcodes/POOL)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_qrcodes)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _today(x) -> date:
    return datetime.now(x.cfg.tz).date()


def cmd_template(args) -> int:
    from core.importer import write_template
    from core.models import Village

    x = app_context()
    with x.db.session() as s:
        villages = [v.full_name for v in s.scalars(select(Village).order_by(Village.id))]
    path = write_template(args.file, villages)
    print(f"{path}: 模板已生成（{len(villages)} 个村可选）。每人一行，户主那一行“与户主关系”填“户主”；"
          f"填好后运行 huzhu households import {path.name}")
    return 0


def cmd_import(args) -> int:
    from core.importer import ImportError_, import_households, write_report

    path = Path(args.file)
    if not path.is_file():
        print(f"huzhu: 找不到文件 {path}", file=sys.stderr)
        return 2
    year_on = None
    if args.year:
        try:
            year_on = date.fromisoformat(args.year)
        except ValueError:
            print(f"huzhu: --year 应为日期 YYYY-MM-DD，得到 {args.year!r}", file=sys.stderr)
            return 2
    x = app_context()

    def progress(text: str) -> None:
        if not args.json:
            print(f"  … {text}", file=sys.stderr, flush=True)

    try:
        with x.db.session() as s:
            result = import_households(s, x.vault, path, actor=_actor(), today=_today(x),
                                       year_on=year_on, progress=progress)
            if result.errors:
                s.rollback()
    except ImportError_ as exc:
        print(f"huzhu: {exc}", file=sys.stderr)
        return 2
    if result.errors:
        report = Path(args.report) if args.report else path.with_name(path.stem + ".errors.csv")
        write_report(result, report)
        if args.json:
            print_json({**result.to_json(), "report": str(report)})
        else:
            total = len(result.errors) + result.more_errors
            print(f"{path.name}: {total} 处错误，没有导入任何数据（整份文件要么全部导入，要么都不导入）。",
                  file=sys.stderr)
            for e in result.errors[:20]:
                print(f"  第{e.row}行 {e.column}: {e.message}", file=sys.stderr)
            if total > 20:
                print(f"  …… 共 {total} 处", file=sys.stderr)
            print(f"错误报告：{report}（改正后重新导入）", file=sys.stderr)
        return 1
    if args.json:
        print_json(result.to_json())
        return 0
    if not result.changed:
        print(f"{path.name}: 没有任何改动——文件中的 {result.unchanged} 人本年度都已登记在同一户"
              f"（这份名单已经导入过）。")
    else:
        print(f"{path.name}: 导入完成。新户 {result.households_new} 户，已有的户 "
              f"{result.households_renewed} 户续保或加人；新成员 {result.members_new} 人，"
              f"新登记（待缴费）{result.enrolments_new} 人；已登记未改动 {result.unchanged} 人。")
    for d in result.differences[:20]:
        print(f"  提示：第{d.row}行 {d.column} {d.message}")
    return 0


def cmd_list(args) -> int:
    from core.admins import find_village
    from core.households import list_households
    from core.models import Pool

    x = app_context()
    with x.db.session() as s:
        village = pool_id = None
        if args.village:
            village = find_village(s, args.village)
            if village is None:
                print(f"huzhu: 没有这个村：{args.village}", file=sys.stderr)
                return 2
        if args.pool:
            pool_id = s.scalar(select(Pool.id).where(Pool.code == args.pool))
            if pool_id is None:
                print(f"huzhu: 没有这个资金池：{args.pool}", file=sys.stderr)
                return 2
        rows = list_households(s, _today(x), village=village, pool_id=pool_id)
    if args.json:
        print_json(rows)
        return 0
    for h in rows:
        states = [m["enrolment"] or "—" for m in h["members"]]
        print(f"{h['number']}  {h['village']}  {h['status']}  {len(h['members'])} 人  "
              f"本年度: {', '.join(states)}")
        for m in h["members"]:
            print(f"    {m['name']:<6} {m['id_number']}  {m['relation']:<7} {m['insurance']:<9} "
                  f"{m['category'] or ''}")
    print(f"共 {len(rows)} 户，{sum(len(h['members']) for h in rows)} 人")
    return 0


# -- village QR codes and posters ------------------------------------------------------------

def find_cjk_font() -> tuple[str, int] | None:
    """(path, face index) of the CJK face (core/fonts.py), or None if FONT_FILE is not one."""
    from core import fonts

    try:
        face = fonts.find_cjk_face()
    except fonts.FontError as exc:
        print(f"注意：{exc}", file=sys.stderr)
        return None
    return face.path, face.index


def poster(qr_png: bytes, village: str, pool: str, out: Path,
           font: tuple[str, int] | None) -> Path:
    """A printable A5-ish poster: the village name above the QR code, a line below.
    Without a CJK font the caption is left out (Pillow's default font has no Chinese)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    qr = Image.open(io.BytesIO(qr_png)).convert("RGB")
    qr = qr.resize((900, 900), Image.NEAREST)
    page = Image.new("RGB", (1240, 1754), "white")  # A5 at 210 dpi
    page.paste(qr, ((1240 - 900) // 2, 420))
    if font is not None:
        draw = ImageDraw.Draw(page)
        big = ImageFont.truetype(font[0], 110, index=font[1])
        mid = ImageFont.truetype(font[0], 64, index=font[1])
        small = ImageFont.truetype(font[0], 48, index=font[1])

        def centered(y: int, text: str, f) -> None:
            w = draw.textlength(text, font=f)
            draw.text(((1240 - w) / 2, y), text, fill="black", font=f)

        centered(110, village.replace("/", " "), big)
        centered(270, f"乡村公益医疗互助（{pool}）", mid)
        centered(1370, "微信扫一扫，关注后回复 1 参加互助", small)
        centered(1450, "以家庭为单位自愿参加", small)
    out.parent.mkdir(parents=True, exist_ok=True)
    page.save(out, format="PNG", dpi=(210, 210))
    return out


def cmd_qrcodes(args) -> int:
    from bot.clients.wechat import WeChat, WeChatClientException
    from core.audit import audit
    from core.models import Pool, Village

    x = app_context()
    with x.db.session() as s:
        pool = s.scalar(select(Pool).where(Pool.code == args.pool))
        if pool is None:
            print(f"huzhu: 没有这个资金池：{args.pool}", file=sys.stderr)
            return 2
        villages = [(v.id, v.full_name) for v in
                    s.scalars(select(Village).where(Village.pool_id == pool.id)
                              .order_by(Village.id))]
        pool_name = pool.name
    out_dir = Path(args.out) if args.out else x.cfg.data_dir / "qrcodes" / args.pool
    font = find_cjk_font()
    if font is None and not args.json:
        print("注意：没有可用的中文字体（见配置 FONT_FILE），海报上只有二维码，没有村名；"
              "请在海报上手写村名，或改正 FONT_FILE 后重新生成。", file=sys.stderr)
    wechat = WeChat(x.cfg, x.db)
    made = []
    for vid, full_name in villages:
        scene = f"village:{vid}"
        try:
            ticket, url, png = wechat.create_scene_qrcode(scene)
        except WeChatClientException as exc:
            print(f"huzhu: 微信接口拒绝为 {full_name} 生成二维码：{exc}", file=sys.stderr)
            return 1
        path = poster(png, full_name, pool_name, out_dir / f"{vid:04d}-{full_name.replace('/', '-')}.png",
                      font)
        made.append({"village": full_name, "village_id": vid, "scene": scene, "url": url,
                     "poster": str(path)})
    with x.db.session() as s:
        audit(s, _actor(), "villages.qrcodes", "pool", args.pool, None,
              {"villages": [m["village"] for m in made], "out": str(out_dir)})
    if args.json:
        print_json({"pool": args.pool, "font": font[0] if font else None, "qrcodes": made})
    else:
        for m in made:
            print(f"{m['village']}: {m['poster']}  (scene {m['scene']})")
        print(f"共 {len(made)} 张海报{'（无村名，缺中文字体）' if font is None else ''}，在 {out_dir}")
    return 0
