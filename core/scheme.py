"""Scheme files: one pool's rules for one scheme year (SPEC "Scheme file").

`load_scheme(path)` reads and validates a YAML scheme file and its quota CSV into a frozen `Scheme`
with every amount in integer fen. Any wrong value raises `SchemeError` naming the file, the line
and the key, e.g. `demo.yaml 第12行 contribution.per_person: 应为带引号的金额，例如 "80.00"`.

Amounts are written as quoted strings ("80.00"); a bare YAML number (80.0, 80) is refused, so no
amount ever passes through a float. Rates (continuous_bonus, service_fee.rate) are quoted decimal
strings too ("0.10").

Relative dates: any date of the file (year.start/end, enrolment.opens/closes) may be written
relative to the day the file is loaded, as a quoted string: "today", "today+30d", "today-90d"
(whole days, suffix d). The demo preset uses them so that its enrolment window is open whatever the
date. They are resolved at load time (`load_scheme(path, today=...)`); the stored rules hold plain
dates. Because a relative scheme resolves to other dates on another day, `store_scheme` matches
the scheme year to update by period overlap, not by start date.

Optional keys for what the seed programmes differ in (cover from payment, newborns, the uninsured,
the scheme's own exclusion list, documents per insurance type, the filing deadline, who pays a
subsidized share, the continuity bonus's place, funding rules) are read in their own section
("Second-wave keys"); without them a file means what it meant before.

`store_scheme(session, scheme)` upserts the pool, its villages, the scheme year (rules JSON) and
its quota rows; `scheme_from_rules(row.rules)` gives the typed scheme back.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

import yaml
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from core import scheme_years
from core.audit import audit
from core.defaults import APPEAL_DAYS, OBJECTION_DAYS, REVIEW_WORKING_DAYS
from core.models import DrgGroup, Pool, PoolLevel, Quota, SchemeYear, Village, utcnow
from core.money import format_yuan, parse_yuan
from core.texts import text_of

RULES_FORMAT = 1
POOL_LEVELS = tuple(level.value for level in PoolLevel)
SHARE_SOURCES = ("personal", "collective", "town", "charity", "government", "donor")
INSURANCE_TYPES = ("resident", "employee", "uninsured")
EXCLUSION_KINDS = ("non_disease", "work_injury", "crime", "third_party_liable",
                   "non_designated_hospital", "abroad")
FEE_PERIODS = ("month", "quarter", "year")

_RELATIVE_DATE = re.compile(r"^today(?:([+-])(\d{1,4})d)?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_POOL_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_DRG_CODE = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,15}$")
_TAG = "tag:yaml.org,2002:"


class SchemeError(Exception):
    """A scheme file (or its quota table) is wrong; the message names file, line and key."""


def _t(key: str, /, **values) -> str:
    """A text of templates/scheme_texts.yaml with `values` filled in."""
    return text_of("scheme_texts", key, **values)


def _empty() -> Mapping:
    return MappingProxyType({})


# ---------------------------------------------------------------------------------------------
# The typed scheme. Amounts are fen (fields end in _fen); mappings are read-only.

@dataclass(frozen=True)
class PoolInfo:
    code: str
    name: str
    level: str  # village | town | county


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    def __contains__(self, day: date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True)
class EnrolmentWindow:
    opens: date
    closes: date
    # second-wave keys (see "Cover, newborns, the uninsured…" below)
    newborn_days: int = 0  # 0: no newborn joins outside the window
    newborn_share_fen: int | None = None  # a newborn's personal share; None: the full one
    uninsured: str = "allowed"  # allowed | refused
    # enrolment.village_confirms: a chat sign-up waits for the village's /确认登记 before paying
    village_confirms: bool = False

    def is_open(self, day: date) -> bool:
        return self.opens <= day <= self.closes


@dataclass(frozen=True)
class Contribution:
    per_person_fen: int
    shares_fen: Mapping[str, int]  # source -> fen, sums to per_person_fen; has "personal"
    subsidized: tuple[str, ...] = ()  # categories whose personal share a source pays
    excluded: tuple[str, ...] = ()  # categories that may not join
    payers: Mapping[str, str] = field(default_factory=_empty)  # subsidized category -> source (collective)
    rules: FundingRules | None = None  # contribution.rules, checked at load

    def may_join(self, category: str | None) -> bool:
        return category not in self.excluded

    def payer_of(self, category: str | None) -> str | None:
        """The source paying a subsidized category's personal share (collective unless
        `subsidized: {低保: {payer: town}}` says otherwise); None when not subsidized."""
        if category is None or category not in self.subsidized:
            return None
        return self.payers.get(category, "collective")

    def member_shares(self, category: str | None,
                      personal_fen: int | None = None) -> dict[str, int]:
        """What one member's contribution is made of, source -> fen (zero shares left out).

        For a subsidized category (低保, 特困, …) its payer (the collective by default) pays the
        personal share. `personal_fen` replaces the personal share (a newborn's share).
        Raises ValueError for an excluded category."""
        if not self.may_join(category):
            raise ValueError(f"category {category!r} may not join this scheme")
        shares = dict(self.shares_fen)
        if personal_fen is not None:
            shares["personal"] = personal_fen
        payer = self.payer_of(category)
        if payer is not None:
            shares[payer] = shares.get(payer, 0) + shares.pop("personal")
        return {source: fen for source, fen in shares.items() if fen}


@dataclass(frozen=True)
class ClaimRules:
    thresholds_fen: Mapping[str, int]  # insurance type -> fen; "uninsured" may be absent
    exclusions: tuple[str, ...]  # exclusion codes (built-in kinds or the scheme's own)
    review_working_days: int = REVIEW_WORKING_DAYS
    # second-wave keys
    exclusion_labels: Mapping[str, str] = field(default_factory=_empty)  # code -> label, given ones
    documents: Mapping[str, tuple[str, ...]] = field(default_factory=_empty)  # insurance -> kinds
    file_within_days: int | None = None  # days from discharge to file a claim; None: no limit

    def label_of(self, code: str) -> str:
        """An exclusion's label: the scheme's own, else the built-in kind's name."""
        return self.exclusion_labels.get(code) or _builtin_exclusion_names().get(code, code)

    def documents_for(self, insurance: str) -> tuple[str, ...]:
        """The document kinds a claim of this insurance type needs: the scheme's, else the
        defaults (someone without basic insurance has no 结算单: a 发票 instead)."""
        return self.documents.get(insurance) or DEFAULT_DOCUMENTS_FOR.get(insurance,
                                                                          DEFAULT_DOCUMENTS)
    # appeals and the village's part (claims.appeal_days, claims.uninsured_via_village)
    appeal_days: int = APPEAL_DAYS  # days after a rejection the household may send 复核
    uninsured_via_village: bool = False  # an uninsured member's claim waits for /确认申请


@dataclass(frozen=True)
class Benefit:
    quotas_file: str
    quotas_fen: Mapping[str, int]  # DRG code -> fen, ADRG/MDC/default rows expanded
    min_per_claim_fen: int
    max_per_claim_fen: int
    annual_cap_fen: int
    continuous_bonus: Decimal
    bonus_applies_to: str = "quota"  # quota | subsidy (bonus.continuity.applies_to)
    # quota table: groups left without a quota by an exclusion row (code -> reason), and the
    # groups whose quota came from an ADRG, MDC or default row (see read_quotas)
    quota_excluded: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    quota_expanded: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PayoutRules:
    day: int


@dataclass(frozen=True)
class ServiceFee:
    rate: Decimal
    every: str  # month | quarter | year


@dataclass(frozen=True)
class Disclosure:
    day: int
    objection_days: int = OBJECTION_DAYS
    show_illness: bool = True  # false: the group list leaves out the DRG group (small villages)


# ---------------------------------------------------------------------------------------------
# Cover, newborns, the uninsured, exclusion lists, documents, deadlines, payers, the continuity
# bonus and funding rules (the keys every seed programme needs; all optional, defaults keep an
# older file meaning what it meant).

COVER_FROM = ("year_start", "payment")
UNINSURED_POLICIES = ("allowed", "refused")
BONUS_APPLIES_TO = ("quota", "subsidy")
DOCUMENT_KINDS = ("discharge_record", "itemized_bill", "settlement_sheet", "invoice")
DEFAULT_DOCUMENTS = ("discharge_record", "itemized_bill", "settlement_sheet")
DEFAULT_DOCUMENTS_FOR = {"uninsured": ("discharge_record", "itemized_bill", "invoice")}
_EXCLUSION_CODE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _builtin_exclusion_names() -> Mapping[str, str]:
    """The built-in exclusion kinds' names (templates/messages/trace.yaml), read once."""
    global _EXCLUSION_NAMES
    if _EXCLUSION_NAMES is None:
        from core.config import TEMPLATES_DIR

        with open(TEMPLATES_DIR / "messages" / "trace.yaml", encoding="utf-8") as fh:
            _EXCLUSION_NAMES = MappingProxyType(dict(yaml.safe_load(fh)["exclusions"]))
    return _EXCLUSION_NAMES


_EXCLUSION_NAMES: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Cover:
    """When a member's cover starts: the year's first day, or the day the payment is recorded
    plus `waiting_days` (never before the year starts)."""
    start_from: str = "year_start"  # year_start | payment
    waiting_days: int = 0

    def starts(self, year_start: date, paid_on: date | None) -> date | None:
        """The first day of cover; None while unpaid under `from: payment`."""
        if self.start_from == "year_start":
            return year_start
        if paid_on is None:
            return None
        return max(year_start, paid_on + timedelta(days=self.waiting_days))


@dataclass(frozen=True)
class FundingRules:
    """contribution.rules: the seed's funding rules, checked when the file is loaded."""
    min_per_person_fen: int | None = None
    personal_min_fen: int | None = None
    personal_max_fen: int | None = None
    personal_min_ratio: Decimal | None = None

    def to_json(self) -> dict:
        return {"min_per_person_fen": self.min_per_person_fen,
                "personal_min_fen": self.personal_min_fen,
                "personal_max_fen": self.personal_max_fen,
                "personal_min_ratio": (str(self.personal_min_ratio)
                                       if self.personal_min_ratio is not None else None)}

    @classmethod
    def from_json(cls, data: Mapping) -> "FundingRules":
        ratio = data.get("personal_min_ratio")
        return cls(data.get("min_per_person_fen"), data.get("personal_min_fen"),
                   data.get("personal_max_fen"), Decimal(ratio) if ratio is not None else None)

    def broken(self, per_person_fen: int, personal_fen: int) -> list[tuple[str, str]]:
        """The rules a contribution breaks: [(key, Chinese text)]."""
        out = []
        if self.min_per_person_fen is not None and per_person_fen < self.min_per_person_fen:
            out.append(("per_person", _t("broken.1", per_person=format_yuan(per_person_fen),
                                         minimum=format_yuan(self.min_per_person_fen))))
        if self.personal_min_fen is not None and personal_fen < self.personal_min_fen:
            out.append(("shares.personal", _t("broken.2", personal=format_yuan(personal_fen),
                                              minimum=format_yuan(self.personal_min_fen))))
        if self.personal_max_fen is not None and personal_fen > self.personal_max_fen:
            out.append(("shares.personal", _t("broken.3", personal=format_yuan(personal_fen),
                                              maximum=format_yuan(self.personal_max_fen))))
        if (self.personal_min_ratio is not None
                and Decimal(personal_fen) < self.personal_min_ratio * per_person_fen):
            percent = f"{(self.personal_min_ratio * 100).normalize():f}%"
            out.append(("shares.personal", _t("broken.4", personal=format_yuan(personal_fen),
                                              per_person=format_yuan(per_person_fen), percent=percent)))
        return out


@dataclass(frozen=True)
class Scheme:
    pool: PoolInfo
    villages: tuple[str, ...]  # "town/village"
    year: Period
    enrolment: EnrolmentWindow
    contribution: Contribution
    claims: ClaimRules
    benefit: Benefit
    payout: PayoutRules
    service_fee: ServiceFee
    disclosure: Disclosure
    source: str | None = None
    cover: Cover = field(default_factory=Cover)  # when a member's cover starts

    def to_rules(self) -> dict:
        """A plain JSON-able dict (money as fen ints, dates ISO, rates as strings)."""
        c, cl, b = self.contribution, self.claims, self.benefit
        return {
            "format": RULES_FORMAT,
            "source": self.source,
            "pool": {"code": self.pool.code, "name": self.pool.name, "level": self.pool.level},
            "villages": list(self.villages),
            "year": {"start": self.year.start.isoformat(), "end": self.year.end.isoformat()},
            "enrolment": {"opens": self.enrolment.opens.isoformat(),
                          "closes": self.enrolment.closes.isoformat(),
                          "newborn_days": self.enrolment.newborn_days,
                          "newborn_share_fen": self.enrolment.newborn_share_fen,
                          "uninsured": self.enrolment.uninsured,
                          "village_confirms": self.enrolment.village_confirms},
            "contribution": {"per_person_fen": c.per_person_fen, "shares_fen": dict(c.shares_fen),
                             "subsidized": list(c.subsidized), "excluded": list(c.excluded),
                             "payers": dict(c.payers),
                             "rules": c.rules.to_json() if c.rules else None},
            "claims": {"thresholds_fen": dict(cl.thresholds_fen), "exclusions": list(cl.exclusions),
                       "review_working_days": cl.review_working_days,
                       "exclusion_labels": dict(cl.exclusion_labels),
                       "documents": {k: list(v) for k, v in cl.documents.items()},
                       "file_within_days": cl.file_within_days,
                       "appeal_days": cl.appeal_days,
                       "uninsured_via_village": cl.uninsured_via_village},
            "benefit": {"quotas_file": b.quotas_file, "quotas_fen": dict(b.quotas_fen),
                        "min_per_claim_fen": b.min_per_claim_fen,
                        "max_per_claim_fen": b.max_per_claim_fen,
                        "annual_cap_fen": b.annual_cap_fen,
                        "continuous_bonus": str(b.continuous_bonus),
                        "bonus_applies_to": b.bonus_applies_to,
                        "quota_excluded": dict(b.quota_excluded),
                        "quota_expanded": sorted(b.quota_expanded)},
            "cover": {"from": self.cover.start_from, "waiting_days": self.cover.waiting_days},
            "payout": {"day": self.payout.day},
            "service_fee": {"rate": str(self.service_fee.rate), "every": self.service_fee.every},
            "disclosure": {"day": self.disclosure.day,
                           "objection_days": self.disclosure.objection_days,
                           "show_illness": self.disclosure.show_illness},
        }


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


def scheme_from_rules(rules: Mapping) -> Scheme:
    """The typed scheme back from `Scheme.to_rules()` (e.g. `SchemeYear.rules`)."""
    if rules.get("format") != RULES_FORMAT:
        raise SchemeError(f"rules: unknown format {rules.get('format')!r}; reload the scheme file")
    c, cl, b = rules["contribution"], rules["claims"], rules["benefit"]
    return Scheme(
        pool=PoolInfo(**rules["pool"]),
        villages=tuple(rules["villages"]),
        year=Period(date.fromisoformat(rules["year"]["start"]),
                    date.fromisoformat(rules["year"]["end"])),
        enrolment=EnrolmentWindow(date.fromisoformat(rules["enrolment"]["opens"]),
                                  date.fromisoformat(rules["enrolment"]["closes"]),
                                  rules["enrolment"].get("newborn_days", 0),
                                  rules["enrolment"].get("newborn_share_fen"),
                                  rules["enrolment"].get("uninsured", "allowed"),
                                  rules["enrolment"].get("village_confirms", False)),
        contribution=Contribution(c["per_person_fen"], _frozen(c["shares_fen"]),
                                  tuple(c["subsidized"]), tuple(c["excluded"]),
                                  _frozen(c.get("payers") or {}),
                                  FundingRules.from_json(c["rules"]) if c.get("rules") else None),
        claims=ClaimRules(_frozen(cl["thresholds_fen"]), tuple(cl["exclusions"]),
                          cl["review_working_days"], _frozen(cl.get("exclusion_labels") or {}),
                          _frozen({k: tuple(v) for k, v in (cl.get("documents") or {}).items()}),
                          cl.get("file_within_days"),
                          appeal_days=cl.get("appeal_days", APPEAL_DAYS),
                          uninsured_via_village=cl.get("uninsured_via_village", False)),
        benefit=Benefit(b["quotas_file"], _frozen(b["quotas_fen"]), b["min_per_claim_fen"],
                        b["max_per_claim_fen"], b["annual_cap_fen"],
                        Decimal(b["continuous_bonus"]), b.get("bonus_applies_to", "quota"),
                        quota_excluded=_frozen(b.get("quota_excluded", {})),
                        quota_expanded=frozenset(b.get("quota_expanded", ()))),
        payout=PayoutRules(rules["payout"]["day"]),
        service_fee=ServiceFee(Decimal(rules["service_fee"]["rate"]),
                               rules["service_fee"]["every"]),
        disclosure=Disclosure(rules["disclosure"]["day"], rules["disclosure"]["objection_days"],
                              rules["disclosure"].get("show_illness", True)),
        source=rules.get("source"),
        cover=Cover(rules.get("cover", {}).get("from", "year_start"),
                    rules.get("cover", {}).get("waiting_days", 0)),
    )


# ---------------------------------------------------------------------------------------------
# Reading YAML with line numbers: every value is checked on its node, so errors carry its line.

class _Node:
    def __init__(self, node: yaml.Node, path: str, file: str):
        self.node, self.path, self.file = node, path, file

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def fail(self, message: str, line: int | None = None) -> SchemeError:
        where = f" {self.path}" if self.path else ""
        return SchemeError(_t("fail.1", file=self.file, line=line or self.line, where=where,
                              message=message))

    def _child_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def mapping(self, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, "_Node"]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail(_t("mapping.1"))
        required, allowed = tuple(required), set(required) | set(optional)
        children: dict[str, _Node] = {}
        for key_node, value_node in self.node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            key_line = key_node.start_mark.line + 1
            if key not in allowed:
                raise SchemeError(_t("mapping.2", file=self.file, key_line=key_line,
                                     key_path=self._child_path(str(key)),
                                     items=', '.join(sorted(allowed))))
            if key in children:
                raise SchemeError(_t("mapping.3", file=self.file, key_line=key_line,
                                     key_path=self._child_path(key)))
            children[key] = _Node(value_node, self._child_path(key), self.file)
        for key in required:
            if key not in children:
                raise self.fail(_t("mapping.4", key=key))
        return children

    def sequence(self) -> list["_Node"]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail(_t("sequence.1"))
        return [_Node(item, f"{self.path}[{i}]", self.file)
                for i, item in enumerate(self.node.value)]

    def _scalar(self, what: str) -> yaml.ScalarNode:
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.fail(_t("scalar.1", what=what))
        return self.node

    def text(self, what: str | None = None) -> str:
        what = what or _t("text.1")
        node = self._scalar(what)
        if node.tag != _TAG + "str" or not node.value.strip():
            raise self.fail(_t("text.2", what=what, value=node.value))
        return node.value.strip()

    def choice(self, options: Iterable[str]) -> str:
        options = tuple(options)
        value = self._scalar(_t("choice.1") + " | ".join(options)).value
        if value not in options:
            raise self.fail(_t("choice.2", items=' | '.join(options), value=value))
        return value

    def money(self, positive: bool = False) -> int:
        node = self._scalar(_t("money.1"))
        if node.tag != _TAG + "str":
            raise self.fail(_t("money.2", value=node.value))
        try:
            fen = parse_yuan(node.value)
        except ValueError:
            raise self.fail(_t("money.3", value=node.value))
        if positive and fen <= 0:
            raise self.fail(_t("money.4"))
        return fen

    def integer(self, low: int, high: int | None = None) -> int:
        node = self._scalar(_t("integer.1"))
        if node.tag != _TAG + "int":
            raise self.fail(_t("integer.2", value=node.value))
        value = int(node.value)
        if value < low or (high is not None and value > high):
            bounds = f"{low}–{high}" if high is not None else _t("integer.3", low=low)
            raise self.fail(_t("integer.4", bounds=bounds, value=value))
        return value

    def boolean(self) -> bool:
        node = self._scalar(_t("boolean.1"))
        if node.tag != _TAG + "bool":
            raise self.fail(_t("boolean.2", value=node.value))
        return node.value.strip().lower() in ("true", "yes", "on")

    def rate(self, low: Decimal, high: Decimal, example: str) -> Decimal:
        node = self._scalar(_t("rate.1", example=example))
        if node.tag != _TAG + "str":
            raise self.fail(_t("rate.2", example=example, value=node.value))
        try:
            value = Decimal(node.value.strip())
        except InvalidOperation:
            raise self.fail(_t("rate.3", example=example, value=node.value))
        if not value.is_finite() or not low <= value <= high:
            raise self.fail(_t("rate.4", low=low, high=high, value=node.value))
        return value

    def date(self, today: date) -> date:
        node = self._scalar(_t("date.1"))
        value = node.value.strip()
        if node.tag in (_TAG + "timestamp", _TAG + "str") and _ISO_DATE.match(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise self.fail(_t("date.2", value=value))
        m = _RELATIVE_DATE.match(value) if node.tag == _TAG + "str" else None
        if m:
            days = int(m.group(2) or 0)
            return today + timedelta(days=-days if m.group(1) == "-" else days)
        raise self.fail(_t("date.3", value=value))


# ---------------------------------------------------------------------------------------------
# Loading and validating.

def _local_today() -> date:
    from core.config import load_config

    return datetime.now(load_config(validate=False).tz).date()


def load_scheme(path: str | Path, today: date | None = None) -> Scheme:
    """Read and validate a scheme file and its quota table. `today` resolves relative dates
    (default: today in the configured time zone)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SchemeError(_t("load_scheme.1", path=path))
    except UnicodeDecodeError:
        raise SchemeError(_t("load_scheme.2", name=path.name))
    return parse_scheme(text, path.name, base_dir=path.parent,
                        today=today or _local_today(), source=str(path))


def parse_scheme(text: str, file: str, base_dir: Path, today: date,
                 source: str | None = None) -> Scheme:
    """Validate scheme YAML text: `file` names it in errors, quota files are found in base_dir."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        raise SchemeError(_t("parse_scheme.1", file=file, line=line,
                             detail=getattr(exc, 'problem', None) or exc))
    if root is None:
        raise SchemeError(_t("parse_scheme.2", file=file))
    top = _Node(root, "", file).mapping(
        ("pool", "villages", "year", "enrolment", "contribution", "claims", "benefit", "payout",
         "service_fee", "disclosure"), ("cover", "bonus"))

    p = top["pool"].mapping(("code", "name", "level"))
    code = p["code"].text(_t("parse_scheme.3"))
    if not _POOL_CODE.match(code):
        raise p["code"].fail(_t("parse_scheme.4", code=code))
    pool = PoolInfo(code, _limited(p["name"], 64), p["level"].choice(POOL_LEVELS))

    villages = _villages(top["villages"], pool)

    y = top["year"].mapping(("start", "end"))
    year = Period(y["start"].date(today), y["end"].date(today))
    if year.start >= year.end:
        raise y["end"].fail(_t("parse_scheme.5", end=year.end, start=year.start))
    if (year.end - year.start).days > 366:
        raise y["end"].fail(_t("parse_scheme.6", start=year.start, end=year.end))

    e = top["enrolment"].mapping(("opens", "closes"), ENROLMENT_OPTIONAL)
    enrolment = EnrolmentWindow(
        e["opens"].date(today), e["closes"].date(today), *_enrolment_extras(e),
        village_confirms=e["village_confirms"].boolean() if "village_confirms" in e else False)
    if enrolment.opens > enrolment.closes:
        raise e["closes"].fail(_t("parse_scheme.7", closes=enrolment.closes, opens=enrolment.opens))
    if enrolment.closes > year.end:
        raise e["closes"].fail(_t("parse_scheme.8", closes=enrolment.closes, end=year.end))

    contribution = _contribution(top["contribution"])

    c = top["claims"].mapping(("thresholds", "exclusions"),
                              ("review_working_days", *CLAIMS_OPTIONAL))
    t = c["thresholds"].mapping(("resident", "employee"), ("uninsured",))
    thresholds = {kind: t[kind].money() for kind in INSURANCE_TYPES if kind in t}
    exclusions, labels = _exclusions(c["exclusions"])
    review_days = (c["review_working_days"].integer(1, 30) if "review_working_days" in c
                   else REVIEW_WORKING_DAYS)
    claims = ClaimRules(
        _frozen(thresholds), exclusions, review_days, _frozen(labels), *_claims_extras(c),
        appeal_days=c["appeal_days"].integer(1, 365) if "appeal_days" in c else APPEAL_DAYS,
        uninsured_via_village=(c["uninsured_via_village"].boolean()
                               if "uninsured_via_village" in c else False))

    benefit = _benefit(top["benefit"], base_dir, top.get("bonus"))
    cover = _cover(top["cover"]) if "cover" in top else Cover()

    payout = PayoutRules(top["payout"].mapping(("day",))["day"].integer(1, 28))
    f = top["service_fee"].mapping(("rate", "every"))
    fee = ServiceFee(f["rate"].rate(Decimal(0), Decimal("0.5"), "0.025"),
                     f["every"].choice(FEE_PERIODS))
    d = top["disclosure"].mapping(("day",), ("objection_days", "show_illness"))
    disclosure = Disclosure(d["day"].integer(1, 28),
                            d["objection_days"].integer(0) if "objection_days" in d
                            else OBJECTION_DAYS,
                            d["show_illness"].boolean() if "show_illness" in d else True)

    return Scheme(pool, villages, year, enrolment, contribution, claims, benefit, payout, fee,
                  disclosure, source, cover)


def _limited(node: _Node, length: int) -> str:
    value = node.text()
    if len(value) > length:
        raise node.fail(_t("limited.1", length=length))
    return value


def _villages(node: _Node, pool: PoolInfo) -> tuple[str, ...]:
    items = node.sequence()
    if not items:
        raise node.fail(_t("villages.1"))
    villages: list[str] = []
    for item in items:
        value = item.text(_t("villages.2"))
        parts = value.split("/")
        if len(parts) != 2 or not all(part.strip() for part in parts):
            raise item.fail(_t("villages.3", value=value))
        town, name = (part.strip() for part in parts)
        if len(town) > 64 or len(name) > 64:
            raise item.fail(_t("villages.4"))
        full = f"{town}/{name}"
        if full in villages:
            raise item.fail(_t("villages.5", full=full))
        villages.append(full)
    if pool.level == "village" and len(villages) != 1:
        raise node.fail(_t("villages.6", count=len(villages)))
    return tuple(villages)


def _names(node: _Node, what: str, known: Iterable[str] | None = None) -> tuple[str, ...]:
    names: list[str] = []
    for item in node.sequence():
        value = item.text(what)
        if known is not None and value not in known:
            raise item.fail(_t("names.1", what=what, value=value, items=', '.join(known)))
        if value in names:
            raise item.fail(_t("names.2", what=what, value=value))
        names.append(value)
    return tuple(names)


def _contribution(node: _Node) -> Contribution:
    c = node.mapping(("per_person", "shares"), ("subsidized", "excluded", "rules"))
    per_person = c["per_person"].money(positive=True)
    s = c["shares"].mapping(("personal",), SHARE_SOURCES)
    shares = {source: s[source].money() for source in SHARE_SOURCES if source in s}
    if sum(shares.values()) != per_person:
        parts = " + ".join(format_yuan(fen, unit=False) for fen in shares.values())
        raise c["shares"].fail(_t("contribution.1", parts=parts,
                                  total=format_yuan(sum(shares.values())),
                                  per_person=format_yuan(per_person)))
    subsidized, payers = _subsidized(c["subsidized"]) if "subsidized" in c else ((), {})
    excluded = _names(c["excluded"], _t("contribution.2")) if "excluded" in c else ()
    both = set(subsidized) & set(excluded)
    if both:
        raise c["excluded"].fail(_t("contribution.3", items=', '.join(sorted(both))))
    rules = _funding_rules(c["rules"]) if "rules" in c else None
    if rules is not None:
        for key, text in rules.broken(per_person, shares["personal"]):
            where = c["per_person"] if key == "per_person" else s["personal"]
            raise where.fail(_t("contribution.4", text=text, line=c['rules'].line))
    return Contribution(per_person, _frozen(shares), subsidized, excluded, _frozen(payers), rules)


def _benefit(node: _Node, base_dir: Path, bonus_node: _Node | None = None) -> Benefit:
    b = node.mapping(("quotas", "min_per_claim", "max_per_claim", "annual_cap"),
                     ("continuous_bonus",))
    quotas_file = b["quotas"].text(_t("benefit.1"))
    table = read_quota_table(base_dir / quotas_file, b["quotas"])
    minimum = b["min_per_claim"].money()
    maximum = b["max_per_claim"].money(positive=True)
    cap = b["annual_cap"].money(positive=True)
    if minimum > maximum:
        raise b["max_per_claim"].fail(_t("benefit.2", maximum=format_yuan(maximum),
                                         minimum=format_yuan(minimum)))
    if maximum > cap:
        raise b["annual_cap"].fail(_t("benefit.3", cap=format_yuan(cap),
                                      maximum=format_yuan(maximum)))
    bonus, applies_to = Decimal(0), "quota"
    if "continuous_bonus" in b:
        if bonus_node is not None:
            raise b["continuous_bonus"].fail(
                _t("benefit.4", line=bonus_node.line))
        bonus = b["continuous_bonus"].rate(Decimal(0), Decimal(1), "0.10")
    elif bonus_node is not None:
        bonus, applies_to = _continuity(bonus_node)
    return Benefit(quotas_file, _frozen(table.quotas_fen), minimum, maximum, cap, bonus, applies_to,
                   quota_excluded=_frozen(table.excluded),
                   quota_expanded=frozenset(table.expanded))


QUOTA_DEFAULT = "*"  # the quota table's row for every group no other row names
QUOTA_NONE = ("-", "不补助")  # a quota cell that excludes the row's groups (a reason is required)
QUOTA_HEADERS = (["drg_code", "quota"], ["drg_code", "quota", "note"])


@dataclass(frozen=True)
class QuotaTable:
    """A quota table expanded over the catalogue: `quotas_fen` (group -> fen) for every group
    with a quota, `excluded` (group -> reason) for every group an exclusion row leaves out,
    `expanded` the groups whose quota or exclusion came from an ADRG, MDC or default row."""
    quotas_fen: dict[str, int]
    excluded: dict[str, str]
    expanded: frozenset[str]


def national_groups() -> tuple[str, ...]:
    """The CHS-DRG 1.1 group codes (628) packaged with huzhu: what ADRG, MDC and default rows
    of a quota table expand over."""
    return _national_groups()


@lru_cache(maxsize=1)
def _national_groups() -> tuple[str, ...]:
    from core.catalog import CHS_DRG_11, parse_catalog

    return tuple(code for code, _ in parse_catalog(CHS_DRG_11))


def quota_level(code: str) -> str:
    """What a quota table's code names: "default" (*), "mdc" (one letter, e.g. F), "adrg"
    (three characters, e.g. FM1) or "group" (e.g. FM19)."""
    if code == QUOTA_DEFAULT:
        return "default"
    if len(code) == 1:
        return "mdc"
    if len(code) == 3:
        return "adrg"
    return "group"


# Second-wave keys: their readers, grouped (see "Cover, newborns, …" above).

ENROLMENT_OPTIONAL = ("newborn_days", "newborn_share", "uninsured", "village_confirms")
CLAIMS_OPTIONAL = ("documents", "file_within_days", "appeal_days", "uninsured_via_village")


def _enrolment_extras(e: dict[str, _Node]) -> tuple[int, int | None, str]:
    """enrolment.newborn_days (0–366), newborn_share (an amount), uninsured (allowed|refused)."""
    days = e["newborn_days"].integer(0, 366) if "newborn_days" in e else 0
    share = e["newborn_share"].money() if "newborn_share" in e else None
    if share is not None and not days:
        raise e["newborn_share"].fail(_t("enrolment_extras.1"))
    uninsured = e["uninsured"].choice(UNINSURED_POLICIES) if "uninsured" in e else "allowed"
    return days, share, uninsured


def _claims_extras(c: dict[str, _Node]) -> tuple[Mapping[str, tuple[str, ...]], int | None]:
    """claims.documents ({insurance type: [kinds]}) and claims.file_within_days."""
    documents: dict[str, tuple[str, ...]] = {}
    if "documents" in c:
        d = c["documents"].mapping((), INSURANCE_TYPES)
        for kind, node in d.items():
            names = _names(node, _t("claims_extras.1"), DOCUMENT_KINDS)
            if not names:
                raise node.fail(_t("claims_extras.2", items=', '.join(DOCUMENT_KINDS)))
            documents[kind] = names
    days = c["file_within_days"].integer(1, 3660) if "file_within_days" in c else None
    return _frozen(documents), days


def _exclusions(node: _Node) -> tuple[tuple[str, ...], dict[str, str]]:
    """claims.exclusions: the built-in kinds by name (the short form), or the scheme's own list
    [{code, label}] — any lower-case code, its label what reviewers and households read."""
    codes: list[str] = []
    labels: dict[str, str] = {}
    for item in node.sequence():
        if isinstance(item.node, yaml.MappingNode):
            m = item.mapping(("code", "label"))
            code = m["code"].text(_t("exclusions.1"))
            if not _EXCLUSION_CODE.match(code):
                raise m["code"].fail(_t("exclusions.2", code=code))
            labels[code] = _limited(m["label"], 40)
        else:
            code = item.text(_t("exclusions.3"))
            if code not in EXCLUSION_KINDS:
                raise item.fail(_t("exclusions.4", code=code, items=', '.join(EXCLUSION_KINDS)))
        if code in codes:
            raise item.fail(_t("exclusions.5", code=code))
        codes.append(code)
    return tuple(codes), labels


def _cover(node: _Node) -> Cover:
    c = node.mapping(("from",), ("waiting_days",))
    start_from = c["from"].choice(COVER_FROM)
    waiting = c["waiting_days"].integer(0, 366) if "waiting_days" in c else 0
    if waiting and start_from != "payment":
        raise c["waiting_days"].fail(_t("cover.1"))
    return Cover(start_from, waiting)


def _subsidized(node: _Node) -> tuple[tuple[str, ...], dict[str, str]]:
    """contribution.subsidized: a list of categories (the collective pays their personal share)
    or {category: {payer: source}}."""
    if not isinstance(node.node, yaml.MappingNode):
        return _names(node, _t("subsidized.1")), {}
    names: list[str] = []
    payers: dict[str, str] = {}
    for key_node, value_node in node.node.value:
        name = str(key_node.value).strip()
        child = _Node(value_node, f"{node.path}.{name}", node.file)
        if not name:
            raise child.fail(_t("subsidized.2"))
        payer = child.mapping(("payer",))["payer"].choice(
            [source for source in SHARE_SOURCES if source != "personal"])
        names.append(name)
        payers[name] = payer
    return tuple(names), payers


def _funding_rules(node: _Node) -> FundingRules:
    r = node.mapping((), ("min_per_person", "personal_min", "personal_max",
                          "personal_min_ratio"))
    rules = FundingRules(
        r["min_per_person"].money(positive=True) if "min_per_person" in r else None,
        r["personal_min"].money() if "personal_min" in r else None,
        r["personal_max"].money() if "personal_max" in r else None,
        r["personal_min_ratio"].rate(Decimal(0), Decimal(1), "0.50")
        if "personal_min_ratio" in r else None)
    if (rules.personal_min_fen is not None and rules.personal_max_fen is not None
            and rules.personal_min_fen > rules.personal_max_fen):
        raise r["personal_max"].fail(_t("funding_rules.1"))
    return rules


def _continuity(node: _Node) -> tuple[Decimal, str]:
    """bonus: {continuity: {rate, applies_to: quota|subsidy}}."""
    c = node.mapping(("continuity",))["continuity"].mapping(("rate",), ("applies_to",))
    rate = c["rate"].rate(Decimal(0), Decimal(1), "0.10")
    applies_to = c["applies_to"].choice(BONUS_APPLIES_TO) if "applies_to" in c else "quota"
    return rate, applies_to


def read_quotas(path: Path, node: _Node | None = None) -> dict[str, int]:
    """The quotas (group -> fen) of a quota table, expanded (see read_quota_table)."""
    return read_quota_table(path, node).quotas_fen


def read_quota_table(path: Path, node: _Node | None = None,
                     catalog: Iterable[str] | None = None) -> QuotaTable:
    """A quota table: CSV `drg_code,quota` (optionally a third column `note`), quotas in yuan;
    `#` lines are comments. A row's code is a group (FM19), an ADRG (its first three
    characters, FM1: every group of it), an MDC (its first letter, F) or `*` (every group);
    the most specific row applies: group, then ADRG, then MDC, then `*`. A quota of `-` (or
    不补助) excludes the row's groups, with the reason in `note` (required). Groups no row
    reaches have no quota (a claim in one is `unknown_drg`). ADRG, MDC and `*` rows expand over
    `catalog` (default: the national CHS-DRG 1.1 list). `node` is the scheme's benefit.quotas
    entry, named in errors."""
    where = (_t("read_quota_table.1", file=node.file, line=node.line, path=node.path)) if node else ""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        if node:
            raise node.fail(_t("read_quota_table.2", path=path))
        raise SchemeError(_t("read_quota_table.3", path=path))
    except UnicodeDecodeError:
        raise SchemeError(_t("read_quota_table.4", name=path.name, where=where))

    def fail(line: int, message: str) -> SchemeError:
        return SchemeError(_t("fail.2", name=path.name, line=line, where=where, message=message))

    catalog = tuple(catalog) if catalog is not None else national_groups()
    rows: dict[str, tuple[int | None, str, int]] = {}  # code -> (fen or None, note, line)
    header: list[str] | None = None
    for number, raw in enumerate(io.StringIO(text, newline=""), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        row = [cell.strip() for cell in next(csv.reader([line]))]
        if header is None:
            if row not in QUOTA_HEADERS:
                raise fail(number, _t("read_quota_table.5", line=line))
            header = row
            continue
        if len(row) != len(header):
            example = (_t("read_quota_table.6") if len(header) == 2 else
                       _t("read_quota_table.7"))
            raise fail(number, _t("read_quota_table.8", example=example, line=line))
        code, amount = row[0], row[1]
        note = row[2] if len(row) > 2 else ""
        if code != QUOTA_DEFAULT and not _DRG_CODE.match(code):
            raise fail(number, _t("read_quota_table.9", code=code))
        if code in rows:
            raise fail(number, _t("read_quota_table.10", code=code, value=rows[code][2]))
        if amount in QUOTA_NONE:
            if not note:
                raise fail(number, _t("read_quota_table.11", code=code))
            rows[code] = (None, note, number)
            continue
        try:
            fen = parse_yuan(amount)
        except ValueError:
            raise fail(number, _t("read_quota_table.12", amount=amount))
        if fen <= 0:
            raise fail(number, _t("read_quota_table.13", code=code))
        rows[code] = (fen, note, number)
    if header is None:
        raise fail(1, _t("read_quota_table.14"))
    if not rows:
        raise fail(1, _t("read_quota_table.15"))

    by_level: dict[str, dict[str, tuple[int | None, str, int]]] = {
        "group": {}, "adrg": {}, "mdc": {}, "default": {}}
    for code, value in rows.items():
        by_level[quota_level(code)][code] = value
    for level, width, what in (("adrg", 3, "ADRG"), ("mdc", 1, "MDC")):
        for code, (_, _, number) in by_level[level].items():
            if not any(group[:width] == code for group in catalog):
                raise fail(number, _t("read_quota_table.16", what=what, code=code, width=width,
                                      example='FM1' if width == 3 else 'F'))
    quotas: dict[str, int] = {}
    excluded: dict[str, str] = {}
    for code, (fen, note, _) in by_level["group"].items():
        if fen is None:
            excluded[code] = note
        else:
            quotas[code] = fen
    expanded: set[str] = set()
    default = by_level["default"].get(QUOTA_DEFAULT)
    for group in catalog:
        if group in rows:
            continue
        value = (by_level["adrg"].get(group[:3]) or by_level["mdc"].get(group[:1]) or default)
        if value is None:
            continue
        expanded.add(group)
        if value[0] is None:
            excluded[group] = value[1]
        else:
            quotas[group] = value[0]
    return QuotaTable(quotas, excluded, frozenset(expanded))


# ---------------------------------------------------------------------------------------------
# The database: pools, villages, scheme years and quotas.

def store_scheme(session: Session, scheme: Scheme, catalog_codes: Iterable[str] | None = None,
                 actor: str = "cli") -> SchemeYear:
    """Upsert the scheme's pool, villages, scheme year and quota rows; audit the change.

    The scheme year to update is the pool's year overlapping the scheme's period (so reloading a
    file, even a relative-dated one on another day, updates instead of duplicating); a period
    overlapping two stored years is refused. Every DRG code of the quota table must be in the
    catalogue: `catalog_codes` if given, else the drg_group table (quota rows reference it).
    """
    known = (set(catalog_codes) if catalog_codes is not None
             else set(session.scalars(select(DrgGroup.code))))
    b = scheme.benefit
    missing = sorted(set(b.quotas_fen) - known - b.quota_expanded)
    if missing:
        source = Path(scheme.source).name if scheme.source else "scheme"
        raise SchemeError(_t("store_scheme.1", source=source,
                             quotas_file=scheme.benefit.quotas_file, items=', '.join(missing)))

    # groups an ADRG, MDC or default row reached come from the national list: a catalogue
    # that lacks them (a county's own list) gets them with their national names
    absent = (set(b.quotas_fen) & b.quota_expanded) - set(session.scalars(select(DrgGroup.code)))
    if absent:
        from core.catalog import CHS_DRG_11, parse_catalog

        names = dict(parse_catalog(CHS_DRG_11))
        session.add_all([DrgGroup(code=code, name=names.get(code, code)) for code in sorted(absent)])
        session.flush()

    pool = session.scalar(select(Pool).where(Pool.code == scheme.pool.code))
    if pool is None:
        pool = Pool(code=scheme.pool.code, name=scheme.pool.name,
                    level=PoolLevel(scheme.pool.level))
        session.add(pool)
        session.flush()
    else:
        pool.name, pool.level = scheme.pool.name, PoolLevel(scheme.pool.level)

    for full_name in scheme.villages:
        village = session.scalar(select(Village).where(Village.full_name == full_name))
        if village is None:
            town, name = full_name.split("/")
            session.add(Village(pool_id=pool.id, town=town, name=name, full_name=full_name))
        elif village.pool_id != pool.id:
            other = session.get(Pool, village.pool_id)
            raise SchemeError(_t("store_scheme.2", full_name=full_name, code=other.code,
                                 name=other.name))

    overlapping = scheme_years.overlapping(session, pool.id, scheme.year.start, scheme.year.end)
    if len(overlapping) > 1:
        periods = "、".join(_t("store_scheme.3", start=y.start, end=y.end) for y in overlapping)
        raise SchemeError(_t("store_scheme.4", start=scheme.year.start, end=scheme.year.end,
                             code=pool.code, periods=periods))
    rules = scheme.to_rules()
    source = (scheme.source or "")[-255:] or None
    year = overlapping[0] if overlapping else None
    before = None
    if year is None:
        year = SchemeYear(pool_id=pool.id, start=scheme.year.start, end=scheme.year.end,
                          enrolment_opens=scheme.enrolment.opens,
                          enrolment_closes=scheme.enrolment.closes, rules=rules,
                          source_file=source)
        session.add(year)
        session.flush()
    else:
        before = year.rules
        year.start, year.end = scheme.year.start, scheme.year.end
        year.enrolment_opens = scheme.enrolment.opens
        year.enrolment_closes = scheme.enrolment.closes
        year.rules, year.source_file, year.loaded_at = rules, source, utcnow()

    existing = {q.drg_code: q for q in session.scalars(
        select(Quota).where(Quota.scheme_year_id == year.id))}
    for code, row in existing.items():
        if code not in scheme.benefit.quotas_fen:
            session.delete(row)
    added = []
    for code, fen in scheme.benefit.quotas_fen.items():
        if code in existing:
            existing[code].quota_fen = fen
        else:
            added.append({"scheme_year_id": year.id, "drg_code": code, "quota_fen": fen})
    if added:  # a scheme's 600-odd rows in one bulk INSERT: as ORM objects they took 0.1 s
        session.execute(insert(Quota), added)
    audit(session, actor, "scheme.load", "scheme_year", year.id, before=before, after=rules)
    session.flush()
    return year


def scheme_of(year: SchemeYear) -> Scheme:
    """The typed scheme of a stored scheme year: `year.scheme` (cached; kept for callers that
    hold a year as an argument)."""
    return year.scheme


# Which scheme year: core/scheme_years.py. These names stay for the callers that use them.

def scheme_year_on(session: Session, pool: str | int | Pool, day: date) -> SchemeYear | None:
    """The pool's scheme year whose period contains `day` (scheme_years.running)."""
    return scheme_years.running(session, pool, day)


def current_scheme_year(session: Session, pool_code: str, today: date) -> SchemeYear | None:
    """The scheme year of the pool running on `today` (scheme_years.running)."""
    return scheme_years.running(session, pool_code, today)


def enrolment_scheme_year(session: Session, pool: str | int | Pool,
                          today: date) -> SchemeYear | None:
    """The scheme year whose enrolment window is open on `today` (scheme_years.enrolling)."""
    return scheme_years.enrolling(session, pool, today)


def previous_scheme_year(session: Session, year: SchemeYear) -> SchemeYear | None:
    """The year ending the day before `year` starts (scheme_years.previous)."""
    return scheme_years.previous(session, year)
