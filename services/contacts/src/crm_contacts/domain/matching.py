"""Duplicate detection (名寄せ): match keys folded from 表記揺れ, blocking keys and pair scores (pure).

The keys are for comparison only; stored customer values are never rewritten with them.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal

import jaconv
import phonenumbers
from rapidfuzz.distance import Levenshtein

from crm_contacts.domain.customer import Customer
from crm_contacts.domain.validation import PREFECTURES

__all__ = [
    "DEFAULT_MIN_SCORE",
    "Match",
    "MatchKeys",
    "blocking_keys",
    "candidate_pairs",
    "company_name_key",
    "corporate_number_key",
    "email_key",
    "find_duplicates",
    "normalise_address",
    "normalise_text",
    "person_name_key",
    "phone_key",
    "postal_code_key",
    "reading_key",
    "score",
]

#: The score from which a pair is reported as a possible duplicate.
DEFAULT_MIN_SCORE = 0.8

How = Literal["exact", "normalised", "fuzzy", "different"]

# Hyphen look-alikes people type in phones, addresses, postal codes and katakana words. NFKC folds
# the full-width ones (－ ｰ) but not U+2010 ‐, U+2212 −, the dashes or the katakana long-vowel mark.
_DASHES = frozenset("-‐‑‒–—―−ー﹣⁃")
_DASH_RE = re.compile("[" + re.escape("".join(sorted(_DASHES))) + "]")
_MIDDLE_DOTS_RE = re.compile("[・·‧∙•]")
_SPACES_RE = re.compile(r"\s+")
_NOT_WORD_RE = re.compile(r"[\W_]+")
_NOT_WORD_OR_PAREN_RE = re.compile(r"[^\w()]+|_+")
_DIGITS_RE = re.compile(r"[^0-9]+")
_E164_RE = re.compile(r"\+[1-9][0-9]{6,14}")

# Small kana and ヴ/ヂ/ヅ are spelled both ways in readings (キヤノン / キャノン, ヴィ / ビ).
_KANA_FOLD = str.maketrans(
    {
        "ァ": "ア",
        "ィ": "イ",
        "ゥ": "ウ",
        "ェ": "エ",
        "ォ": "オ",
        "ッ": "ツ",
        "ャ": "ヤ",
        "ュ": "ユ",
        "ョ": "ヨ",
        "ヮ": "ワ",
        "ヵ": "カ",
        "ヶ": "ケ",
        "ヂ": "ジ",
        "ヅ": "ズ",
        "ヰ": "イ",
        "ヱ": "エ",
        "ヲ": "オ",
    }
)

# Old and variant kanji (異体字) that name registers and business cards use interchangeably.
# NFKC folds only the compatibility ideographs, not these.
_ITAIJI = str.maketrans(
    {
        "髙": "高",
        "﨑": "崎",
        "嵜": "崎",
        "碕": "崎",
        "邊": "辺",
        "邉": "辺",
        "齋": "斎",
        "齊": "斉",
        "濵": "浜",
        "濱": "浜",
        "澤": "沢",
        "櫻": "桜",
        "國": "国",
        "廣": "広",
        "德": "徳",
        "惠": "恵",
        "藏": "蔵",
        "瀨": "瀬",
        "冨": "富",
        "槇": "槙",
        "眞": "真",
        "實": "実",
        "壽": "寿",
        "會": "会",
        "舘": "館",
        "嶋": "島",
        "嶌": "島",
        "榮": "栄",
        "彌": "弥",
        "戶": "戸",
        "淺": "浅",
        "龍": "竜",
        "條": "条",
        "萬": "万",
        "與": "与",
        "圓": "円",
        "鐵": "鉄",
        "驛": "駅",
        "縣": "県",
        "關": "関",
        "靑": "青",
    }
)

_FREE_MAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.co.jp",
        "ymail.ne.jp",
        "icloud.com",
        "me.com",
        "outlook.com",
        "outlook.jp",
        "hotmail.com",
        "hotmail.co.jp",
        "live.jp",
        "docomo.ne.jp",
        "ezweb.ne.jp",
        "au.com",
        "softbank.ne.jp",
        "i.softbank.jp",
        "nifty.com",
        "biglobe.ne.jp",
        "ocn.ne.jp",
        "so-net.ne.jp",
    }
)


def _settle(step: Callable[[str], str], text: str) -> str:
    """Apply a folding step until nothing changes, so every key function is idempotent by construction."""
    for _ in range(8):
        folded = step(text)
        if folded == text:
            break
        text = folded
    return text


def _fold_once(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = jaconv.hira2kata(text).lower()
    return _SPACES_RE.sub(" ", text).strip()


def normalise_text(raw: str) -> str:
    """NFKC (full/half width), hiragana → katakana, lower case, single spaces: the base of every key."""
    return _settle(_fold_once, raw)


def _is_kana(char: str) -> bool:
    return "ァ" <= char <= "ヺ" or char == "ー"


def _long_vowels(text: str) -> str:
    """A hyphen look-alike after kana is a long-vowel mark (サ-ビス → サービス); elsewhere a hyphen."""
    out: list[str] = []
    for char in text:
        if char in _DASHES:
            char = "ー" if out and _is_kana(out[-1]) else "-"
        out.append(char)
    return "".join(out)


# --- legal forms ----------------------------------------------------------------------------------

# Canonical legal form → how it is written in names (kanji, bracketed abbreviations, which NFKC
# gives for ㈱ ㈲ and （株）, spelled-out kana, and 全銀 bank-transfer notation ｶ) / (ｶ).
_JAPANESE_FORMS: dict[str, tuple[str, ...]] = {
    "株式会社": ("株式会社", "(株)", "カブシキガイシャ", "カブシキカイシャ", "カ)", "(カ"),
    "有限会社": ("有限会社", "(有)", "ユウゲンガイシャ", "ユウゲンカイシャ", "ユ)", "(ユ"),
    "合同会社": ("合同会社", "(同)", "(合)", "ゴウドウガイシャ", "ゴウドウカイシャ", "ド)", "(ド"),
    "合資会社": ("合資会社", "(資)", "ゴウシガイシャ", "ゴウシカイシャ", "シ)", "(シ"),
    "合名会社": ("合名会社", "(名)", "ゴウメイガイシャ", "ゴウメイカイシャ", "メ)", "(メ"),
    "一般社団法人": ("一般社団法人", "(一社)", "(社)", "イツパンシヤダンホウジン", "シヤ)", "(シヤ"),
    "一般財団法人": ("一般財団法人", "(一財)", "(財)", "イツパンザイダンホウジン", "ザイ)", "(ザイ"),
    "公益社団法人": ("公益社団法人", "(公社)", "コウエキシヤダンホウジン"),
    "公益財団法人": ("公益財団法人", "(公財)", "コウエキザイダンホウジン"),
    "医療法人": (
        "医療法人社団",
        "医療法人財団",
        "医療法人",
        "(医)",
        "(医社)",
        "(医財)",
        "イリヨウホウジンシヤダン",
        "イリヨウホウジンザイダン",
        "イリヨウホウジン",
        "イ)",
        "(イ",
    ),
    "社会福祉法人": ("社会福祉法人", "(福)", "(社福)", "シヤカイフクシホウジン", "フク)", "(フク"),
    "学校法人": ("学校法人", "(学)", "ガツコウホウジン", "ガク)", "(ガク"),
    "特定非営利活動法人": (
        "特定非営利活動法人",
        "npo法人",
        "(特非)",
        "(npo)",
        "トクテイヒエイリカツドウホウジン",
        "エヌピーオーホウジン",
        "トクヒ)",
        "(トクヒ",
    ),
    "宗教法人": ("宗教法人", "(宗)", "シユウキヨウホウジン"),
}

# English forms, matched on the spaced text before punctuation goes: Co., Ltd. / Inc. / K.K. / ...
_ENGLISH_FORMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(r"(?:^|[\s,.&])\s*(?:" + pattern + r")[\s.,]*$"), form)
    for pattern, form in (
        (r"co\.?\s*,?\s*ltd\.?", "株式会社"),
        (r"company\s+limited", "株式会社"),
        (r"kabushiki\s*-?\s*kaisha", "株式会社"),
        (r"k\.\s*k\.?|kk", "株式会社"),
        (r"inc\.?|incorporated", "株式会社"),
        (r"corp\.?|corporation", "株式会社"),
        (r"ltd\.?|limited", "株式会社"),
        (r"co\.", "株式会社"),
        (r"llc|l\.l\.c\.?|g\.\s*k\.?|gk|godo\s*-?\s*kaisha", "合同会社"),
        (r"y\.\s*k\.?|yk|yugen\s*-?\s*kaisha", "有限会社"),
    )
)


def _compact_form(text: str) -> str:
    return _NOT_WORD_OR_PAREN_RE.sub("", _long_vowels(normalise_text(text)).translate(_KANA_FOLD))


@dataclass(frozen=True)
class _FormTable:
    prefix: re.Pattern[str]
    suffix: re.Pattern[str]
    forms: dict[str, str]


def _form_table(fold: Callable[[str], str]) -> _FormTable:
    forms = {fold(v): form for form, variants in _JAPANESE_FORMS.items() for v in variants}
    # Longest first, so 医療法人社団 goes before 医療法人 and (一社) before (社).
    alternatives = "|".join(re.escape(v) for v in sorted(forms, key=lambda v: (-len(v), v)))
    return _FormTable(re.compile(f"^(?:{alternatives})"), re.compile(f"(?:{alternatives})$"), forms)


_FORMS = _form_table(_compact_form)
_READING_FORMS = _form_table(lambda v: _compact_form(v).replace("ー", ""))


def _strip_japanese_forms(text: str, table: _FormTable = _FORMS) -> tuple[str, str | None]:
    """Strip legal forms at either end (never down to nothing); the first one found is the legal form."""
    found: str | None = None
    while True:
        hit = table.prefix.match(text)
        if hit and hit.end() < len(text):
            text, found = text[hit.end() :], found or table.forms[hit.group()]
            continue
        hit = table.suffix.search(text)
        if hit and hit.start() > 0:
            text, found = text[: hit.start()], found or table.forms[hit.group()]
            continue
        return text, found


def _strip_english_forms(text: str) -> tuple[str, str | None]:
    found: str | None = None
    changed = True
    while changed:
        changed = False
        for pattern, form in _ENGLISH_FORMS:
            hit = pattern.search(text)
            rest = text[: hit.start()].rstrip(" ,.&") if hit else ""
            if rest:
                text, found, changed = rest, found or form, True
                break
    return text, found


_VU = {"ヴァ": "バ", "ヴィ": "ビ", "ヴェ": "ベ", "ヴォ": "ボ", "ヴ": "ブ"}
_VU_RE = re.compile("|".join(sorted(_VU, key=len, reverse=True)))


def _name_base(raw: str) -> str:
    text = _VU_RE.sub(lambda m: _VU[m.group(0)], _long_vowels(normalise_text(raw)))
    return _MIDDLE_DOTS_RE.sub("", text).translate(_ITAIJI).translate(_KANA_FOLD)


def _company_step(text: str) -> tuple[str, str | None]:
    base = _name_base(text)
    base, english = _strip_english_forms(base)
    compact = _NOT_WORD_OR_PAREN_RE.sub("", base)
    compact, japanese = _strip_japanese_forms(compact)
    return compact.replace("(", "").replace(")", ""), english or japanese


def company_name_key(raw: str) -> tuple[str, str | None]:
    """A company's name for matching, and its legal form: 株式会社/(株)/㈱/Co., Ltd. ... stripped at either end."""
    key, form = _company_step(raw)
    for _ in range(8):
        again, extra = _company_step(key)
        if again == key:
            break
        key, form = again, form or extra
    return key, form


def person_name_key(raw: str) -> str:
    """A person's name for matching: width, kana, spaces, middle dots and variant kanji folded."""
    return _settle(lambda t: _NOT_WORD_RE.sub("", _name_base(t)), raw)


def _reading_step(text: str, company: bool) -> str:
    text = _name_base(text).replace("ー", "")
    compact = _NOT_WORD_OR_PAREN_RE.sub("", text)
    if company:
        compact, _ = _strip_japanese_forms(compact, _READING_FORMS)
    return compact.replace("(", "").replace(")", "")


def reading_key(raw: str, *, company: bool = False) -> str:
    """A kana reading for matching: katakana, no long-vowel marks, small kana as large, legal forms stripped."""
    return _settle(lambda t: _reading_step(t, company), raw)


_KANA_RE = re.compile(r"[ァ-ヺー]+")
_HOUSE_NUMBER_RE = re.compile(r"[0-9-]+")


def _only_katakana(text: str) -> bool:
    return bool(_KANA_RE.fullmatch(text))


def _reads_as(name: str, other_name: str, other_reading: str) -> bool:
    """A name half in kana (山田たろう, やまだ太郎) that agrees with another's kanji and kana reading."""
    runs = _KANA_RE.split(name)
    if len(runs) != 2 or not other_reading:
        return False
    head, tail = runs
    if head and not tail:  # kanji, then kana: 山田タロウ ~ 山田太郎 (ヤマダタロウ)
        kana = name[len(head) :].replace("ー", "")
        return len(kana) >= 2 and other_name.startswith(head) and other_reading.endswith(kana)
    if tail and not head:  # kana, then kanji: ヤマダ太郎 ~ 山田太郎 (ヤマダタロウ)
        kana = name[: len(name) - len(tail)].replace("ー", "")
        return len(kana) >= 2 and other_name.endswith(tail) and other_reading.startswith(kana)
    return False


# --- contact details --------------------------------------------------------------------------------


def phone_key(raw: str) -> str:
    """E.164 of a Japanese (or international) number in any notation; digits only if it does not parse."""
    if _E164_RE.fullmatch(raw):
        return raw
    text = _DASH_RE.sub("-", unicodedata.normalize("NFKC", raw)).strip()
    if not text:
        return ""
    try:
        parsed = phonenumbers.parse(text, "JP")
    except phonenumbers.NumberParseException:
        return _DIGITS_RE.sub("", text)
    if not phonenumbers.is_possible_number(parsed):
        return _DIGITS_RE.sub("", text)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def email_key(raw: str) -> str:
    """The whole address in lower case (mail systems treat the local part case-insensitively in practice)."""
    return unicodedata.normalize("NFKC", raw).strip().lower()


def postal_code_key(raw: str) -> str:
    """Seven digits, from 〒100-0001, 100‐0001, １００－０００１ or 1000001; empty if it is not seven digits."""
    digits = _DIGITS_RE.sub("", unicodedata.normalize("NFKC", raw))
    return digits if len(digits) == 7 else ""


def corporate_number_key(raw: str) -> str:
    """The 13 digits of a 法人番号 (half width); empty otherwise."""
    digits = _DIGITS_RE.sub("", unicodedata.normalize("NFKC", raw))
    return digits if len(digits) == 13 else ""


_KANJI_DIGITS = {"〇": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_KANJI_NUMBER_RE = re.compile(r"[〇一二三四五六七八九十百]+(?=丁目|番|号|条|階)")
_BLOCK_UNITS_RE = re.compile(r"([0-9]+)(?:丁目|番地|番|条)")
_GO_RE = re.compile(r"([0-9]+)号")
_NO_RE = re.compile(r"(?<=[0-9])[のノ](?=[0-9])")
_FLOOR_RE = re.compile(r"([0-9]+)(?:階|f)")
_LONE_HYPHEN_RE = re.compile(r"(?<![0-9])-|-(?![0-9])")
_PREFECTURES_LONGEST = tuple(sorted(PREFECTURES, key=len, reverse=True))


def _kanji_number(text: str) -> str:
    total, current = 0, 0
    for char in text:
        if char == "百":
            total += (current or 1) * 100
            current = 0
        elif char == "十":
            total += (current or 1) * 10
            current = 0
        else:
            current = current * 10 + _KANJI_DIGITS[char]
    return str(total + current)


def _address_step(text: str) -> str:
    text = _DASH_RE.sub("-", normalise_text(text)).replace(" ", "").translate(_ITAIJI)
    text = text.replace("ヶ", "ケ").replace("ヵ", "ケ")
    text = _KANJI_NUMBER_RE.sub(lambda m: _kanji_number(m.group(0)), text)
    text = _BLOCK_UNITS_RE.sub(r"\1-", text)
    text = _GO_RE.sub(r"\1-", text)
    text = _NO_RE.sub("-", text)
    text = _FLOOR_RE.sub(r"\1f", text)
    text = re.sub(r"-+", "-", text)
    text = _LONE_HYPHEN_RE.sub("", text)
    return _NOT_WORD_RE.sub(lambda m: "-" if m.group(0) == "-" else "", text)


def normalise_address(prefecture: str | None, city: str | None, street: str | None) -> tuple[str, str]:
    """(prefecture, city + street key): 丁目/番地/号 and kanji numerals as 1-2-3, hyphens folded, no spaces."""
    pref = _settle(lambda t: normalise_text(t).replace(" ", ""), prefecture or "")
    rest = _settle(_address_step, f"{city or ''}{street or ''}")
    stripped = True
    while stripped:
        stripped = False
        for name in _PREFECTURES_LONGEST:
            if rest.startswith(name) and len(rest) > len(name):
                pref, rest, stripped = pref or name, rest[len(name) :], True
                break
    return pref, rest


def _host(url: str) -> str:
    text = unicodedata.normalize("NFKC", url).strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    host = re.split(r"[/?#:]", text, maxsplit=1)[0]
    return host.removeprefix("www.")


# --- keys -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchKeys:
    """What duplicate detection compares of one customer; empty strings where a value is unknown."""

    kind: str
    name_key: str
    legal_form: str = ""
    reading_key: str = ""
    given_name: str = ""
    name_digest: str = ""
    corporate_number: str = ""
    phone: str = ""
    email: str = ""
    domains: tuple[str, ...] = ()
    postal_code: str = ""
    prefecture: str = ""
    address_key: str = ""
    birth_date: str = ""
    gender: str = ""

    @classmethod
    def of(cls, customer: Customer) -> MatchKeys:
        """The match keys of a customer's current state."""
        return cls.from_profile(customer.kind or "", customer.profile)

    @classmethod
    def from_profile(cls, kind: str, profile: Mapping[str, Any]) -> MatchKeys:
        """The match keys of a profile as the customer aggregate keeps it (or as a user typed it)."""

        def text(name: str) -> str:
            value = profile.get(name)
            return "" if value is None else str(value)

        raw_name = text("name")
        company = kind == "company"
        if company:
            name, form = company_name_key(raw_name)
        else:
            name, form = person_name_key(raw_name), None
        reading = reading_key(text("name_kana"), company=company)
        if not reading and _only_katakana(name):
            # A name written in kana is its own reading: ヤマダタロウ matches 山田太郎 (ヤマダ タロウ).
            reading = reading_key(raw_name, company=company)
        given = ""
        if not company:
            # The given name, where the reading or the name separates it (ヤマダ タロウ, 山田 太郎).
            kana_parts = normalise_text(text("name_kana")).split(" ")
            name_parts = normalise_text(raw_name).split(" ")
            if len(kana_parts) >= 2:
                given = reading_key(kana_parts[-1])
            elif len(name_parts) >= 2:
                given = person_name_key(name_parts[-1])
        address = profile.get("address") or {}
        pref, address_key = normalise_address(address.get("prefecture"), address.get("city"), address.get("street"))
        email = email_key(text("email"))
        domains: set[str] = set()
        if company:
            if text("url"):
                domains.add(_host(text("url")))
            if "@" in email:
                domains.add(email.rsplit("@", 1)[1])
            domains -= _FREE_MAIL
            domains.discard("")
        gender = text("gender")
        return cls(
            kind=kind,
            name_key=name,
            legal_form=form or "",
            reading_key=reading,
            given_name=given,
            name_digest=_digest(raw_name),
            corporate_number=corporate_number_key(text("corporate_number")),
            phone=phone_key(text("phone")),
            email=email,
            domains=tuple(sorted(domains)),
            postal_code=postal_code_key(str(address.get("postal_code") or "")),
            prefecture=pref,
            address_key=address_key,
            birth_date=text("birth_date")[:10],
            gender="" if gender == "unspecified" else gender,
        )


def _digest(raw: str) -> str:
    """A short fingerprint of the name exactly as written, to tell 'exact' from 'normalised' equality."""
    return hashlib.blake2b(raw.strip().encode(), digest_size=6).hexdigest() if raw.strip() else ""


def blocking_keys(keys: MatchKeys) -> set[str]:
    """Keys that a likely duplicate shares with this customer: only customers sharing one are scored."""
    out: set[str] = set()
    kind = keys.kind[:1]
    name, reading = keys.name_key, keys.reading_key
    if keys.corporate_number:
        out.add(f"c:{keys.corporate_number}")
    if keys.phone:
        out.add(f"p:{keys.phone}")
    if keys.email:
        out.add(f"e:{keys.email}")
    for domain in keys.domains:
        out.add(f"d:{domain}")
    if len(name) >= 2:
        out.add(f"n:{kind}:{name}")
    if len(reading) >= 2:
        out.add(f"r:{kind}:{reading}")
    if keys.postal_code:
        if name:
            out.add(f"z:{kind}:{keys.postal_code}:{name[:2]}")
        if reading:
            out.add(f"zr:{kind}:{keys.postal_code}:{reading[:2]}")
    if keys.address_key and len(keys.address_key) >= 6:
        out.add(f"a:{kind}:{keys.address_key}")
    if keys.birth_date:
        if name:
            out.add(f"b:{keys.birth_date}:{name[:1]}")
        if reading:
            out.add(f"br:{keys.birth_date}:{reading[:2]}")
    return out


# --- scoring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """How alike two customers are: a score in [0, 1] and, field by field, why."""

    score: float
    reasons: list[dict[str, Any]] = field(default_factory=list)


_similarity = Levenshtein.normalized_similarity

# Weights are log-odds-like evidence; the score is a logistic of their sum. _BIAS puts the default
# threshold (0.8) at a total of about 7: an exact name plus an address, or a phone, or a birth date.
_BIAS = 5.6
_IDENTIFIER_FLOOR = 0.97
_NON_IDENTIFIER_CAP = 0.965


def _address_similarity(a: str, b: str) -> float:
    sim = _similarity(a, b)
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    if len(short) >= 6 and long_.startswith(short) and not long_[len(short)].isdigit() and long_[len(short)] != "-":
        # The same street address, one with a building or floor appended.
        sim = max(sim, 0.95)
    elif len(short) >= 6 and long_.endswith(short) and not _HOUSE_NUMBER_RE.fullmatch(short):
        # The same street address, one without the city (千代田1-1 in 千代田区千代田1-1).
        sim = max(sim, 0.9)
    return sim


def _name_weight(kind: str, ns: float | None, rs: float | None) -> float:
    """Evidence from the names (ns) and kana readings (rs); None where they cannot be compared."""
    best = max(ns or 0.0, rs or 0.0)
    if ns == 1.0 or rs == 1.0:
        other = rs if ns == 1.0 else ns
        weight = 5.0
        if other is not None and other >= 0.9:
            weight += 0.5
        elif other is not None and other < 0.5:
            # One reading, two spellings (裕子 / 優子): more often two people than one typo.
            weight -= 2.0
        return weight
    if kind == "person":
        # Names of people are short: one kanji or kana off in both the name and its reading is more
        # often a sibling than a typo (a typo usually leaves one of the two intact).
        return -4.0 if best < 0.85 else -4.0 + (best - 0.85) / 0.15 * 7.0
    # Company names are longer: a typo leaves a high similarity, a sister company (same head word,
    # another trade) a middling one.
    return max(-4.0, min(4.5, -4.0 + (best - 0.7) / 0.25 * 7.0))


def _given_name_agrees(a: MatchKeys, b: MatchKeys) -> bool:
    given = a.given_name
    if not given or (len(given) < 2 and _only_katakana(given)):
        return False
    return (b.name_key.endswith(given) or b.reading_key.endswith(given)) and b.name_key != a.name_key


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _evaluate(a: MatchKeys, b: MatchKeys, explain: bool) -> tuple[float, list[dict[str, Any]]]:
    reasons: list[dict[str, Any]] = []

    def note(name: str, how: How, similarity: float) -> None:
        if explain:
            reasons.append({"field": name, "how": how, "similarity": round(similarity, 3)})

    weight = 0.0
    contradiction = False
    if a.kind != b.kind:
        weight -= 15.0
        contradiction = True
        note("kind", "different", 0.0)

    # Names and readings.
    ns: float | None = _similarity(a.name_key, b.name_key) if a.name_key and b.name_key else 0.0
    rs = _similarity(a.reading_key, b.reading_key) if a.reading_key and b.reading_key else None
    person = a.kind == b.kind == "person"
    if ns != 1.0 and person:
        if _reads_as(a.name_key, b.name_key, b.reading_key) or _reads_as(b.name_key, a.name_key, a.reading_key):
            ns = 1.0
        elif rs is not None and _only_katakana(a.name_key) != _only_katakana(b.name_key):
            ns = None  # ヤマダタロウ against 山田太郎 says nothing: the readings decide
    name_weight = _name_weight("person" if person else "company", ns, rs)
    if (
        name_weight < 0.0
        and person
        and a.birth_date
        and a.birth_date == b.birth_date
        and (_given_name_agrees(a, b) or _given_name_agrees(b, a))
    ):
        # Same given name and birth date, new family name: 改姓 on marriage is common in Japan.
        name_weight = 0.0
        note("given_name", "normalised", 1.0)
    weight += name_weight
    if ns:
        if a.name_digest and a.name_digest == b.name_digest:
            note("name", "exact", 1.0)
        elif ns == 1.0:
            note("name", "normalised", 1.0)
        elif ns >= 0.6:
            note("name", "fuzzy", ns)
    if rs is not None and rs >= 0.6:
        note("name_kana", "normalised" if rs == 1.0 else "fuzzy", rs)
    if a.legal_form and b.legal_form and a.legal_form != b.legal_form:
        weight -= 1.5
        note("legal_form", "different", 0.0)

    identifier = False
    if a.corporate_number and b.corporate_number:
        if a.corporate_number == b.corporate_number:
            # One legal entity, whatever it is called now (社名変更 keeps the 法人番号).
            weight += 8.0
            identifier = True
            note("corporate_number", "exact", 1.0)
        else:
            weight -= 10.0
            contradiction = True
            note("corporate_number", "different", 0.0)
    shared_contact = False
    for name in ("phone", "email"):
        mine, theirs = getattr(a, name), getattr(b, name)
        if mine and theirs:
            if mine == theirs:
                weight += 5.0
                shared_contact = True
                note(name, "exact", 1.0)
            else:
                weight -= 0.25
    if a.domains and b.domains:
        if set(a.domains) & set(b.domains):
            weight += 3.0
            note("domain", "exact", 1.0)
        else:
            weight -= 0.5

    if a.postal_code and b.postal_code:
        if a.postal_code == b.postal_code:
            weight += 1.5
            note("postal_code", "normalised", 1.0)
        else:
            weight -= 0.25
    if a.prefecture and b.prefecture and a.prefecture != b.prefecture:
        weight -= 0.5
    if a.address_key and b.address_key:
        sim = 1.0 if a.address_key == b.address_key else _address_similarity(a.address_key, b.address_key)
        if sim >= 0.95:
            weight += 2.5
        elif sim >= 0.85:
            weight += 1.5
        elif sim < 0.6:
            weight -= 0.5
        if sim >= 0.85:
            note("address", "normalised" if sim == 1.0 else "fuzzy", sim)

    if a.birth_date and b.birth_date:
        if a.birth_date == b.birth_date:
            weight += 5.0
            note("birth_date", "exact", 1.0)
        else:
            weight -= 8.0
            contradiction = True
            note("birth_date", "different", 0.0)
    if a.gender and b.gender and a.gender != b.gender:
        weight -= 4.0
        contradiction = True

    evidence = _logistic(weight - _BIAS)
    # A shared phone or e-mail is the same customer only if the names agree: households share a
    # landline, colleagues a team address. A shared 法人番号 is one entity even after renaming.
    if not contradiction and (identifier or (shared_contact and name_weight >= 0.0)):
        result = _IDENTIFIER_FLOOR + (1.0 - _IDENTIFIER_FLOOR) * evidence
    else:
        result = min(evidence, _NON_IDENTIFIER_CAP)
    return round(result, 4), reasons


def score(a: MatchKeys, b: MatchKeys) -> Match:
    """How likely two customers are one: exact 法人番号/phone/e-mail matches score ≥ 0.97 and rank first."""
    value, reasons = _evaluate(a, b, explain=True)
    return Match(value, reasons)


def candidate_pairs(keys: Sequence[MatchKeys], max_block: int = 60, window: int = 12) -> set[tuple[int, int]]:
    """Index pairs (i < j) that share a blocking key; blocks over max_block pair only near neighbours by name."""
    blocks: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(keys):
        for key in blocking_keys(item):
            blocks[key].append(index)
    n = len(keys)
    encoded: set[int] = set()
    for members in blocks.values():
        if len(members) < 2:
            continue
        if len(members) <= max_block:
            encoded.update(i * n + j for i, j in combinations(members, 2))
            continue
        # An oversized block (a common name, a shared switchboard number): a sorted-neighbourhood
        # window keeps it linear instead of quadratic.
        ordered = sorted(members, key=lambda i: (keys[i].name_key, keys[i].reading_key))
        for pos, i in enumerate(ordered):
            for j in ordered[pos + 1 : pos + 1 + window]:
                encoded.add(min(i, j) * n + max(i, j))
    return {divmod(code, n) for code in encoded}


def find_duplicates(
    keys: Sequence[MatchKeys], min_score: float = DEFAULT_MIN_SCORE, progress: Callable[[int, int], None] | None = None
) -> list[tuple[float, int, int]]:
    """(score, i, j) of every candidate pair scoring at least min_score, highest first."""
    pairs = candidate_pairs(keys)
    found: list[tuple[float, int, int]] = []
    step = max(1, len(pairs) // 100)
    for count, (i, j) in enumerate(pairs, start=1):
        value = _evaluate(keys[i], keys[j], explain=False)[0]
        if value >= min_score:
            found.append((value, i, j))
        if progress is not None and count % step == 0:
            progress(count, len(pairs))
    found.sort(key=lambda item: (-item[0], item[1], item[2]))
    return found
