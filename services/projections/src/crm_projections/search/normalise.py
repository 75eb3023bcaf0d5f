"""Folding Japanese names for substring search: 表記揺れ (width, kana, case, legal forms) folded away.

The read side cannot import the contacts service's normaliser (services are independent), and it
needs something different anyway: not match keys for duplicate scoring, but one searchable string
per customer in which any substring of what a user types can be found.  Both the stored text and
the query go through :func:`fold`, so ``(株)abc``, ``ＡＢＣ``, ``ｴｰﾋﾞｰｼｰ`` and ``えーびーしー`` all land
on the same characters.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["PART_SEPARATOR", "bigrams", "fold", "fold_name", "query_bigrams", "search_text"]

#: Separates the folded name, the folded kana reading and the legal forms in the stored text,
#: so a substring never spans two of them (no user query contains it after folding).
PART_SEPARATOR = "\x1f"

# Hiragana ぁ..ゖ and the iteration marks ゝゞ sit exactly 0x60 below their katakana.
_HIRA_TO_KATA = {code: code + 0x60 for code in range(ord("ぁ"), ord("ゖ") + 1)} | {ord("ゝ"): "ヽ", ord("ゞ"): "ヾ"}

# Small kana and old kana are written both ways in readings (キヤノン / キャノン).
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
        "ヰ": "イ",
        "ヱ": "エ",
        "ヲ": "オ",
    }
)

# Legal forms (after NFKC, ㈱ and （株） are "(株)"; after kana folding ガイシャ is ガイシヤ).  They are
# taken out of the searchable name so "(株)ABC" finds "ABC商事株式会社", and kept as a separate part
# so a query for the form alone still finds the companies that carry it.
_LEGAL_FORMS: dict[str, tuple[str, ...]] = {
    "株式会社": ("株式会社", "(株)", "カブシキガイシヤ", "カブシキカイシヤ"),
    "有限会社": ("有限会社", "(有)", "ユウゲンガイシヤ", "ユウゲンカイシヤ"),
    "合同会社": ("合同会社", "(同)", "(合)", "ゴウドウガイシヤ", "ゴウドウカイシヤ"),
    "合資会社": ("合資会社", "(資)", "ゴウシガイシヤ"),
    "合名会社": ("合名会社", "(名)", "ゴウメイガイシヤ"),
    "一般社団法人": ("一般社団法人", "(一社)", "(社)"),
    "一般財団法人": ("一般財団法人", "(一財)", "(財)"),
    "医療法人": ("医療法人社団", "医療法人財団", "医療法人", "(医)"),
    "学校法人": ("学校法人", "(学)"),
    "社会福祉法人": ("社会福祉法人", "(福)"),
    "特定非営利活動法人": ("特定非営利活動法人", "npo法人", "(特非)"),
}
_FORM_OF = {variant: form for form, variants in _LEGAL_FORMS.items() for variant in variants}
_FORM_RE = re.compile("|".join(re.escape(v) for v in sorted(_FORM_OF, key=lambda v: (-len(v), v))))
# Spaces, punctuation, dashes and long-vowel marks: people type them inconsistently (サービス / サ-ビス / サビス).
_NOISE_RE = re.compile(r"[\W_ー]+")


def _base(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return text.translate(_HIRA_TO_KATA).translate(_KANA_FOLD)


def fold_name(text: str) -> tuple[str, list[str]]:
    """The folded text without legal forms, and the canonical legal forms it carried."""
    base = _base(text)
    forms = [_FORM_OF[m.group()] for m in _FORM_RE.finditer(base)]
    return _NOISE_RE.sub("", _FORM_RE.sub(" ", base)), forms


def fold(text: str) -> str:
    """A query folded the way stored names are; a query that is only a legal form keeps the form."""
    folded, forms = fold_name(text)
    if not folded and forms:
        return forms[0]
    return folded


def search_text(name: str | None, name_kana: str | None) -> str:
    """The stored searchable text of a customer: folded name, folded reading, legal forms."""
    name_part, forms = fold_name(name or "")
    kana_part, kana_forms = fold_name(name_kana or "")
    return PART_SEPARATOR.join((name_part, kana_part, "".join(dict.fromkeys(forms + kana_forms))))


def bigrams(text: str) -> list[str]:
    """Distinct character bigrams of a stored text, never spanning two of its parts."""
    grams: dict[str, None] = {}
    for part in text.split(PART_SEPARATOR):
        for i in range(len(part) - 1):
            grams[part[i : i + 2]] = None
    return list(grams)


def query_bigrams(folded_query: str) -> list[str]:
    """Bigrams a stored text must contain to possibly contain the folded query (none for one character)."""
    return list(dict.fromkeys(folded_query[i : i + 2] for i in range(len(folded_query) - 1)))
