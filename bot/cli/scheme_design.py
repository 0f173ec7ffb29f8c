"""`huzhu scheme design`: the quota designer (测算). Fits every group's quota to the money raised
(core/design), optionally simulates years and replays last year's claims, prints a summary (or
JSON) and, with --out, writes quotas.csv, design.xlsx and design.png. Bad input — an option or a
weights row — is one line on stderr naming it, exit 2, and nothing is written."""
from __future__ import annotations

import sys
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from bot.cli import print_json, subcommands


def register(sub) -> None:
    group = subcommands(sub, "scheme", "scheme files: one pool's rules for one year")
    p = group.add_parser("design", help="fit quotas to the funds, simulate the year (测算)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scheme", metavar="FILE", help="a scheme file (its quotas are replaced)")
    src.add_argument("--pool", metavar="P", help="a stored pool: its running year and members")
    p.add_argument("--members", metavar="N", help="members (default: the pool's paid members)")
    p.add_argument("--funds", metavar="YUAN",
                   help="money raised (default: members × the scheme's contribution)")
    p.add_argument("--weights", metavar="CSV", help="code,weight[,rate] per DRG group")
    p.add_argument("--from-claims", action="store_true",
                   help="estimate weights and rates from the pool's approved claims")
    p.add_argument("--backtest", action="store_true",
                   help="replay last year's claims under the proposed quotas, per village")
    p.add_argument("--reserve", metavar="R", default="0.10", help="share kept back, [0, 0.5)")
    p.add_argument("--simulate", metavar="YEARS", help="simulate this many years")
    p.add_argument("--seed", metavar="S", default="1", help="random seed of the simulation")
    p.add_argument("--out", metavar="DIR", help="write quotas.csv, design.xlsx, design.png here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_design)


def _fail(message: str) -> int:
    print(f"huzhu: {message}", file=sys.stderr)
    return 2


def _int(value: str | None, option: str, low: int = 1) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{option} 应为整数，得到 {value!r}")
    if number < low:
        raise ValueError(f"{option} 应为不小于 {low} 的整数，得到 {value}")
    return number


def _options(args) -> dict:
    """The numeric options, checked before anything is read or written."""
    from core.money import parse_yuan

    opts = {"members": _int(args.members, "--members"),
            "simulate": _int(args.simulate, "--simulate"),
            "seed": _int(args.seed, "--seed", low=0)}
    if opts["members"] is None and args.members is not None:
        raise ValueError("--members 应为大于 0 的整数")
    if args.funds is not None:
        try:
            opts["funds_fen"] = parse_yuan(args.funds)
        except ValueError:
            raise ValueError(f"--funds 应为金额（元），例如 600000，得到 {args.funds!r}")
        if opts["funds_fen"] <= 0:
            raise ValueError(f"--funds 应大于 0，得到 {args.funds}")
    else:
        opts["funds_fen"] = None
    try:
        reserve = Decimal(args.reserve)
    except InvalidOperation:
        raise ValueError(f"--reserve 应为 0 到 0.5 之间的小数，例如 0.10，得到 {args.reserve!r}")
    if not reserve.is_finite() or not Decimal(0) <= reserve < Decimal("0.5"):
        raise ValueError(f"--reserve 应在 [0, 0.5) 之间，例如 0.10，得到 {args.reserve}")
    opts["reserve"] = reserve
    if args.from_claims and not args.pool:
        raise ValueError("--from-claims 要和 --pool 一起用（用这个资金池已核准的申请估计权重）")
    if args.from_claims and args.weights:
        raise ValueError("--weights 和 --from-claims 只能选一个")
    if args.backtest and not args.pool:
        raise ValueError("--backtest 要和 --pool 一起用（回放这个资金池去年的申请）")
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: 已存在且不是文件夹")
    return opts


def cmd_design(args) -> int:
    from core.design import DesignError, RuleDrift, design, simulate
    from core.design.fit import DEFAULT_INSURANCE_MIX
    from core.design.service import quoted_groups
    from core.design.weights import default_weights, read_weights
    from core.scheme import SchemeError, load_scheme

    try:
        opts = _options(args)
    except ValueError as exc:
        return _fail(str(exc))

    backtest_lines = None
    try:
        if args.scheme:
            try:
                scheme = load_scheme(args.scheme)
            except SchemeError as exc:
                return _fail(f"--scheme: {exc}")
            members = opts["members"]
            if members is None:
                return _fail("--members: 用 --scheme 时要给出参加人数，例如 --members 20000")
            codes = quoted_groups(scheme)
            weights = (read_weights(args.weights, codes) if args.weights
                       else default_weights(codes))
            mix, continuing = DEFAULT_INSURANCE_MIX, 1.0
            names = _national_names()
            funds = opts["funds_fen"] or members * scheme.contribution.per_person_fen
            d = design(scheme, weights, codes, members, funds, opts["reserve"], mix, continuing,
                       scheme.benefit.quota_excluded)
        else:
            d, names, backtest_lines, replayed = _pool_design(args, opts)
        sim = simulate(d, opts["simulate"], seed=opts["seed"]) if opts["simulate"] else None
    except DesignError as exc:
        return _fail(str(exc))
    except RuleDrift as exc:  # a defect, not bad input: say so plainly
        print(f"huzhu: 模拟与补助规则不一致，未输出：{exc}", file=sys.stderr)
        return 1

    doc = d.to_json()
    doc["simulation"] = _simulation_json(sim)
    if backtest_lines is not None:
        doc["backtest_year"] = replayed
        doc["backtest"] = [line.to_json() for line in backtest_lines]
    if args.out:
        from core.design.outputs import chart, quotas_csv, workbook, write_all

        files = {"quotas.csv": quotas_csv(d, names).encode("utf-8"),
                 "design.xlsx": workbook(d, sim, names, backtest_lines),
                 "design.png": chart(d, sim)}
        doc["files"] = [str(p) for p in write_all(Path(args.out), files)]
    if args.json:
        print_json(doc)
    else:
        _print_summary(doc, d)
    return 0


def _national_names() -> dict[str, str]:
    from core.catalog import CHS_DRG_11, parse_catalog

    return dict(parse_catalog(CHS_DRG_11))


def _pool_design(args, opts):
    from datetime import datetime

    from core.catalog import group_names
    from core.config import load_config
    from core.design import design
    from core.design.backtest import backtest, backtest_year
    from core.design.pool import approved_claims, find_pool, pool_facts
    from core.design.service import quoted_groups
    from core.design.weights import default_weights, from_claims, read_weights
    from bot.cli import app_context

    x = app_context()
    today = datetime.now(load_config(validate=False).tz).date()
    with x.db.session() as s:
        pool = find_pool(s, args.pool)
        facts = pool_facts(s, pool, today)
        scheme = facts.scheme
        codes = quoted_groups(scheme)
        if args.weights:
            weights = read_weights(args.weights, codes)
        elif args.from_claims:
            claims, member_years = approved_claims(s, pool)
            weights = from_claims(claims, member_years, codes)
        else:
            weights = default_weights(codes)
        members = opts["members"] or facts.members
        if not members:
            from core.design import DesignError

            raise DesignError(f"--pool {pool.code}: 本年度还没有已缴费的参加人员；"
                              "请用 --members 给出参加人数")
        funds = opts["funds_fen"] or members * scheme.contribution.per_person_fen
        d = design(scheme, weights, codes, members, funds, opts["reserve"], facts.mix or None,
                   facts.continuing_share if facts.members else 1.0,
                   scheme.benefit.quota_excluded)
        names = group_names(s, codes)
        lines, replayed = None, None
        if args.backtest:
            year = backtest_year(s, facts.year)
            replayed = {"start": year.start.isoformat(), "end": year.end.isoformat()}
            lines = backtest(s, year, d.proposed)
        s.rollback()  # read only
    return d, names, lines, replayed


def _simulation_json(sim) -> dict | None:
    if sim is None:
        return None
    return sim.to_json()


def _print_summary(doc: dict, d) -> None:
    from core.design.outputs import percent
    from core.money import format_yuan

    print(f"测算：{d.scheme.pool.name}，参加 {doc['members']:,} 人，筹资 {format_yuan(doc['funds_fen'])}，"
          f"留存 {format_yuan(doc['reserve_fen'])}，服务费约 {format_yuan(doc['fee_fen'])}")
    print(f"病种 {doc['groups']} 个有定额（不补助 {doc['excluded']} 个）；每单位权重 "
          f"{doc['scale']:,.2f} 元；预计补助 {format_yuan(doc['expected_payout_fen'])}，"
          f"约 {doc['expected_claims']:,.0f} 人次")
    if d.at_maximum:
        print("注意：定额已到单次最高补助，筹资用不完")
    sim = doc.get("simulation")
    if sim:
        month = f"，用完时多在 {sim['month_exhaust']} 月" if sim["month_exhaust"] else ""
        print(f"模拟 {sim['years']:,} 年：基金用完的概率 {percent(sim['p_exhaust'])}{month}；全年补助 "
              f"中位数 {format_yuan(sim['payout_fen']['p50'])}，90% {format_yuan(sim['payout_fen']['p90'])}"
              f"，99% {format_yuan(sim['payout_fen']['p99'])}")
    if doc.get("backtest_year"):
        from core.messages import format_date

        start, end = (date.fromisoformat(doc["backtest_year"][k]) for k in ("start", "end"))
        print(f"回测：{format_date(start)}至{format_date(end)}的申请，实际补助与按新定额补助（按村）")
    for line in doc.get("backtest") or []:
        print(f"  {line['village']}: {line['claims']} 笔，实际 {format_yuan(line['paid_fen'])}，"
              f"按新定额 {format_yuan(line['proposed_fen'])}")
    for path in doc.get("files") or []:
        print(f"已写入 {path}")
