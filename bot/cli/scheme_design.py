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


def _refused(problem: str, **values) -> str:
    """What is wrong with the options (templates/messages/cli_design_refused.j2)."""
    from core.messages import render

    return render("cli_design_refused", problem=problem, **values)


def _int(value: str | None, option: str, low: int = 1) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(_refused("not_int", option=option, shown=repr(value)))
    if number < low:
        raise ValueError(_refused("too_small", option=option, low=low, shown=value))
    return number


def _options(args) -> dict:
    """The numeric options, checked before anything is read or written."""
    from core.money import parse_yuan

    opts = {"members": _int(args.members, "--members"),
            "simulate": _int(args.simulate, "--simulate"),
            "seed": _int(args.seed, "--seed", low=0)}
    if opts["members"] is None and args.members is not None:
        raise ValueError(_refused("members"))
    if args.funds is not None:
        try:
            opts["funds_fen"] = parse_yuan(args.funds)
        except ValueError:
            raise ValueError(_refused("funds_money", shown=repr(args.funds)))
        if opts["funds_fen"] <= 0:
            raise ValueError(_refused("funds_positive", shown=args.funds))
    else:
        opts["funds_fen"] = None
    try:
        reserve = Decimal(args.reserve)
    except InvalidOperation:
        raise ValueError(_refused("reserve_decimal", shown=repr(args.reserve)))
    if not reserve.is_finite() or not Decimal(0) <= reserve < Decimal("0.5"):
        raise ValueError(_refused("reserve_range", shown=args.reserve))
    opts["reserve"] = reserve
    if args.from_claims and not args.pool:
        raise ValueError(_refused("from_claims_pool"))
    if args.from_claims and args.weights:
        raise ValueError(_refused("weights_or_claims"))
    if args.backtest and not args.pool:
        raise ValueError(_refused("backtest_pool"))
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(_refused("out_not_folder", shown=args.out))
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
                return _fail(_refused("members_with_scheme"))
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
        print(f"huzhu: {_refused('rule_drift', shown=str(exc))}", file=sys.stderr)
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

            raise DesignError(_refused("no_members", shown=pool.code))
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
    from core.messages import render

    sim, year = doc.get("simulation"), doc.get("backtest_year")
    print(render("cli_design_summary", name=d.scheme.pool.name, doc=doc,
                 at_maximum=d.at_maximum, sim=sim,
                 p_exhaust=percent(sim["p_exhaust"]) if sim else None,
                 backtest_from=date.fromisoformat(year["start"]) if year else None,
                 backtest_to=date.fromisoformat(year["end"]) if year else None,
                 lines=doc.get("backtest") or [], files=doc.get("files") or []))
