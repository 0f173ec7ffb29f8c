"""The OCR read-out of a claim (`Claim.ocr`), typed, and the short /核定 form's facts from it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Mapping

from core.models import Claim
from core.review.errors import ReviewError
from core.review.facts import HOSPITAL_MAX, Facts, parse_amount, parse_date, parse_insurance


#: an OCR value is used by the short /核定 form only at this confidence or above
GOOD_CONFIDENCE = 0.9
OCR_FIELDS = ("out_of_pocket_fen", "admission_date", "discharge_date", "insurance", "hospital")
#: the values the short form needs from the read-out (the insurance type may come from the
#: member's registration instead)
OCR_NEEDED = ("out_of_pocket_fen", "admission_date", "discharge_date")


def _ocr_value(field: str, value: Any):
    """The read value in the type the facts need, or None when it cannot be used."""
    if value is None:
        return None
    try:
        if field == "out_of_pocket_fen":
            if isinstance(value, bool):
                return None
            if isinstance(value, int):
                return value if value >= 0 else None
            return parse_amount(str(value))  # "8456.78" read as yuan
        if field in ("admission_date", "discharge_date"):
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            return parse_date(str(value), field)
        if field == "insurance":
            return parse_insurance(str(value))
        if field == "hospital":
            text = str(value).strip()
            return text[:HOSPITAL_MAX] or None
    except ReviewError:
        return None
    return None


def ocr_readout(claim: Claim) -> dict[str, dict]:
    """{field: {"value": typed value or None, "raw": as stored, "confidence": float, "good": bool}}
    for the fields the read-out has."""
    ocr = claim.ocr or {}
    fields = ocr.get("fields") if isinstance(ocr.get("fields"), Mapping) else ocr
    out: dict[str, dict] = {}
    for field in OCR_FIELDS:
        entry = fields.get(field)
        if not isinstance(entry, Mapping):
            continue
        try:
            confidence = float(entry.get("confidence") or 0)
        except (TypeError, ValueError):
            confidence = 0.0
        value = _ocr_value(field, entry.get("value"))
        good = value is not None and confidence >= GOOD_CONFIDENCE
        if field == "out_of_pocket_fen" and ocr.get("consistent") is False:
            good = False
        out[field] = {"value": value, "raw": entry.get("value"), "confidence": confidence,
                      "good": good}
    return out


@dataclass(frozen=True)
class OcrFacts:
    facts: Facts | None
    missing: tuple[str, ...]  # OCR field names not read with good confidence
    insurance_from_member: bool = False


def facts_from_ocr(claim: Claim, drg_code: str, today: date) -> OcrFacts:
    """The short form: the reviewer gives the DRG group, the read-out gives the rest when every
    needed value was read with good confidence. The insurance type falls back to the member's
    registered type when the read-out has none good."""
    read = ocr_readout(claim)
    missing = [f for f in OCR_NEEDED if not read.get(f, {}).get("good")]
    insurance = read.get("insurance", {})
    from_member = not insurance.get("good")
    if missing:
        return OcrFacts(None, tuple(missing), from_member)
    admission, discharge = read["admission_date"]["value"], read["discharge_date"]["value"]
    if discharge < admission or discharge > today:
        return OcrFacts(None, ("admission_date", "discharge_date"), from_member)
    hospital = read.get("hospital", {})
    facts = Facts(drg_code, read["out_of_pocket_fen"]["value"], admission, discharge,
                  claim.member.insurance.value if from_member else insurance["value"],
                  hospital["value"] if hospital.get("good") else None)
    return OcrFacts(facts, (), from_member)
