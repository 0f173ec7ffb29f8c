"""The xlsx template villages fill in (`huzhu households template`)."""
from __future__ import annotations

from pathlib import Path

from core.households import known_categories
from core.importer.common import COLUMNS, REQUIRED, SHEET


def write_template(path: str | Path, villages: list[str] | None = None) -> Path:
    """An xlsx template: the 名单 sheet with the header, text-formatted number columns and
    drop-downs, and a 说明 sheet with the rules and an example."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.worksheet.datavalidation import DataValidation

    path = Path(path)
    wb = Workbook()
    ws = wb.active
    ws.title = SHEET
    ws.append(list(COLUMNS))
    widths = (16, 12, 10, 10, 22, 12, 12, 10, 14, 10)
    for i, (title, width) in enumerate(zip(COLUMNS, widths), start=1):
        cell = ws.cell(row=1, column=i)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7" if title in REQUIRED else "F2F2F2")
        cell.alignment = Alignment(horizontal="center")
        letter = cell.column_letter
        ws.column_dimensions[letter].width = width
        if title in ("户号", "身份证号", "手机号"):
            ws.column_dimensions[letter].number_format = "@"
            for row in range(2, 2002):  # text format, so Excel keeps all 18 digits
                ws.cell(row=row, column=i).number_format = "@"
    ws.freeze_panes = "A2"

    def choice(column: str, values: list[str], allow_blank: bool) -> None:
        dv = DataValidation(type="list", formula1='"' + ",".join(values) + '"',
                            allow_blank=allow_blank, showErrorMessage=True,
                            errorTitle="请从下拉列表中选择", error="只能填写：" + "、".join(values))
        letter = ws.cell(row=1, column=COLUMNS.index(column) + 1).column_letter
        dv.add(f"{letter}2:{letter}1048576")
        ws.add_data_validation(dv)

    choice("与户主关系", ["户主", "配偶", "子女", "父母", "其他"], False)
    choice("医保类型", ["居民医保", "职工医保", "未参保"], False)
    choice("上年参加", ["是", "否"], True)
    if villages:
        lists = wb.create_sheet("村名")
        for v in villages:
            lists.append([v])
        dv = DataValidation(type="list", formula1=f"村名!$A$1:$A${len(villages)}",
                            allow_blank=False)
        dv.add("A2:A1048576")
        ws.add_data_validation(dv)
        lists.sheet_state = "hidden"

    notes = wb.create_sheet("说明")
    for line in (
        ["填写说明"],
        ["每人一行，同一户的人写同一个户主姓名；户主本人那一行“与户主关系”填“户主”。"],
        ["村：写“镇/村”或村名，例如 示范镇/东村。"],
        ["户号：新户留空，或填村里自己的户号（同一村有同名的户主时必须填，用来区分）；已登记的户填 H 开头的户号。"],
        ["身份证号：18位，请保持文本格式（不要让 Excel 变成科学计数法）。"],
        ["与户主关系：户主、配偶、子女、父母、其他。医保类型：居民医保、职工医保、未参保。"],
        ["类别：一般人员留空；低保、特困等困难人员填类别，可用：" + "、".join(known_categories())],
        ["手机号：户主那一行填写即可。导入时整份文件要么全部导入，要么（有错误时）一条也不导入。"],
        [],
        ["示例（不要写在“名单”里）："],
        list(COLUMNS),
        ["示范镇/东村", "", "王大山", "王大山", "320582196005171014", "户主", "居民医保", "",
         "13800138000"],
        ["示范镇/东村", "", "王大山", "李小花", "32058219620301102X", "配偶", "职工医保", "低保",
         ""],
    ):
        notes.append(line)
    notes.column_dimensions["A"].width = 100
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path
