"""Notation and check-digit rules for customer master fields (pure)."""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
from email_validator import EmailNotValidError, validate_email

PREFECTURES = frozenset(
    [
        "北海道",
        "青森県",
        "岩手県",
        "宮城県",
        "秋田県",
        "山形県",
        "福島県",
        "茨城県",
        "栃木県",
        "群馬県",
        "埼玉県",
        "千葉県",
        "東京都",
        "神奈川県",
        "新潟県",
        "富山県",
        "石川県",
        "福井県",
        "山梨県",
        "長野県",
        "岐阜県",
        "静岡県",
        "愛知県",
        "三重県",
        "滋賀県",
        "京都府",
        "大阪府",
        "兵庫県",
        "奈良県",
        "和歌山県",
        "鳥取県",
        "島根県",
        "岡山県",
        "広島県",
        "山口県",
        "徳島県",
        "香川県",
        "愛媛県",
        "高知県",
        "福岡県",
        "佐賀県",
        "長崎県",
        "熊本県",
        "大分県",
        "宮崎県",
        "鹿児島県",
        "沖縄県",
    ]
)

# [0-9], not \d: \d also matches other scripts' digits (e.g. Devanagari), which NFKC keeps.
_POSTAL = re.compile(r"^[0-9]{3}-?[0-9]{4}$")
_KANA = re.compile(r"^[\u30A0-\u30FF\u3040-\u309F\u30FC\uFF65-\uFF9F\s・ー（）()]+$")


def corporate_number_is_valid(number: str) -> bool:
    """法人番号: 13 digits whose first digit is 9 - (Σ Pn·Qn mod 9) over the other twelve."""
    if not re.fullmatch(r"[0-9]{13}", number):
        return False
    base = number[1:]
    total = sum(int(d) * (1 if n % 2 else 2) for n, d in enumerate(reversed(base), start=1))
    return int(number[0]) == 9 - total % 9


def normalise_corporate_number(raw: str) -> str:
    """法人番号 in half-width digits (full-width accepted); ValueError unless it passes the check digit."""
    number = unicodedata.normalize("NFKC", raw).strip()
    if not corporate_number_is_valid(number):
        raise ValueError("法人番号 must be 13 digits with a valid check digit")
    return number


def normalise_phone(raw: str) -> str:
    """E.164 form of a phone number (Japanese numbers may omit the country code)."""
    text = unicodedata.normalize("NFKC", raw).replace("‐", "-").replace("−", "-")
    try:
        parsed = phonenumbers.parse(text, "JP")
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {raw}") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"not a valid phone number: {raw}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    """A syntactically valid email address with its domain lower-cased (no DNS lookups)."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc


def normalise_postal_code(raw: str) -> str:
    """NNN-NNNN from full- or half-width digits."""
    text = unicodedata.normalize("NFKC", raw).replace("‐", "-").replace("−", "-").strip()
    if not _POSTAL.match(text):
        raise ValueError("postal code must be 7 digits, e.g. 100-0001")
    digits = text.replace("-", "")
    return f"{digits[:3]}-{digits[3:]}"


def is_kana(text: str) -> bool:
    """True if a reading is written in katakana/hiragana."""
    return bool(_KANA.match(text))
