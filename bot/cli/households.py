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


def _text(template: str, **values) -> str:
    """A text of templates/messages/ (Jinja2 loaded only by the commands that print one)."""
    from core.messages import render

    return render(template, **values)


def _today(x) -> date:
    return datetime.now(x.cfg.tz).date()


def cmd_template(args) -> int:
    from core.importer import write_template
    from core.models import Village

    x = app_context()
    with x.db.session() as s:
        villages = [v.full_name for v in s.scalars(select(Village).order_by(Village.id))]
    path = write_template(args.file, villages)
    print(_text("cli_households_template_made", path=str(path), villages=len(villages),
                 name=path.name))
    return 0


def cmd_import(args) -> int:
    from core.importer import ImportError_, import_households, write_report

    path = Path(args.file)
    if not path.is_file():
        print(_text("cli_file_missing", path=str(path)), file=sys.stderr)
        return 2
    year_on = None
    if args.year:
        try:
            year_on = date.fromisoformat(args.year)
        except ValueError:
            print(_text("cli_households_bad_year", given=repr(args.year)), file=sys.stderr)
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
            print(_text("cli_households_import_failed", name=path.name, report=str(report),
                         total=len(result.errors) + result.more_errors,
                         errors=result.errors[:20]), file=sys.stderr)
        return 1
    if args.json:
        print_json(result.to_json())
        return 0
    print(_text("cli_households_imported", name=path.name, r=result,
                 differences=result.differences[:20]))
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
                print(_text("cli_no_village", village=args.village), file=sys.stderr)
                return 2
        if args.pool:
            pool_id = s.scalar(select(Pool.id).where(Pool.code == args.pool))
            if pool_id is None:
                print(_text("cli_no_pool", pool=args.pool), file=sys.stderr)
                return 2
        rows = list_households(s, _today(x), village=village, pool_id=pool_id)
    if args.json:
        print_json(rows)
        return 0
    print(_text("cli_households_list", rows=rows,
                 people=sum(len(h["members"]) for h in rows)))
    return 0


# -- village QR codes and posters ------------------------------------------------------------

def find_cjk_font() -> tuple[str, int] | None:
    """(path, face index) of the CJK face (core/fonts.py), or None if FONT_FILE is not one."""
    from core import fonts

    try:
        face = fonts.find_cjk_face()
    except fonts.FontError as exc:
        print(_text("cli_notice", text=str(exc)), file=sys.stderr)
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

        title, call, note = _text("cli_poster_caption", pool=pool).splitlines()
        centered(110, village.replace("/", " "), big)
        centered(270, title, mid)
        centered(1370, call, small)
        centered(1450, note, small)
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
            print(_text("cli_no_pool", pool=args.pool), file=sys.stderr)
            return 2
        villages = [(v.id, v.full_name) for v in
                    s.scalars(select(Village).where(Village.pool_id == pool.id)
                              .order_by(Village.id))]
        pool_name = pool.name
    out_dir = Path(args.out) if args.out else x.cfg.data_dir / "qrcodes" / args.pool
    font = find_cjk_font()
    if font is None and not args.json:
        print(_text("cli_poster_no_font"), file=sys.stderr)
    wechat = WeChat(x.cfg, x.db)
    made = []
    for vid, full_name in villages:
        scene = f"village:{vid}"
        try:
            ticket, url, png = wechat.create_scene_qrcode(scene)
        except WeChatClientException as exc:
            print(_text("cli_qrcode_refused", village=full_name, error=str(exc)),
                  file=sys.stderr)
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
        print(_text("cli_qrcodes_made", made=made, font=font is not None, out=str(out_dir)))
    return 0
