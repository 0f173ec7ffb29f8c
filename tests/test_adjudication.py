"""The adjudication rule (SPEC "Adjudication rule (exact)") on every preset, and its properties."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.adjudication import (CAP_STATUSES, REASON_CODES, REASONS, ClaimFacts, History,
                               OtherClaim, Rules, adjudicate, explain)
from core.config import SCHEMES_DIR
from core.models import ClaimStatus, InsuranceType
from core.money import format_yuan, parse_yuan, round_half_up
from core.scheme import EXCLUSION_KINDS, load_scheme

ALL_EXCLUSIONS = set(EXCLUSION_KINDS)

# The numbers each preset must carry (from the seeds, or the value its comments say was picked),
# in fen, and a (drg, quota) pair from its quota table.
PRESETS = {
    "anji-2024": dict(thresholds=(350000, 250000, 700000), min=30000, max=5000000,
                      cap=10000000, bonus=Decimal("0.10"), exclusions=ALL_EXCLUSIONS,
                      start=date(2024, 8, 1), end=date(2025, 7, 31), drg=("FM19", 640000)),
    # Tangqiao: no uninsured threshold (uninsured members are not subsidized); its exclusions
    # are everything basic insurance does not pay for, the built-in kinds and its own
    "tangqiao-2020": dict(thresholds=(300000, 200000, None), min=30000, max=5000000,
                          cap=20000000, bonus=Decimal(0),
                          exclusions=ALL_EXCLUSIONS | {"public_health", "self_harm", "intoxication",
                                                       "medical_accident", "not_covered_by_basic"},
                          start=date(2020, 6, 1), end=date(2021, 5, 31), drg=("FM19", 800000)),
    "haimen-2023": dict(thresholds=(300000, 200000, 600000), min=30000, max=4000000,
                        cap=8000000, bonus=Decimal(0), exclusions=ALL_EXCLUSIONS,
                        start=date(2023, 7, 1), end=date(2024, 6, 30), drg=("FM19", 640000)),
    "zhangjiagang": dict(thresholds=(200000, 200000, 400000), min=30000, max=5000000,
                         cap=20000000, bonus=Decimal(0), exclusions=ALL_EXCLUSIONS,
                         start=date(2022, 1, 1), end=date(2022, 12, 31), drg=("FM19", 800000)),
    "lianshui-2020": dict(thresholds=(200000, 150000, 400000), min=30000, max=2000000,
                          cap=4000000, bonus=Decimal(0), exclusions=ALL_EXCLUSIONS,
                          start=date(2020, 1, 1), end=date(2020, 12, 31), drg=("FM19", 400000)),
    "demo": dict(thresholds=(300000, 200000, 600000), min=30000, max=5000000, cap=10000000,
                 bonus=Decimal("0.10"), exclusions=ALL_EXCLUSIONS,
                 start=date(2030, 3, 3), end=date(2031, 3, 2), drg=("FM19", 800000)),
}
INSURANCE = ("resident", "employee", "uninsured")
DEMO_TODAY = date(2030, 6, 1)  # demo.yaml: year today-90d … today+274d


def preset_rules(name: str) -> Rules:
    return Rules.from_scheme(load_scheme(SCHEMES_DIR / f"{name}.yaml", today=DEMO_TODAY))


@pytest.fixture(params=sorted(PRESETS), scope="module")
def preset(request):
    return request.param, PRESETS[request.param], preset_rules(request.param)


def facts(expect: dict, **changes) -> ClaimFacts:
    admission = expect["start"] + timedelta(days=40)
    base = dict(member_id=7, drg_code=expect["drg"][0], out_of_pocket_fen=expect["cap"],
                admission_date=admission, discharge_date=admission + timedelta(days=6),
                insurance="resident", exclusion=None)
    base.update(changes)
    return ClaimFacts(**base)


PAID = History(enrolled_paid_this_year=True, enrolled_paid_previous_year=False)


def steps(decision) -> list[str]:
    return [step.step for step in decision.trace]


# ---------------------------------------------------------------------------------------------
# Each preset's numbers

def test_preset_rules_carry_the_seed_numbers(preset):
    name, expect, rules = preset
    assert tuple(rules.thresholds_fen.get(k) for k in INSURANCE) == expect["thresholds"]
    assert (rules.min_per_claim_fen, rules.max_per_claim_fen, rules.annual_cap_fen) == (
        expect["min"], expect["max"], expect["cap"])
    assert rules.continuous_bonus == expect["bonus"]
    assert rules.exclusions == expect["exclusions"]
    assert (rules.year_start, rules.year_end) == (expect["start"], expect["end"])
    code, quota = expect["drg"]
    assert rules.quotas_fen[code] == quota


@pytest.mark.parametrize("insurance", INSURANCE)
def test_threshold_per_insurance_type(preset, insurance):
    _, expect, rules = preset
    threshold = expect["thresholds"][INSURANCE.index(insurance)]
    if threshold is None:  # the scheme has no threshold for this type: never subsidized
        decision = adjudicate(facts(expect, insurance=insurance), rules, PAID)
        assert decision.reasons == ("uninsured_not_covered",)
        return
    below = adjudicate(facts(expect, insurance=insurance, out_of_pocket_fen=threshold - 1),
                       rules, PAID)
    assert below.status == "rejected" and below.reasons == ("below_threshold",)
    assert below.amount_fen is None
    at = adjudicate(facts(expect, insurance=insurance, out_of_pocket_fen=threshold), rules, PAID)
    assert at.status == "approved" and at.reasons == ()
    assert at.amount_fen == min(expect["drg"][1], threshold)


@pytest.mark.parametrize("kind", EXCLUSION_KINDS)
def test_each_exclusion(preset, kind):
    _, expect, rules = preset
    decision = adjudicate(facts(expect, exclusion=kind), rules, PAID)
    if kind in expect["exclusions"]:
        assert decision.status == "rejected"
        assert decision.reasons == (f"excluded_{kind}",)
    else:  # e.g. Tangqiao lists no non-designated-hospital or abroad exclusion
        assert decision.status == "approved"
        assert "不在本方案" in decision.trace[steps(decision).index("exclusion")].text


def test_quota_below_minimum_is_raised_to_the_minimum(preset):
    _, expect, rules = preset
    code = expect["drg"][0]
    low = replace(rules, quotas_fen={**rules.quotas_fen, code: expect["min"] - 1234})
    decision = adjudicate(facts(expect), low, PAID)
    assert decision.amount_fen == expect["min"]


def test_quota_above_maximum_is_cut_to_the_maximum(preset):
    _, expect, rules = preset
    code = expect["drg"][0]
    high = replace(rules, quotas_fen={**rules.quotas_fen, code: expect["max"] + 1})
    decision = adjudicate(facts(expect, out_of_pocket_fen=expect["max"] * 2), high, PAID)
    assert decision.amount_fen == expect["max"]


def test_never_more_than_out_of_pocket(preset):
    _, expect, rules = preset
    code, quota = max(rules.quotas_fen.items(), key=lambda item: item[1])
    out_of_pocket = max(expect["thresholds"][0], quota - 12345)  # reaches the threshold
    assert out_of_pocket < quota
    decision = adjudicate(facts(expect, drg_code=code, out_of_pocket_fen=out_of_pocket),
                          rules, PAID)
    assert decision.amount_fen == out_of_pocket


def test_annual_cap_across_several_claims(preset):
    _, expect, rules = preset
    cap, quota = expect["cap"], expect["drg"][1]
    day = expect["start"] + timedelta(days=5)

    def other(status, amount, offset):
        return OtherClaim(status, amount, day + timedelta(days=offset),
                          day + timedelta(days=offset + 1), f"C{offset:08d}")

    left = 10001  # fen left of the cap after three earlier claims
    first = (cap - left) // 3
    earlier = (other("approved", first, 0), other("in_payout", first, 3),
               other("paid", cap - left - 2 * first, 6))
    # submitted, in_review and rejected claims and last year's paid claim do not count
    ignored = (other("submitted", cap, 100), other("rejected", cap, 110),
               other("in_review", cap, 120),
               OtherClaim("paid", cap, expect["start"] - timedelta(days=30),
                          expect["start"] - timedelta(days=20), "C00000999"))
    history = History(True, False, earlier + ignored)
    decision = adjudicate(facts(expect, admission_date=day + timedelta(days=200),
                                discharge_date=day + timedelta(days=201)), rules, history)
    assert decision.status == "approved"
    assert decision.amount_fen == min(quota, left)
    assert decision.amount_fen == left  # every preset's example quota is above 100.01 yuan

    full = History(True, False, earlier + (other("approved", left, 9),) + ignored)
    reached = adjudicate(facts(expect, admission_date=day + timedelta(days=200),
                               discharge_date=day + timedelta(days=201)), rules, full)
    assert reached.status == "rejected" and reached.reasons == ("annual_cap_reached",)
    assert reached.amount_fen is None
    assert steps(reached)[-2:] == ["annual_cap", "decision"]


@pytest.mark.parametrize("previous_paid", [True, False])
def test_continuous_bonus(preset, previous_paid):
    _, expect, rules = preset
    quota = expect["drg"][1]
    history = History(True, previous_paid)
    decision = adjudicate(facts(expect), rules, history)
    bonus = expect["bonus"] if previous_paid else Decimal(0)
    assert decision.amount_fen == round_half_up(quota * (1 + bonus))
    if previous_paid and expect["bonus"]:
        assert decision.amount_fen == quota * 11 // 10
        assert "+10%" in decision.trace[steps(decision).index("continuous_bonus")].text


def test_continuous_bonus_rounds_half_up_on_odd_fen():
    expect = PRESETS["anji-2024"]
    rules = replace(preset_rules("anji-2024"), quotas_fen={"FM19": 1234565, "GB29": 500005})
    # 12,345.65 × 1.1 = 13,580.215 yuan = 1,358,021.5 fen -> 1,358,022
    assert adjudicate(facts(expect), rules, History(True, True)).amount_fen == 1358022
    # 5,000.05 × 1.1 = 5,500.055 yuan = 550,005.5 fen -> 550,006
    gb29 = adjudicate(facts(expect, drg_code="GB29"), rules, History(True, True))
    assert gb29.amount_fen == 550006
    assert adjudicate(facts(expect), rules, History(True, False)).amount_fen == 1234565


def test_overlapping_stays_are_duplicates(preset):
    _, expect, rules = preset
    claim = facts(expect)
    a, d = claim.admission_date, claim.discharge_date

    def history(status, start, end):
        return History(True, False, (OtherClaim(status, 100000, start, end, "C00000042"),))

    one_day = timedelta(days=1)
    overlapping = [(a - 3 * one_day, a), (d, d + 3 * one_day), (a + one_day, a + one_day),
                   (a - 10 * one_day, d + 10 * one_day)]
    for start, end in overlapping:
        for status in ("submitted", "in_review", "approved", "paid", "need_documents"):
            decision = adjudicate(claim, rules, history(status, start, end))
            assert decision.reasons == ("duplicate",), (status, start, end)
            assert "C00000042" in decision.trace[steps(decision).index("duplicate")].text
    for start, end in [(a - 3 * one_day, a - one_day), (d + one_day, d + 5 * one_day)]:
        assert adjudicate(claim, rules, history("approved", start, end)).status == "approved"
    # a rejected claim for the same stay does not block a new one
    assert adjudicate(claim, rules, history("rejected", a, d)).status == "approved"


def test_all_rejection_reasons_are_collected(preset):
    _, expect, rules = preset
    other = OtherClaim("submitted", None, expect["end"] + timedelta(days=2),
                       expect["end"] + timedelta(days=4))
    claim = facts(expect, drg_code="ZZ99", out_of_pocket_fen=100,
                  admission_date=expect["end"] + timedelta(days=1),
                  discharge_date=expect["end"] + timedelta(days=3), exclusion="work_injury")
    decision = adjudicate(claim, rules, History(False, True, (other,)))
    assert decision.reasons == ("not_enrolled", "outside_year", "excluded_work_injury",
                                "below_threshold", "unknown_drg", "duplicate")
    assert decision.amount_fen is None
    assert steps(decision) == ["enrolment", "year", "exclusion", "threshold", "drg",
                               "duplicate", "decision"]
    assert len(decision.explanations) == 6


def test_admission_on_the_year_boundaries(preset):
    _, expect, rules = preset
    for day, ok in [(expect["start"], True), (expect["end"], True),
                    (expect["start"] - timedelta(days=1), False),
                    (expect["end"] + timedelta(days=1), False)]:
        decision = adjudicate(facts(expect, admission_date=day,
                                    discharge_date=day + timedelta(days=2)), rules, PAID)
        assert (decision.status == "approved") is ok, day
        if not ok:
            assert decision.reasons == ("outside_year",)


# ---------------------------------------------------------------------------------------------
# The decision as others read it

def test_trace_of_an_approval_has_every_step_with_its_numbers():
    expect = PRESETS["anji-2024"]
    rules = preset_rules("anji-2024")
    earlier = OtherClaim("paid", 1200000, date(2024, 8, 3), date(2024, 8, 5), "C00000001")
    decision = adjudicate(facts(expect, out_of_pocket_fen=845678), rules,
                          History(True, True, (earlier,)))
    assert decision.amount_fen == 704000
    text = {step.step: step.text for step in decision.trace}
    # Anji's bonus lifts the amount after the minimum and the maximum (bonus.continuity subsidy)
    assert steps(decision) == ["enrolment", "year", "exclusion", "threshold", "drg", "duplicate",
                               "quota", "minimum", "maximum", "continuous_bonus", "annual_cap",
                               "decision"]
    assert "8,456.78 元" in text["threshold"] and "3,500.00 元" in text["threshold"]
    assert "FM19" in text["quota"] and "6,400.00 元" in text["quota"]
    assert "7,040.00 元" in text["continuous_bonus"]
    assert "12,000.00 元" in text["annual_cap"] and "88,000.00 元" in text["annual_cap"]
    assert text["decision"] == "核定补助 7,040.00 元"
    assert "2024年8月1日" in text["year"]
    stored = json.loads(json.dumps(decision.to_json()))
    assert stored["amount_fen"] == 704000 and stored["reasons"] == []
    assert stored["trace"][0] == {"step": "enrolment", "text": decision.trace[0].text}


def test_rejection_explains_itself_with_numbers():
    expect = PRESETS["tangqiao-2020"]
    decision = adjudicate(facts(expect, out_of_pocket_fen=250000), preset_rules("tangqiao-2020"),
                          PAID)
    assert decision.explanations == (
        explain("below_threshold", out_of_pocket=250000, threshold=300000, insurance="居民医保"),)
    assert "2,500.00 元" in decision.explanations[0]
    assert "3,000.00 元" in decision.explanations[0]
    assert decision.to_json()["amount_fen"] is None


def test_every_reason_code_has_an_explanation_and_a_remedy():
    assert REASON_CODES == {"not_enrolled", "not_covered_yet", "outside_year", "below_threshold",
                            "uninsured_not_covered", "filed_late", "unknown_drg",
                            "duplicate", "annual_cap_reached", "incomplete_documents",
                            "unreadable_documents", "fraud",
                            *(f"excluded_{kind}" for kind in EXCLUSION_KINDS)}
    for code in REASON_CODES:
        assert REASONS[code].title and REASONS[code].remedy
        assert "{" not in explain(code)  # usable without numbers


def test_explanations_are_explain_with_the_claims_numbers():
    expect = PRESETS["anji-2024"]
    rules = preset_rules("anji-2024")
    admission = expect["start"] - timedelta(days=3)
    earlier = (OtherClaim("paid", 1_234_567, expect["start"] + timedelta(days=9),
                          expect["start"] + timedelta(days=12), "C00000001"),
               OtherClaim("submitted", 400_000, admission, admission, "C00000002"))
    claim = facts(expect, drg_code="ZZ99", out_of_pocket_fen=12_345, admission_date=admission,
                  discharge_date=admission + timedelta(days=4))
    decision = adjudicate(claim, rules, History(False, False, earlier))
    assert decision.reasons == ("not_enrolled", "outside_year", "below_threshold", "unknown_drg",
                                "duplicate")
    values = dict(out_of_pocket=12_345, threshold=expect["thresholds"][0], insurance="居民医保",
                  admission=admission, start=expect["start"], end=expect["end"], drg="ZZ99",
                  cap=expect["cap"], used=1_234_567, other="申请 C00000002 ")
    assert decision.explanations == tuple(explain(code, **values) for code in decision.reasons)

    capped = adjudicate(facts(expect), rules, History(True, False, (replace(
        earlier[0], amount_fen=expect["cap"]),)))
    assert capped.reasons == ("annual_cap_reached",)
    assert capped.explanations == (explain("annual_cap_reached", cap=expect["cap"],
                                           used=expect["cap"]),)
    assert "100,000.00 元" in capped.explanations[0]


def test_positional_templates_read_as_keyword_ones():
    from core.adjudication import _positional
    values = {"a": "1,234.56 元", "b": "{x}", "c": "2024年8月1日"}
    names = ("c", "b", "a")
    for template in ("{a} → {b}", "{{literal}} {c}：{a}{a}", "{b!r:>12}|{c:.4}", "no fields"):
        assert (_positional(template, *names).format(*(values[n] for n in names))
                == template.format(**values))
    with pytest.raises(KeyError):
        _positional("{unknown}", *names)


@pytest.mark.parametrize("fen, text", [
    (0, "0.00"), (5, "0.05"), (100, "1.00"), (99_999, "999.99"), (100_000, "1,000.00"),
    (444_096, "4,440.96"), (100_000_000, "1,000,000.00"), (123_456_789, "1,234,567.89"),
    (-5, "-0.05"), (-123_456_789, "-1,234,567.89"), (10**20, "1,000,000,000,000,000,000.00")])
def test_yuan_text_of_fen(fen, text):
    assert format_yuan(fen, unit=False) == text
    assert format_yuan(fen) == f"{text} 元"


@settings(max_examples=500, deadline=None)
@given(st.integers(-10**15, 10**15))
def test_yuan_text_reads_back_as_the_same_fen(fen):
    text = format_yuan(fen, unit=False)
    assert text == f"{'-' if fen < 0 else ''}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"
    if 0 <= fen < 10**14:  # parse_yuan reads up to 12 digits of yuan
        assert parse_yuan(text) == fen


def test_orm_enum_values_work_as_inputs():
    expect = PRESETS["anji-2024"]
    rules = preset_rules("anji-2024")
    day = expect["start"] + timedelta(days=3)
    history = History(True, False, (
        OtherClaim(ClaimStatus.paid, 9_990_000, day, day, "C00000001"),
        OtherClaim(ClaimStatus.rejected, 100, expect["start"] + timedelta(days=40),
                   expect["start"] + timedelta(days=41), "C00000002")))
    decision = adjudicate(facts(expect, insurance=InsuranceType.employee), rules, history)
    assert decision.status == "approved"
    assert decision.amount_fen == 10_000  # what the paid claim left of the 100,000.00 cap


def test_bad_facts_are_refused():
    expect = PRESETS["anji-2024"]
    rules = preset_rules("anji-2024")
    with pytest.raises(ValueError, match="insurance"):
        adjudicate(facts(expect, insurance="commercial"), rules, PAID)
    with pytest.raises(ValueError, match="exclusion"):
        adjudicate(facts(expect, exclusion="weather"), rules, PAID)
    with pytest.raises(ValueError, match="discharge"):
        adjudicate(facts(expect, discharge_date=date(2024, 9, 1),
                         admission_date=date(2024, 9, 5)), rules, PAID)


# ---------------------------------------------------------------------------------------------
# Properties over arbitrary rules and histories

START, END = date(2024, 1, 1), date(2024, 12, 31)
fen = st.integers(min_value=0, max_value=50_000_000)


@st.composite
def cases(draw):
    minimum = draw(st.integers(0, 100_000))
    maximum = draw(st.integers(max(minimum, 1), 10_000_000))  # the loader requires > 0
    cap = draw(st.integers(maximum, 30_000_000))
    quota = draw(st.integers(1, 20_000_000))
    rules = Rules(START, END, {"resident": draw(st.integers(0, 500_000)), "employee": 0,
                               "uninsured": 0}, {"AA19": quota}, minimum, maximum, cap,
                  draw(st.sampled_from([Decimal(0), Decimal("0.10"), Decimal("0.25")])))
    admission = START + timedelta(days=draw(st.integers(0, 300)))
    claim = ClaimFacts(1, "AA19", draw(fen), admission,
                       admission + timedelta(days=draw(st.integers(0, 30))), "resident")
    others = draw(st.lists(st.builds(
        OtherClaim, st.sampled_from(["approved", "in_payout", "paid", "rejected", "submitted"]),
        st.integers(1, 5_000_000),
        st.dates(START - timedelta(days=30), END),
        st.none(), st.none()), max_size=6))
    # keep the other stays away from this one unless a duplicate is the point
    others = [replace(o, discharge_date=o.admission_date) for o in others
              if not claim.admission_date <= o.admission_date <= claim.discharge_date]
    history = History(True, draw(st.booleans()), tuple(others))
    return claim, rules, history


def used_this_year(history: History) -> int:
    return sum(o.amount_fen for o in history.other_claims
               if o.status in CAP_STATUSES and START <= o.admission_date <= END)


@settings(max_examples=400, deadline=None)
@given(cases())
def test_property_bounds(case):
    claim, rules, history = case
    decision = adjudicate(claim, rules, history)
    remaining = rules.annual_cap_fen - used_this_year(history)
    if claim.out_of_pocket_fen < rules.thresholds_fen["resident"]:
        assert decision.reasons == ("below_threshold",)
        return
    if remaining <= 0 or claim.out_of_pocket_fen == 0:
        assert decision.reasons == ("annual_cap_reached",)
        return
    assert decision.status == "approved"
    amount = decision.amount_fen
    assert 0 < amount <= claim.out_of_pocket_fen
    assert amount <= rules.max_per_claim_fen
    assert amount <= remaining
    ceiling = min(rules.max_per_claim_fen, claim.out_of_pocket_fen, remaining)
    assert amount >= rules.min_per_claim_fen or amount == ceiling
    assert amount >= min(rules.quotas_fen["AA19"], ceiling)


@settings(max_examples=300, deadline=None)
@given(cases(), st.integers(0, 5_000_000))
def test_property_monotone_in_the_quota(case, more):
    claim, rules, history = case
    higher = replace(rules, quotas_fen={"AA19": rules.quotas_fen["AA19"] + more})
    low, high = adjudicate(claim, rules, history), adjudicate(claim, higher, history)
    assert low.status == high.status
    assert (low.amount_fen or 0) <= (high.amount_fen or 0)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_property_previous_year_never_lowers_the_amount(case):
    claim, rules, history = case
    without = adjudicate(claim, rules, replace(history, enrolled_paid_previous_year=False))
    with_bonus = adjudicate(claim, rules, replace(history, enrolled_paid_previous_year=True))
    assert (without.amount_fen or 0) <= (with_bonus.amount_fen or 0)


# ---------------------------------------------------------------------------------------------
# Cover from payment, the uninsured without a threshold, the filing deadline, the scheme's own
# exclusions, the bonus on the amount.

def test_admission_before_the_cover_starts_is_not_covered_yet():
    expect = PRESETS["haimen-2023"]
    rules = preset_rules("haimen-2023")
    admitted = date(2023, 9, 9)
    claim = facts(expect, admission_date=admitted, discharge_date=admitted + timedelta(days=6))
    late_payer = History(True, False, cover_from=date(2023, 12, 5))
    decision = adjudicate(claim, rules, late_payer)
    assert decision.reasons == ("not_covered_yet",) and decision.amount_fen is None
    cover = decision.trace[steps(decision).index("cover")].text
    assert "2023年9月9日" in cover and "2023年12月5日" in cover
    assert "2023年12月5日" in decision.explanations[0]
    on_time = adjudicate(claim, rules, History(True, False, cover_from=date(2023, 9, 9)))
    assert on_time.status == "approved" and "cover" in steps(on_time)
    # not enrolled: the cover is not looked at
    unpaid = adjudicate(claim, rules, History(False, False, cover_from=date(2023, 12, 5)))
    assert unpaid.reasons == ("not_enrolled",)


def test_uninsured_without_a_threshold_are_not_covered():
    expect = PRESETS["tangqiao-2020"]
    decision = adjudicate(facts(expect, insurance="uninsured"), preset_rules("tangqiao-2020"),
                          PAID)
    assert decision.reasons == ("uninsured_not_covered",)
    assert "未参保" in decision.trace[steps(decision).index("threshold")].text


def test_a_claim_filed_after_the_deadline_is_filed_late():
    expect = PRESETS["demo"]
    rules = replace(preset_rules("demo"), file_within_days=30)
    claim = facts(expect)
    last = claim.discharge_date + timedelta(days=30)
    assert adjudicate(replace(claim, filed_on=last), rules, PAID).status == "approved"
    late = adjudicate(replace(claim, filed_on=last + timedelta(days=1)), rules, PAID)
    assert late.reasons == ("filed_late",)
    assert f"{last.year}年{last.month}月{last.day}日" in late.explanations[0]
    # no deadline in the scheme: never late
    assert adjudicate(replace(claim, filed_on=last + timedelta(days=400)), preset_rules("demo"),
                      PAID).status == "approved"


def test_the_scheme_s_own_exclusion_is_rejected_with_its_label():
    expect = PRESETS["tangqiao-2020"]
    decision = adjudicate(facts(expect, exclusion="public_health"),
                          preset_rules("tangqiao-2020"), PAID)
    assert decision.reasons == ("excluded_public_health",)
    assert "应当由公共卫生负担的住院" in decision.trace[steps(decision).index("exclusion")].text
    assert "应当由公共卫生负担的住院" in decision.explanations[0]
    with pytest.raises(ValueError):
        adjudicate(facts(expect, exclusion="public_health"), preset_rules("anji-2024"), PAID)


def test_the_bonus_on_the_amount_comes_after_the_maximum_and_never_passes_out_of_pocket():
    expect = PRESETS["anji-2024"]
    rules = replace(preset_rules("anji-2024"), quotas_fen={"FM19": 6_000_000})
    big = adjudicate(facts(expect), rules, History(True, True))
    assert big.amount_fen == 5_500_000  # 50,000.00 maximum, then +10%
    on_quota = adjudicate(facts(expect), replace(rules, bonus_applies_to="quota"),
                          History(True, True))
    assert on_quota.amount_fen == 5_000_000  # +10% on the quota, then the maximum
    small = adjudicate(facts(expect, out_of_pocket_fen=5_100_000), rules, History(True, True))
    assert small.amount_fen == 5_100_000  # capped at what the member paid
