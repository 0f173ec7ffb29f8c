"""Relative weights per DRG group for the quota designer: read from a CSV, the packaged default,
or estimated from a pool's own claims.

A weights CSV is `code,weight` or `code,weight,rate` (with that header; `#` lines are comments):
`weight` a relative weight (any positive scale: only ratios matter), `rate` admissions per
1,000 members a year (optional, empty for a group without one). Every row is checked before
anything is used: an unknown code, a missing, non-numeric or negative weight, a duplicate code
or a bad rate raises `DesignError` naming the file and the line. Groups of the catalogue the
file leaves out get the average of their ADRG (first three characters), else of their MDC
(first letter), else of all rows: `fill` below.

The packaged default (`DEFAULT_WEIGHTS`) is DERIVED from huzhu's own preset quotas with MDC
averages, not published weights: no CHS-DRG 1.1 weight table with a licence could be found.
Its header says so; README "测算" too.

From claims: each group's weight is its approved claims' mean out-of-pocket amount, shrunk
toward its ADRG's mean, the ADRG's toward its MDC's and the MDC's toward the whole pool's, with
credibility n / (n + SHRINK_CLAIMS) — a group with few claims borrows most of its amount from
its neighbours. The pool's claims per 1,000 member-years are shared over the groups the same
way (MDC, then ADRG, then group, each share smoothed by SHARE_PSEUDO pseudo-claims), so a group
never seen keeps a small rate and the rates add up to the pool's own.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from core.design.errors import DesignError, design_text

DEFAULT_WEIGHTS = (Path(__file__).resolve().parent.parent / "data" / "drg-weights"
                   / "chs-drg-1.1-derived.csv")
#: claims at which a group's own numbers count as much as its ADRG's (and so on upward)
SHRINK_CLAIMS = 5.0
#: pseudo-claims per MDC, ADRG and group when the pool's claim rate is shared over the groups
SHARE_PSEUDO = 0.5
_HEADERS = (["code", "weight"], ["code", "weight", "rate"])


@dataclass(frozen=True)
class Weights:
    """weight per group (positive), rate per group (admissions per 1,000 members a year, or
    None where the source gives none), `source` says where they came from."""
    weight: Mapping[str, float]
    rate: Mapping[str, float | None]
    source: str
    #: from claims: the out-of-pocket amounts' spread (log-sd) and the mean amount at weight 1
    log_sd: float | None = None
    oop_per_weight_fen: float | None = None


def read_weights(path: str | Path, catalog: Iterable[str]) -> Weights:
    """A weights CSV checked row by row against the catalogue, then filled (see module)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DesignError(design_text("weights.read_weights.1", path=path))
    except UnicodeDecodeError:
        raise DesignError(design_text("weights.read_weights.2", name=path.name))
    from core.scheme import national_groups

    catalog = tuple(catalog)
    known = set(catalog) | set(national_groups())  # an excluded group may still have a row

    def fail(number: int, message: str) -> DesignError:
        return DesignError(design_text("weights.fail.1", name=path.name, number=number,
                                       message=message))

    header: list[str] | None = None
    weight: dict[str, float] = {}
    rate: dict[str, float | None] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(io.StringIO(text, newline=""), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        row = [cell.strip() for cell in next(csv.reader([line]))]
        if header is None:
            if [c.lower() for c in row] not in _HEADERS:
                raise fail(number, design_text("weights.read_weights.3", line=line))
            header = row
            continue
        if len(row) != len(header):
            raise fail(number, design_text("weights.read_weights.4", count=len(header),
                                           items=','.join(header), line=line))
        code = row[0]
        if code not in known:
            raise fail(number, design_text("weights.read_weights.5", code=code))
        if code in lines:
            raise fail(number, design_text("weights.read_weights.6", code=code, value=lines[code]))
        lines[code] = number
        if not row[1]:
            raise fail(number, design_text("weights.read_weights.7", code=code))
        weight[code] = _number(row[1], lambda m: fail(number, design_text("weights.read_weights.8",
                                                                          code=code, m=m)))
        if weight[code] <= 0:
            raise fail(number, design_text("weights.read_weights.9", code=code, value=row[1]))
        rate[code] = None
        if len(row) > 2 and row[2]:
            rate[code] = _number(row[2], lambda m: fail(
                number, design_text("weights.read_weights.10", code=code, m=m)))
            if rate[code] < 0:
                raise fail(number, design_text("weights.read_weights.11", code=code, value=row[2]))
    if header is None or not weight:
        raise DesignError(design_text("weights.read_weights.12", name=path.name))
    given = [code for code, r in rate.items() if r is not None]
    if given and len(given) < len(rate):
        # a rate is admissions per 1,000 members of that group: filling the rest with the
        # average would count every unrated group as often as the rated ones
        missing = next(code for code, r in rate.items() if r is None)
        raise fail(lines[missing], design_text("weights.read_weights.13", missing=missing,
                                               count=len(given)))
    filled = fill(weight, catalog)
    rates = fill({c: r for c, r in rate.items() if r is not None}, catalog) if any(
        r is not None for r in rate.values()) else {c: None for c in catalog}
    return Weights(filled, rates, design_text("weights.read_weights.14", name=path.name,
                                              count=len(weight)))


def default_weights(catalog: Iterable[str]) -> Weights:
    weights = read_weights(DEFAULT_WEIGHTS, catalog)
    return Weights(weights.weight, weights.rate,
                   design_text("weights.default_weights.1"))


def _number(text: str, fail) -> float:
    try:
        value = float(text)
    except ValueError:
        raise fail(design_text("weights.number.1", text=text))
    if not math.isfinite(value):
        raise fail(design_text("weights.number.2", text=text))
    return value


def fill(values: Mapping[str, float], catalog: Iterable[str]) -> dict[str, float]:
    """Every catalogue group's value: its own, else its ADRG's average, else its MDC's, else
    the average of all (for groups a table leaves out)."""
    allv = sum(values.values()) / len(values) if values else 0.0
    groups: dict[str, list[float]] = {}
    for code, v in values.items():
        groups.setdefault(code[:3], []).append(v)
        groups.setdefault(code[:1], []).append(v)
    mean = {k: sum(v) / len(v) for k, v in groups.items()}
    return {code: values.get(code, mean.get(code[:3], mean.get(code[:1], allv)))
            for code in catalog}


def shrunk(stats: Mapping[str, tuple[float, float]], catalog: Iterable[str],
           k: float = SHRINK_CLAIMS) -> dict[str, float]:
    """Per group from (n, value) pairs (value the group's own estimate from n claims): shrunk
    toward the ADRG, the ADRG toward the MDC, the MDC toward the whole, each with
    credibility n / (n + k). A group with no claims gets its ADRG's figure."""
    def pooled(keyfn) -> dict[str, tuple[float, float]]:
        out: dict[str, list[float]] = {}
        for code, (n, v) in stats.items():
            acc = out.setdefault(keyfn(code), [0.0, 0.0])
            acc[0] += n
            acc[1] += n * v
        return {key: (n, s / n if n else 0.0) for key, (n, s) in out.items()}

    total_n = sum(n for n, _ in stats.values())
    overall = sum(n * v for n, v in stats.values()) / total_n if total_n else 0.0

    def blend(n: float, v: float, parent: float) -> float:
        return (n * v + k * parent) / (n + k)

    mdc = {key: blend(n, v, overall) for key, (n, v) in pooled(lambda c: c[:1]).items()}
    adrg = {key: blend(n, v, mdc.get(key[:1], overall))
            for key, (n, v) in pooled(lambda c: c[:3]).items()}
    result = {}
    for code in catalog:
        parent = adrg.get(code[:3], mdc.get(code[:1], overall))
        n, v = stats.get(code, (0.0, 0.0))
        result[code] = blend(n, v, parent)
    return result


def shared_rates(counts: Mapping[str, int], catalog: Iterable[str], total: float,
                 k: float = SHARE_PSEUDO) -> dict[str, float]:
    """The pool's claim rate `total` (per 1,000 a year) shared over every group: the MDC's
    share of the claims, the ADRG's share within it, the group's within that, each smoothed
    with `k` pseudo-claims per member (a group never seen keeps a little of its ADRG's and
    MDC's share). The shares sum to one, so the rates sum to `total`."""
    catalog = tuple(catalog)
    n_of: dict[str, float] = {}
    children: dict[str, set[str]] = {"": set()}
    for code in catalog:
        for parent, key in (("", code[:1]), (code[:1], code[:3]), (code[:3], code)):
            children.setdefault(parent, set()).add(key)
    for code, n in counts.items():
        for key in (code[:1], code[:3], code):
            n_of[key] = n_of.get(key, 0.0) + n
    n_of[""] = float(sum(counts.values()))

    def share(parent: str, key: str) -> float:
        kids = children[parent]
        return (n_of.get(key, 0.0) + k) / (n_of.get(parent, 0.0) + k * len(kids))

    return {code: total * share("", code[:1]) * share(code[:1], code[:3])
            * share(code[:3], code) for code in catalog}


def from_claims(claims: Iterable[tuple[str, int]], member_years: float,
                catalog: Iterable[str]) -> Weights:
    """Weights and rates from approved claims `(drg_code, out_of_pocket_fen)` over
    `member_years` of membership (see module). DesignError when there are none."""
    catalog = tuple(catalog)
    by_group: dict[str, list[int]] = {}
    for code, oop in claims:
        if oop and oop > 0:
            by_group.setdefault(code, []).append(oop)
    if not by_group:
        raise DesignError(design_text("weights.from_claims.1"))
    if member_years <= 0:
        raise DesignError(design_text("weights.from_claims.2"))
    logs = [math.log(o) for v in by_group.values() for o in v]
    mean_log = sum(logs) / len(logs)
    log_sd = math.sqrt(sum((x - mean_log) ** 2 for x in logs) / len(logs)) if len(logs) > 1 else 0.8
    log_sd = min(max(log_sd, 0.3), 1.5)
    mean_oop = sum(o for v in by_group.values() for o in v) / len(logs)
    amount = shrunk({c: (len(v), sum(v) / len(v)) for c, v in by_group.items()}, catalog)
    rate = shared_rates({c: len(v) for c, v in by_group.items()}, catalog,
                        len(logs) / member_years * 1000.0)
    weight = {c: amount[c] / mean_oop for c in catalog}
    return Weights(weight, rate, design_text("weights.from_claims.3", count=len(logs),
                                             count_2=len(by_group)),
                   log_sd=log_sd, oop_per_weight_fen=mean_oop)
