"""Personal data at rest: encryption, keyed-hash look-up and masking.

ID and bank-card numbers are stored encrypted (Fernet, key derived from SECRET_KEY) and found by
an HMAC-SHA256 of the normalised number, so the plain number is never needed in a query.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re

from cryptography.fernet import Fernet, InvalidToken


class PersonalDataVault:
    def __init__(self, secret: bytes):
        self._secret = secret
        enc_key = hashlib.sha256(b"huzhu-encrypt:" + secret).digest()
        self._setup(base64.urlsafe_b64encode(enc_key),
                    hashlib.sha256(b"huzhu-lookup:" + secret).digest())

    def _setup(self, fernet_key: bytes, hash_key: bytes) -> None:
        self._fernet_key, self._hash_key = fernet_key, hash_key
        self._fernet = Fernet(fernet_key)

    def __reduce__(self):
        # the household import hands the vault to its helper process (pickle over a pipe);
        # cryptography's Fernet object cannot be pickled in recent releases, the secret can
        return PersonalDataVault, (self._secret,)

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("personal data cannot be decrypted with this SECRET_KEY") from exc

    def lookup_hash(self, plain: str) -> str:
        return hmac.new(self._hash_key, normalise(plain).encode(), hashlib.sha256).hexdigest()


def normalise(number: str) -> str:
    return re.sub(r"[\s-]", "", number).upper()


def mask_id(number: str) -> str:
    """310*************39: first three and last two kept.

    The first three digits name the province and a prefecture's first digit (the village names
    the county anyway); the last two are the sex digit and the check digit. What stays hidden is
    the county's last digits, the whole birth date and the two sequence digits: with the birth
    year, the village and the sex known, some 365 × 100 / 11 ≈ 3,300 numbers remain, and only the
    keyed hash (which needs the secret key) could tell which one it is."""
    n = normalise(number)
    if len(n) <= 5:
        return "*" * len(n)
    return n[:3] + "*" * (len(n) - 5) + n[-2:]


def mask_phone(phone: str | None) -> str | None:
    """138****5678 for a mobile, 0512-****1234 for a landline: the last four digits kept."""
    if not phone:
        return None
    if "-" in phone:
        area, _, local = phone.partition("-")
        return f"{area}-" + "*" * max(len(local) - 4, 0) + local[-4:]
    return phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:]


def mask_card(number: str) -> str:
    """**** **** **** 1234 style, only the last four digits kept."""
    n = normalise(number)
    return "*" * max(len(n) - 4, 0) + n[-4:]


def mask_name(name: str) -> str:
    """张*三 for three characters, 张* for two, 欧**华 for four."""
    name = name.strip()
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


_ID_RE = re.compile(r"(?<![0-9])([1-9][0-9]{5})([0-9]{8,9})([0-9]{3}[0-9Xx])(?![0-9])")
_CARD_RE = re.compile(r"(?<![0-9])([0-9]{4})([0-9]{8,11})([0-9]{4})(?![0-9])")


_MOBILE_RE = re.compile(r"(?<![0-9A-Za-z])(1[3-9][0-9])([0-9]{4})([0-9]{4})(?![0-9])")
_LANDLINE_RE = re.compile(r"(?<![0-9A-Za-z])(0[0-9]{2,3}-)([0-9]{3,4})([0-9]{4})(?![0-9])")


def scrub_phones(text: str) -> str:
    """Mask anything that looks like a mobile or landline number in free text (cached replies)."""
    text = _MOBILE_RE.sub(lambda m: m.group(1) + "****" + m.group(3), text)
    return _LANDLINE_RE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


def scrub(text: str) -> str:
    """Mask anything that looks like an ID or bank-card number in free text (log lines)."""
    text = _ID_RE.sub(lambda m: mask_id(m.group(0)), text)
    return _CARD_RE.sub(lambda m: mask_card(m.group(0)), text)
