"""Fitting quotas to the money raised (测算): one scale so that the expected subsidies of a year
equal funds − reserve − service fee.

The model of a year, per DRG group g:
- admissions: Poisson, `rate_g` per 1,000 members a year (the weights' rate column, or from
  claims; without rates DEFAULT_ADMISSIONS_PER_1000 spread evenly over the groups);
- out of pocket after basic insurance: log-normal, median OOP_MEDIAN_PER_WEIGHT_FEN × weight_g
  (from claims: the pool's own amounts), log-sd DEFAULT_LOG_SD (from claims: the pool's own);
- a claim is made when the amount reaches the member's threshold (by insurance type, members
  split by the pool's insurance mix, default DEFAULT_INSURANCE_MIX);
- it is paid the rule's amount: the quota (with the continuing members' bonus), at least the
  minimum, at most the per-claim maximum and the amount itself (core.adjudication).
The quota is `scale × weight_g`, rounded to whole yuan; the expected payout is exact under the
model (log-normal partial expectations) except for the annual cap, which the simulation
(core/design/simulate.py) applies member by member.

The stated assumptions (DEFAULT_*) are picked so that about 6% of members claim a year at a
3,000-yuan threshold, as Zhangjiagang reports ("每年约 6% 的参加人员获得补助"); a county
replaces them with its own figures through a weights file with rates, or with `--from-claims`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from typing import Mapping

import numpy as np

from core.adjudication import ClaimFacts, History, Rules, adjudicate
from core.money import format_yuan
from core.design.errors import DesignError, design_text
from core.design.weights import Weights
from core.scheme import Scheme

DEFAULT_ADMISSIONS_PER_1000 = 95.0  # all admissions of members a year, when no rates are given
OOP_MEDIAN_PER_WEIGHT_FEN = 600_000  # median out of pocket of a weight-1.0 admission: 6,000 yuan
DEFAULT_LOG_SD = 0.9  # spread of the out-of-pocket amount (log-normal sigma)
DEFAULT_INSURANCE_MIX = {"resident": 0.8, "employee": 0.2, "uninsured": 0.0}
DEFAULT_RESERVE = Decimal("0.10")
RESERVE_MAX = Decimal("0.5")
QUOTA_STEP_FEN = 100  # quotas are whole yuan
_HUGE_FEN = 10 ** 12


# ---------------------------------------------------------------------------------------------
# The normal distribution (no SciPy): Φ on a fine grid, interpolated.

_Z = np.linspace(-12.0, 12.0, 48_001)
_PHI = np.array([0.5 * math.erfc(-z / math.sqrt(2.0)) for z in _Z])


def phi(x) -> np.ndarray:
    """Φ(x), the standard normal distribution function (interpolated; |error| < 1e-8)."""
    return np.interp(x, _Z, _PHI, left=0.0, right=1.0)


def upper(x) -> np.ndarray:
    """1 − Φ(x), accurate in the upper tail (Φ(−x))."""
    return phi(-np.asarray(x, dtype=float))


def upper_inverse(v) -> np.ndarray:
    """z with 1 − Φ(z) = v, for v in (0, 1)."""
    return -np.interp(v, _PHI, _Z)


# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stratum:
    """Members alike for the rule: one insurance type (its threshold), continuing or not."""
    insurance: str
    continuing: bool
    share: float  # of all members
    threshold_fen: int


@dataclass
class Model:
    """The groups the design quotes (arrays in catalogue order) and the strata of members."""
    codes: tuple[str, ...]
    weight: np.ndarray
    rate: np.ndarray  # admissions per member-year (not per 1,000)
    mu: np.ndarray  # log-normal location of the out-of-pocket amount, fen
    sigma: np.ndarray
    strata: tuple[Stratum, ...]
    members: int


@dataclass
class Design:
    scheme: Scheme
    model: Model
    weights_source: str
    funds_fen: int
    reserve: Decimal
    reserve_fen: int
    fee_rate: Decimal
    target_fen: int  # funds − reserve − fee: what the subsidies should come to
    scale: float  # yuan of quota per unit of weight
    quotas_fen: dict[str, int]
    excluded: Mapping[str, str]
    expected_payout_fen: int
    fee_fen: int
    expected_claims: float  # a year
    at_maximum: bool = False  # funds more than the per-claim maximum lets be paid
    effective: dict[bool, np.ndarray] = field(default_factory=dict)  # continuing -> E per group

    @property
    def proposed(self) -> Scheme:
        """The scheme with the designed quotas (what the rule decides with)."""
        return with_quotas(self.scheme, self.quotas_fen)

    def to_json(self) -> dict:
        return {"groups": len(self.quotas_fen), "scale": round(self.scale, 4),
                "funds_fen": self.funds_fen, "reserve_fen": self.reserve_fen,
                "fee_fen": self.fee_fen, "expected_payout_fen": self.expected_payout_fen,
                "target_fen": self.target_fen, "members": self.model.members,
                "expected_claims": round(self.expected_claims, 1),
                "excluded": len(self.excluded), "at_maximum": self.at_maximum,
                "weights": self.weights_source}


def with_quotas(scheme: Scheme, quotas_fen: Mapping[str, int]) -> Scheme:
    return replace(scheme, benefit=replace(scheme.benefit, quotas_fen=dict(quotas_fen)))


def _bonus(scheme: Scheme) -> float:
    """The continuing members' bonus as the rule applies it: a quota halfway to the per-claim
    maximum, decided for a continuing member with no limit from the amount, over the quota
    (wherever the scheme keeps the rate, the rule is the one that knows)."""
    b = scheme.benefit
    code = next(iter(b.quotas_fen), None)
    if code is None:
        return 0.0
    q = max(b.max_per_claim_fen // 2, b.min_per_claim_fen, 1)
    paid = rule_effective(with_quotas(scheme, {code: q}), (code,), True)[0]
    return max(float(paid) / q - 1.0, 0.0)


def strata(scheme: Scheme, mix: Mapping[str, float], continuing_share: float) -> tuple[Stratum, ...]:
    total = sum(v for v in mix.values() if v > 0)
    if total <= 0:
        raise DesignError(design_text("fit.strata.1"))
    splits = ([(True, continuing_share), (False, 1.0 - continuing_share)] if _bonus(scheme) > 0
              else [(False, 1.0)])
    out = []
    for kind, v in mix.items():
        if v <= 0:
            continue
        for continuing, c in splits:
            if c > 0:
                out.append(Stratum(kind, continuing, v / total * c,
                                   scheme.claims.thresholds_fen[kind]))
    return tuple(out)


def build_model(scheme: Scheme, weights: Weights, codes: tuple[str, ...], members: int,
                mix: Mapping[str, float], continuing_share: float) -> Model:
    w = np.array([weights.weight[c] for c in codes], dtype=float)
    sigma = np.full(len(codes), weights.log_sd or DEFAULT_LOG_SD)
    if weights.oop_per_weight_fen:  # from claims: the mean amount at weight 1
        median = weights.oop_per_weight_fen / math.exp(sigma[0] ** 2 / 2)
    else:
        median = OOP_MEDIAN_PER_WEIGHT_FEN
    mu = np.log(median * w)
    ss = strata(scheme, mix, continuing_share)
    rates = [weights.rate.get(c) for c in codes]
    if any(r is None for r in rates):
        rate = np.full(len(codes), DEFAULT_ADMISSIONS_PER_1000 / 1000.0 / len(codes))
    else:
        rate = np.array(rates, dtype=float) / 1000.0
        if weights.log_sd is not None:
            # from claims: the rates counted claims (amounts above the threshold); admissions
            # are more, by the share of amounts that reach it
            p = sum(s.share * upper((math.log(s.threshold_fen or 1) - mu) / sigma) for s in ss)
            rate = rate / np.maximum(p, 0.05)
    return Model(codes, w, rate, mu, sigma, ss, members)


def claim_moments(E: np.ndarray, t: float, mu: np.ndarray, sigma: np.ndarray):
    """Per admission: P(claim) = P(O ≥ t), and the mean and second moment of the payout
    min(E, O) over admissions (0 when O < t). E per group, fen."""
    lt = math.log(max(t, 1.0))
    E = np.maximum(E.astype(float), 1.0)
    le = np.log(E)
    hi = np.maximum(le, lt)
    s2 = sigma ** 2
    p_claim = upper((lt - mu) / sigma)
    p_full = upper((hi - mu) / sigma)
    inside = E > t
    m1 = np.exp(mu + s2 / 2) * (phi((le - mu - s2) / sigma) - phi((lt - mu - s2) / sigma))
    m2 = np.exp(2 * mu + 2 * s2) * (phi((le - mu - 2 * s2) / sigma)
                                    - phi((lt - mu - 2 * s2) / sigma))
    mean = E * p_full + np.where(inside, m1, 0.0)
    second = E * E * p_full + np.where(inside, m2, 0.0)
    return p_claim, mean, second


def _clamp(q: np.ndarray, scheme: Scheme, continuing: bool, bonus: float) -> np.ndarray:
    """The rule's quota steps 2–3 without the amount itself (for the solver only; the design's
    reported figures use the rule's own amounts: `rule_effective`)."""
    b = bonus if continuing else 0.0
    q = np.floor(q * (1.0 + b) + 0.5)
    b_ = scheme.benefit
    return np.minimum(np.maximum(q, b_.min_per_claim_fen), b_.max_per_claim_fen)


def rule_effective(scheme: Scheme, codes: tuple[str, ...], continuing: bool) -> np.ndarray:
    """What the rule pays per group when the out-of-pocket amount is no limit: adjudicate()
    itself, once per group (quota, bonus, minimum, maximum)."""
    rules = Rules.from_scheme(scheme)
    day = scheme.year.start
    history = History(True, continuing, ())
    out = np.zeros(len(codes), dtype=np.int64)
    for i, code in enumerate(codes):
        d = adjudicate(ClaimFacts(0, code, _HUGE_FEN, day, day + timedelta(days=1), "resident"),
                       rules, history)
        out[i] = d.amount_fen if d.approved else 0
    return out


def expected_payout(model: Model, effective: Mapping[bool, np.ndarray]) -> tuple[float, float]:
    """(expected subsidies a year in fen, expected claims a year)."""
    total = claims = 0.0
    for s in model.strata:
        p, mean, _ = claim_moments(effective[s.continuing], s.threshold_fen, model.mu,
                                   model.sigma)
        n = model.members * s.share
        total += n * float(np.dot(model.rate, mean))
        claims += n * float(np.dot(model.rate, p))
    return total, claims


def _round_quotas(scale: float, w: np.ndarray) -> np.ndarray:
    q = np.floor(scale * w / QUOTA_STEP_FEN + 0.5) * QUOTA_STEP_FEN
    return np.maximum(q, QUOTA_STEP_FEN)


def design(scheme: Scheme, weights: Weights, codes: tuple[str, ...], members: int,
           funds_fen: int, reserve: Decimal = DEFAULT_RESERVE,
           mix: Mapping[str, float] | None = None, continuing_share: float = 1.0,
           excluded: Mapping[str, str] | None = None) -> Design:
    """Solve the scale (see module). `codes` are the groups to quote (the catalogue without
    the scheme's excluded groups)."""
    if members <= 0:
        raise DesignError(design_text("fit.design.1", members=members))
    if funds_fen <= 0:
        raise DesignError(design_text("fit.design.2"))
    if not (Decimal(0) <= reserve < RESERVE_MAX):
        raise DesignError(design_text("fit.design.3", reserve=reserve))
    model = build_model(scheme, weights, codes, members, mix or DEFAULT_INSURANCE_MIX,
                        continuing_share)
    fee_rate = scheme.service_fee.rate
    reserve_fen = int((Decimal(funds_fen) * reserve).to_integral_value())
    target = int(Decimal(funds_fen - reserve_fen) / (1 + fee_rate))

    bonus = _bonus(scheme)

    def f(scale: float) -> float:
        q = _round_quotas(scale, model.weight)
        eff = {c: _clamp(q, scheme, c, bonus) for c in (False, True)}
        return expected_payout(model, eff)[0]

    hi = scheme.benefit.max_per_claim_fen / float(model.weight.min()) * 1.01
    floor_fen = f(0.0)
    if floor_fen > target:
        raise DesignError(
            design_text("fit.design.4", available=format_yuan(round(target)),
                        minimum=format_yuan(scheme.benefit.min_per_claim_fen),
                        needed=format_yuan(round(floor_fen))))
    at_maximum = f(hi) <= target
    if at_maximum:
        scale = hi
    else:
        lo = 0.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if f(mid) <= target:
                lo = mid
            else:
                hi = mid
            if hi - lo < 0.5:
                break
        scale = lo
    q = _round_quotas(scale, model.weight).astype(np.int64)
    quotas = {code: int(v) for code, v in zip(codes, q)}
    proposed = with_quotas(scheme, quotas)
    effective = {c: rule_effective(proposed, codes, c)
                 for c in {s.continuing for s in model.strata}}
    payout, claims = expected_payout(model, effective)
    payout_fen = int(round(payout))
    fee_fen = int((Decimal(payout_fen) * fee_rate).to_integral_value())
    return Design(scheme, model, weights.source, funds_fen, reserve, reserve_fen, fee_rate,
                  target, scale / 100.0, quotas, dict(excluded or {}), payout_fen, fee_fen,
                  claims, at_maximum, effective)
