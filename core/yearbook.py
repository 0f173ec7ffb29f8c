"""The year report as a workbook (`huzhu report year`): the figures of core.stats.year_report
on sheets 概览, 各村参加, 申请情况 and 收入来源, money in yuan and rates as percentages."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font


def write_year_xlsx(report: dict, path: Path) -> Path:
    """The year report as a workbook: 概览, 各村参加, 申请情况 (money in yuan, rates as %)."""
    def yuan(fen):
        return None if fen is None else Decimal(int(fen)) / 100

    def rate(v):
        return None if v is None else Decimal(v)

    wb = Workbook()
    ws = wb.active
    ws.title = "概览"
    ws.append(["指标", "数值"])
    money = [("筹集资金（元）", report["raised_fen"]), ("补助支出（元）", report["paid_fen"]),
             ("服务费（元）", report["fees_fen"]), ("追回（元）", report["recovered_fen"]),
             ("上年结余（元）", report["carried_over_fen"]),
             ("年末余额（元）", report["balance_fen"]),
             ("平均补助（元）", report["average_subsidy_fen"]),
             ("已知个人自付合计（元）", report["out_of_pocket_fen"])]
    for label, fen in money:
        ws.append([label, yuan(fen)])
        ws.cell(ws.max_row, 2).number_format = "#,##0.00"
    for label, v in [("参加率", report["participation_rate"]),
                     ("基金使用率（补助÷筹集）", report["utilisation"]),
                     ("受益率（已发放笔数÷参加人数）", report["benefit_rate"]),
                     ("减负比例（补助÷个人自付）", report["burden_reduction"])]:
        ws.append([label, rate(v)])
        ws.cell(ws.max_row, 2).number_format = "0.00%"
    for label, n in [("参加人数", report["members"]), ("已发放补助笔数", report["claims_paid"]),
                     ("有个人自付金额的笔数", report["burden_claims"])]:
        ws.append([label, n])
    ws.column_dimensions["A"].width = 34
    ws.column_dimensions["B"].width = 18

    v = wb.create_sheet("各村参加")
    v.append(["村", "登记户数", "参加户数", "缴费户数", "登记人数", "参加人数", "缴费人数", "参加率"])
    for row in report["villages"]:
        v.append([row["village"], row["households"], row["households_enrolled"],
                  row["households_paid"], row["persons"], row["persons_enrolled"],
                  row["persons_paid"], rate(row["rate"])])
        v.cell(v.max_row, 8).number_format = "0.00%"
    v.column_dimensions["A"].width = 24

    c = wb.create_sheet("申请情况")
    c.append(["状态", "笔数"])
    for status, n in report["claims"].items():
        c.append([status, n])
    i = wb.create_sheet("收入来源")
    i.append(["来源", "金额（元）"])
    for source, fen in report["income_fen"].items():
        i.append([source, yuan(fen)])
        i.cell(i.max_row, 2).number_format = "#,##0.00"
    for sheet in wb.worksheets:
        for cell in sheet[1]:
            cell.font = Font(bold=True)
    wb.save(path)
    return path
