"""Simulated years under a design: the chance the fund runs out, the payout quantiles, the month.

Per stratum of members (insurance type, continuing or not) and year:
1. each member makes a Poisson number of claims (the claim rate: admissions × the share whose
   amount reaches the threshold), spread over the groups in proportion to their claim rates;
2. members with few enough claims that the annual cap cannot bind (k × the largest payout ≤
   the cap) are pooled: by Poisson splitting their claims per group and year are independent
   Poisson counts, and each claim is paid `payout(E, O)` — the rule's amount, E the group's quota after bonus, minimum and
   maximum, O the out-of-pocket amount drawn from the group's log-normal above the threshold.
   A group whose E is at most the threshold pays E whatever O is. Cells (year × group) with up
   to EXACT_CELL claims are drawn claim by claim; larger cells are summed by their exact mean
   and variance (a normal sum, clipped to its bounds) — the totals of thousands of claims;
3. members with more claims (Poisson counts of such members per year, split off the same
   way) are drawn claim by claim, in the order of the year, each payout
   limited by what is left of the annual cap (`capped`).
For the balance month by month, the year's claims fall in months drawn at random (multinomial):
each month gets the pooled claims' amount in proportion to its claims, and the claims drawn one
by one in their own months; the fund runs out in the first month in which the subsidies so far
and the service fee on them pass the funds.

The rule's own function checks a sample of the draws (`check_against_rule`): the same draws
through `core.adjudication.adjudicate` must give the same amounts, else `RuleDrift`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from core.adjudication import ClaimFacts, History, OtherClaim, Rules, adjudicate
from core.design.errors import DesignError, RuleDrift, design_text
from core.design.fit import Design, claim_moments, upper_inverse

EXACT_CELL = 24  # claims of one group in one year drawn one by one up to this many
CHECK_SAMPLE = 300  # draws the rule itself decides in every simulation
MAX_YEARS = 100_000
_CHUNK_YEARS = 500


def payout(E: np.ndarray, O: np.ndarray, threshold: int) -> np.ndarray:
    """The rule's amount for claims, vectorised: nothing below the threshold, else the
    group's effective quota E, never more than the out-of-pocket amount O."""
    return np.where(O >= threshold, np.minimum(E, O), 0)


def capped(amounts: np.ndarray, cap: int) -> np.ndarray:
    """Payouts of members' claims in order (rows: members), each limited to what is left of
    the annual cap: the cumulative payout is min(cumulative amount, cap)."""
    paid = np.minimum(np.cumsum(amounts, axis=1), cap)
    return np.diff(paid, axis=1, prepend=0)


@dataclass
class Simulation:
    years: int
    funds_fen: int
    totals_fen: np.ndarray  # subsidies per simulated year
    monthly_fen: np.ndarray  # (years, 12) subsidies per month
    fee_rate: float
    checked: int  # draws the rule decided too

    @property
    def outflow(self) -> np.ndarray:
        return np.cumsum(self.monthly_fen, axis=1) * (1.0 + self.fee_rate)

    def to_json(self) -> dict:
        out = self.outflow
        exhausted = out[:, -1] > self.funds_fen
        months = np.argmax(out > self.funds_fen, axis=1) + 1
        by_month = [float(np.mean(exhausted & (months == m))) for m in range(1, 13)]
        q = np.percentile(self.totals_fen, [50, 90, 99])
        balance = self.funds_fen - out
        band = np.percentile(balance, [5, 50, 95], axis=0)
        return {
            "years": self.years,
            "p_exhaust": round(float(np.mean(exhausted)), 4),
            "payout_fen": {"p50": int(q[0]), "p90": int(q[1]), "p99": int(q[2]),
                           "mean": int(round(float(self.totals_fen.mean())))},
            "month_exhaust": (int(np.median(months[exhausted])) if exhausted.any() else None),
            "exhaust_by_month": [round(p, 4) for p in by_month],
            "balance_fen": {"p5": [int(v) for v in band[0]], "p50": [int(v) for v in band[1]],
                            "p95": [int(v) for v in band[2]]},
            "checked_by_rule": self.checked,
        }


def _poisson_pmf(lam: float, kmax: int) -> np.ndarray:
    k = np.arange(kmax + 1)
    logp = -lam + k * math.log(lam) - np.array([math.lgamma(i + 1) for i in k])
    p = np.exp(logp)
    p[-1] = max(0.0, 1.0 - p[:-1].sum())  # the tail lumped into the last
    return p / p.sum()


def _draw_oop(rng, mu: np.ndarray, sigma: np.ndarray, p_claim: np.ndarray,
              groups: np.ndarray) -> np.ndarray:
    """Out-of-pocket amounts (fen) of claims in `groups`, log-normal above the threshold."""
    v = rng.random(groups.size) * p_claim[groups]
    v = np.clip(v, 1e-300, None)
    z = upper_inverse(v)
    return np.floor(np.exp(mu[groups] + sigma[groups] * z) + 0.5).astype(np.int64)


def simulate(d: Design, years: int, seed: int = 1, check: bool = True) -> Simulation:
    if not 1 <= years <= MAX_YEARS:
        raise DesignError(design_text("simulate.simulate.1", most=MAX_YEARS, years=years))
    rng = np.random.default_rng(seed)
    m = d.model
    G = len(m.codes)
    cap = d.scheme.benefit.annual_cap_fen
    totals = np.zeros(years)
    monthly = np.zeros((years, 12))
    samples: list[tuple] = []  # (stratum, group, oop, expected payout, earlier amounts)

    for s in m.strata:
        E = d.effective[s.continuing].astype(np.int64)
        t = s.threshold_fen
        p_claim, mean, second = claim_moments(E, t, m.mu, m.sigma)
        lam_g = m.rate * p_claim  # claims per member-year, by group
        lam = float(lam_g.sum())
        n_members = int(round(m.members * s.share))
        if lam <= 0 or n_members <= 0:
            continue
        pi = lam_g / lam
        cond_mean = np.where(p_claim > 0, mean / np.maximum(p_claim, 1e-300), 0.0)
        cond_var = np.maximum(np.where(p_claim > 0, second / np.maximum(p_claim, 1e-300), 0.0)
                              - cond_mean ** 2, 0.0)
        varies = E > t  # groups whose payout depends on the amount
        e_max = int(E.max()) if E.size else 0
        k_safe = max(1, cap // e_max) if e_max else 1
        kmax = k_safe + 1
        while kmax < 80 and (1.0 - _poisson_pmf(lam, kmax)[:-1].sum()) * n_members * years > 1e-3:
            kmax += 1
        pmf = _poisson_pmf(lam, kmax)
        # claims of members who cannot reach the cap, a year: Poisson per group (splitting)
        pooled_mean = n_members * float(np.dot(np.arange(k_safe + 1), pmf[:k_safe + 1]))

        for start in range(0, years, _CHUNK_YEARS):
            y = min(_CHUNK_YEARS, years - start)
            rows = slice(start, start + y)
            # members with k claims, k beyond k_safe: Poisson (rare; split off the pool)
            hist = np.zeros((y, kmax + 1), dtype=np.int64)
            for k in range(k_safe + 1, kmax + 1):
                hist[:, k] = rng.poisson(n_members * pmf[k], size=y)
            counts = rng.poisson(pooled_mean * pi, size=(y, G))  # (y, G) the others' claims
            amount = counts * np.where(varies, 0, E)[None, :].astype(float)
            # cells whose payout varies: small ones claim by claim, large ones by moments
            vc = counts * varies[None, :]
            small = (vc > 0) & (vc <= EXACT_CELL)
            large = vc > EXACT_CELL
            if large.any():
                n = vc[large].astype(float)
                g = np.nonzero(large)[1]
                z = rng.standard_normal(n.size)
                s_ = n * cond_mean[g] + np.sqrt(n * cond_var[g]) * z
                amount[large] += np.clip(s_, n * t, n * E[g])  # each pays between t and E
            if small.any():
                yy, gg = np.nonzero(small)
                reps = vc[yy, gg]
                gi = np.repeat(gg, reps)
                yi = np.repeat(yy, reps)
                oop = _draw_oop(rng, m.mu, m.sigma, p_claim, gi)
                paid = payout(E[gi], oop, t)
                amount += np.bincount(yi * G + gi, weights=paid,
                                      minlength=y * G).reshape(y, G)
                if len(samples) < CHECK_SAMPLE:
                    for j in rng.choice(gi.size, size=min(40, gi.size), replace=False):
                        samples.append((s, int(gi[j]), int(oop[j]), int(paid[j]), ()))
            year_pooled = amount.sum(axis=1)
            # spread over months by the months of the claims
            n_claims = counts.sum(axis=1)
            by_month = rng.multinomial(n_claims, np.full(12, 1 / 12))
            share = np.where(n_claims[:, None] > 0, by_month / np.maximum(n_claims, 1)[:, None],
                             1 / 12)
            month_amount = share * year_pooled[:, None]
            # members who might reach the annual cap: claim by claim, in month order
            for k in range(k_safe + 1, kmax + 1):
                n_k = hist[:, k]
                if not n_k.any():
                    continue
                owners = np.repeat(np.arange(y), n_k)
                mm = owners.size
                gi = np.searchsorted(np.cumsum(pi), rng.random((mm, k)) * pi.sum())
                gi = np.minimum(gi, G - 1)
                oop = _draw_oop(rng, m.mu, m.sigma, p_claim, gi.ravel()).reshape(mm, k)
                months = np.sort(rng.integers(0, 12, (mm, k)), axis=1)
                raw = payout(E[gi], oop, t)
                paid = capped(raw, cap)
                month_amount += np.bincount(np.repeat(owners, k) * 12 + months.ravel(),
                                            weights=paid.ravel(), minlength=y * 12).reshape(y, 12)
                if len(samples) < CHECK_SAMPLE + 60:
                    for r in range(min(mm, 20)):
                        for c in range(k):
                            samples.append((s, int(gi[r, c]), int(oop[r, c]), int(paid[r, c]),
                                            tuple(int(v) for v in paid[r, :c])))
            totals[rows] += month_amount.sum(axis=1)
            monthly[rows] += month_amount
        # draws of admissions, below the threshold too, for the rule's check
        gi = rng.choice(G, size=60, p=m.rate / m.rate.sum())
        z = rng.standard_normal(60)
        oop = np.floor(np.exp(m.mu[gi] + m.sigma[gi] * z) + 0.5).astype(np.int64)
        for g, o, p in zip(gi, oop, payout(E[gi], oop, t)):
            samples.append((s, int(g), int(o), int(p), ()))

    checked = check_against_rule(d, samples) if check else 0
    return Simulation(years, d.funds_fen, totals, monthly, float(d.fee_rate), checked)


def check_against_rule(d: Design, samples: list[tuple]) -> int:
    """Decide each sampled draw with `adjudicate` on the proposed scheme and compare with the
    simulation's amount; RuleDrift naming the first disagreement. The number checked."""
    rules = Rules.from_scheme(d.proposed)
    start: date = d.scheme.year.start
    for n, (s, g, oop, expected, earlier) in enumerate(samples):
        others = tuple(OtherClaim("paid", amount, start + timedelta(days=i), start
                                  + timedelta(days=i)) for i, amount in enumerate(earlier)
                       if amount > 0)
        day = start + timedelta(days=len(earlier) + 1)
        decision = adjudicate(
            ClaimFacts(1, d.model.codes[g], oop, day, day, s.insurance),
            rules, History(True, s.continuing, others))
        got = decision.amount_fen if decision.approved else 0
        if got != expected:
            raise RuleDrift(f"simulation paid {expected} fen, the rule {got} fen: group "
                            f"{d.model.codes[g]}, out of pocket {oop} fen, {s.insurance}, "
                            f"continuing={s.continuing}, earlier={earlier}, "
                            f"reasons={decision.reasons}")
    return len(samples)
