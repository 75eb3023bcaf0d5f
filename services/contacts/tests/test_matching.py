"""名寄せ matching: each 表記揺れ rule, table-driven, plus properties of the normalisation and the scores."""

from __future__ import annotations

from typing import Any

import pytest
from crm_contacts.domain.customer import fold
from crm_contacts.domain.matching import (
    MatchKeys,
    blocking_keys,
    candidate_pairs,
    company_name_key,
    corporate_number_key,
    email_key,
    find_duplicates,
    normalise_address,
    normalise_text,
    person_name_key,
    phone_key,
    postal_code_key,
    reading_key,
    score,
)
from crm_eventstore.ids import new_id
from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st

from .builders import corporate_number, registered

# --- normalisation rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＢＣ　商事", "abc 商事"),  # full-width letters and ideographic space
        ("ｻｸﾗ", "サクラ"),  # half-width katakana
        ("さくら", "サクラ"),  # hiragana
        ("  Sakura   Shoji ", "sakura shoji"),  # case and runs of spaces
        ("１２３", "123"),  # full-width digits
        ("ｶﾞｯｺｳ", "ガッコウ"),  # half-width voiced marks compose
    ],
)
def test_text_is_folded_for_width_kana_case_and_spaces(raw: str, expected: str) -> None:
    assert normalise_text(raw) == expected


@pytest.mark.parametrize(
    "written",
    [
        "株式会社ABC商事",
        "ABC商事株式会社",
        "(株)ABC商事",
        "ABC商事(株)",
        "（株）ＡＢＣ商事",
        "㈱ABC商事",
        "ABC商事㈱",
        "株式会社 ABC 商事",
        "ＡＢＣ商事　株式会社",
        "ABC・商事(株)",
        "ｶ)ABC商事",
        "ABC商事(ｶ",
    ],
)
def test_kabushiki_kaisha_in_any_notation_and_place_is_stripped_from_the_name_key(written: str) -> None:
    assert company_name_key(written) == ("abc商事", "株式会社")


@pytest.mark.parametrize(
    ("written", "key", "form"),
    [
        ("有限会社さくら", "サクラ", "有限会社"),
        ("さくら(有)", "サクラ", "有限会社"),
        ("㈲さくら", "サクラ", "有限会社"),
        ("合同会社ミライ", "ミライ", "合同会社"),
        ("ミライ合資会社", "ミライ", "合資会社"),
        ("合名会社ミライ", "ミライ", "合名会社"),
        ("一般社団法人日本協会", "日本協会", "一般社団法人"),
        ("(一社)日本協会", "日本協会", "一般社団法人"),
        ("一般財団法人日本財団", "日本財団", "一般財団法人"),
        ("公益社団法人日本協会", "日本協会", "公益社団法人"),
        ("医療法人社団さくら会", "サクラ会", "医療法人"),
        ("医療法人さくら会", "サクラ会", "医療法人"),
        ("社会福祉法人ひかり福祉会", "ヒカリ福祉会", "社会福祉法人"),
        ("学校法人青葉学園", "青葉学園", "学校法人"),
        ("特定非営利活動法人ひかり", "ヒカリ", "特定非営利活動法人"),
        ("NPO法人ひかり", "ヒカリ", "特定非営利活動法人"),
        ("カブシキガイシャサクラ", "サクラ", "株式会社"),
        ("かぶしきがいしゃさくら", "サクラ", "株式会社"),
        ("Sakura Shoji Co., Ltd.", "sakurashoji", "株式会社"),
        ("SAKURA SHOJI CO.,LTD.", "sakurashoji", "株式会社"),
        ("Sakura Shoji Inc.", "sakurashoji", "株式会社"),
        ("Sakura Shoji K.K.", "sakurashoji", "株式会社"),
        ("Sakura Shoji Corporation", "sakurashoji", "株式会社"),
        ("Sakura LLC", "sakura", "合同会社"),
        ("さくら商事", "サクラ商事", None),
    ],
)
def test_legal_forms_are_stripped_and_kept_as_an_attribute(written: str, key: str, form: str | None) -> None:
    assert company_name_key(written) == (key, form)


@pytest.mark.parametrize("written", ["株式会社", "(株)", "Inc.", "有限会社"])
def test_a_name_that_is_only_a_legal_form_is_not_stripped_to_nothing(written: str) -> None:
    key, _ = company_name_key(written)
    assert key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("サービス", "サ-ビス"),  # ASCII hyphen typed for the long-vowel mark
        ("サービス", "サ－ビス"),  # full-width hyphen-minus
        ("サービス", "サ‐ビス"),  # U+2010, which NFKC leaves alone
        ("サービス", "サ−ビス"),  # U+2212 minus sign
        ("サービス", "ｻｰﾋﾞｽ"),  # half-width prolonged sound mark
        ("ABC-DEF", "ABCーDEF"),  # a long-vowel mark typed as a hyphen after Latin letters
    ],
)
def test_hyphen_look_alikes_become_long_vowel_marks_after_kana_and_hyphens_elsewhere(a: str, b: str) -> None:
    assert company_name_key(a) == company_name_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("山田 太郎", "山田太郎"),
        ("山田　太郎", "山田太郎"),
        ("山田・太郎", "山田太郎"),
        ("髙橋一郎", "高橋一郎"),  # variant kanji (異体字)
        ("山﨑花子", "山崎花子"),
        ("渡邊健", "渡辺健"),
        ("渡邉健", "渡辺健"),
        ("齋藤誠", "斎藤誠"),
        ("やまだ たろう", "ヤマダタロウ"),
    ],
)
def test_person_names_fold_spaces_middle_dots_and_variant_kanji(a: str, b: str) -> None:
    assert person_name_key(a) == person_name_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ヤマダ タロウ", "やまだたろう"),
        ("ヤマダタロウ", "ﾔﾏﾀﾞﾀﾛｳ"),
        ("トーキョー", "トキョ"),  # long-vowel marks are dropped from readings
        ("キャノン", "キヤノン"),  # small kana read as large
        ("ヴィーナス", "ビナス"),
    ],
)
def test_readings_fold_script_width_long_vowels_and_small_kana(a: str, b: str) -> None:
    assert reading_key(a) == reading_key(b)


def test_a_company_reading_drops_the_reading_of_its_legal_form() -> None:
    assert reading_key("カブシキガイシャ エービーシーショウジ", company=True) == reading_key("エービーシーショウジ")
    assert reading_key("ユウゲンガイシャサクラ", company=True) == "サクラ"


@pytest.mark.parametrize(
    "written",
    [
        "03-1234-5678",
        "0312345678",
        "03(1234)5678",
        "03‐1234‐5678",  # U+2010
        "03−1234−5678",  # U+2212
        "03ー1234ー5678",  # katakana long-vowel mark, as an IME leaves it
        "03–1234–5678",  # en dash
        "03―1234―5678",  # horizontal bar
        "０３－１２３４－５６７８",
        "+81-3-1234-5678",
        "+81312345678",
    ],
)
def test_japanese_phone_numbers_in_any_notation_become_e164(written: str) -> None:
    assert phone_key(written) == "+81312345678"


def test_a_phone_number_that_does_not_parse_is_kept_as_its_digits() -> None:
    assert phone_key("内線 12") == "12"
    assert phone_key("") == ""


@pytest.mark.parametrize(
    "written", ["〒100-0001", "100-0001", "1000001", "１００－０００１", "100‐0001", "〒１００ー０００１"]
)
def test_postal_codes_with_or_without_the_mark_and_hyphen_are_seven_digits(written: str) -> None:
    assert postal_code_key(written) == "1000001"


def test_a_postal_code_that_is_not_seven_digits_is_no_key() -> None:
    assert postal_code_key("100-001") == ""


def test_email_addresses_compare_in_lower_case() -> None:
    assert email_key(" Sales.Desk@ABC-Shoji.CO.JP ") == email_key("sales.desk@abc-shoji.co.jp")


def test_corporate_numbers_in_full_width_are_the_same_number() -> None:
    assert corporate_number_key("７０００－０１２０５０００２") == "7000012050002"


@pytest.mark.parametrize(
    ("city", "street"),
    [
        ("千代田区", "千代田1-2-3"),
        ("千代田区", "千代田1丁目2番3号"),
        ("千代田区", "千代田一丁目2番地3"),
        ("千代田区", "千代田１－２－３"),
        ("千代田区", "千代田1‐2‐3"),
        ("千代田区", "千代田1−2−3"),
        ("千代田区", "千代田1の2の3"),
        ("千代田区", "千代田 1-2-3"),
        ("東京都千代田区", "千代田1-2-3"),
    ],
)
def test_street_addresses_in_any_notation_share_one_key(city: str, street: str) -> None:
    assert normalise_address("東京都", city, street) == ("東京都", "千代田区千代田1-2-3")


def test_a_prefecture_written_in_the_city_is_taken_as_the_prefecture() -> None:
    assert normalise_address(None, "大阪府大阪市北区", "梅田1-1-1") == ("大阪府", "大阪市北区梅田1-1-1")


# --- keys of a customer ---------------------------------------------------------------------------


def company(**profile: Any) -> MatchKeys:
    base: dict[str, Any] = {"name": "株式会社さくら商事", "name_kana": "サクラショウジ"}
    return MatchKeys.from_profile("company", {**base, **profile})


def person(**profile: Any) -> MatchKeys:
    base: dict[str, Any] = {"name": "佐藤 花子", "name_kana": "サトウ ハナコ"}
    return MatchKeys.from_profile("person", {**base, **profile})


ADDRESS = {"postal_code": "100-0001", "prefecture": "東京都", "city": "千代田区", "street": "千代田1-1"}


def test_match_keys_of_a_customer_are_its_normalised_profile() -> None:
    customer = fold(
        new_id(),
        [
            registered(
                name="株式会社ABC商事",
                name_kana="カブシキガイシャエービーシーショウジ",
                corporate_number=corporate_number(),
                phone="+81312345678",
                email="Sales@ABC.example.co.jp",
                url="https://www.abc.example.co.jp/",
                address=ADDRESS,
            )
        ],
    )
    keys = MatchKeys.of(customer)
    assert keys.kind == "company"
    assert keys.name_key == "abc商事"
    assert keys.legal_form == "株式会社"
    assert keys.reading_key == "エビシシヨウジ"
    assert keys.corporate_number == corporate_number()
    assert keys.phone == "+81312345678"
    assert keys.email == "sales@abc.example.co.jp"
    assert keys.domains == ("abc.example.co.jp",)
    assert keys.postal_code == "1000001"
    assert (keys.prefecture, keys.address_key) == ("東京都", "千代田区千代田1-1")


def test_a_name_written_only_in_kana_is_its_own_reading() -> None:
    assert (
        person(name="ヤマダ タロウ", name_kana=None).reading_key
        == person(name="山田太郎", name_kana="ヤマダタロウ").reading_key
    )


def test_free_mail_domains_say_nothing_about_a_company() -> None:
    assert company(email="sakura.shoji@gmail.com").domains == ()


# --- scores ---------------------------------------------------------------------------------------


def how(keys_a: MatchKeys, keys_b: MatchKeys) -> dict[str, str]:
    return {r["field"]: r["how"] for r in score(keys_a, keys_b).reasons}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            company(corporate_number=corporate_number()),
            company(name="全く別の名前", corporate_number=corporate_number()),
        ),
        (company(phone="03-1234-5678"), company(name="さくら商事（株）", name_kana=None, phone="0312345678")),
        (person(email="Hanako@Example.JP"), person(name="佐藤花子", email="hanako@example.jp")),
        (person(phone="090-1234-5678"), person(name="さとう はなこ", name_kana=None, phone="09012345678")),
    ],
)
def test_an_exact_corporate_number_phone_or_email_match_scores_at_least_097(a: MatchKeys, b: MatchKeys) -> None:
    assert score(a, b).score >= 0.97


def test_identifier_matches_rank_above_every_match_without_one() -> None:
    same_everything_else = score(
        company(address=ADDRESS, url="https://sakura.example.co.jp"),
        company(address=ADDRESS, url="https://sakura.example.co.jp"),
    )
    shared_phone = score(company(phone="03-1234-5678"), company(phone="03-1234-5678"))
    assert same_everything_else.score < 0.97 <= shared_phone.score


def test_different_corporate_numbers_strongly_penalise_an_otherwise_identical_company() -> None:
    a = company(corporate_number=corporate_number("111111111111"), address=ADDRESS, phone="03-1234-5678")
    b = company(corporate_number=corporate_number("222222222222"), address=ADDRESS, phone="03-1234-5678")
    match = score(a, b)
    assert match.score < 0.5
    assert {"field": "corporate_number", "how": "different", "similarity": 0.0} in match.reasons


def test_a_company_and_a_person_are_never_a_likely_match() -> None:
    a = MatchKeys.from_profile("company", {"name": "さくら", "phone": "03-1234-5678"})
    b = MatchKeys.from_profile("person", {"name": "さくら", "phone": "03-1234-5678"})
    assert score(a, b).score < 0.1


def test_a_renamed_company_with_the_same_corporate_number_is_still_one_entity() -> None:
    number = corporate_number()
    assert (
        score(
            company(corporate_number=number), company(name="株式会社SKR", name_kana=None, corporate_number=number)
        ).score
        >= 0.97
    )


def test_kanji_and_kana_names_match_through_the_stored_reading() -> None:
    a = person(name="山田 太郎", name_kana="ヤマダ タロウ", address=ADDRESS, birth_date="1980-01-02")
    b = person(name="ヤマダタロウ", name_kana=None, address=ADDRESS, birth_date="1980-01-02")
    match = score(a, b)
    assert match.score >= 0.8
    assert how(a, b)["name_kana"] == "normalised"


def test_a_given_name_written_in_kana_matches_through_the_reading() -> None:
    a = person(name="山田 太郎", name_kana="ヤマダ タロウ", address=ADDRESS)
    b = person(name="山田 たろう", name_kana=None, address=ADDRESS)
    assert score(a, b).score >= 0.8


def test_reasons_tell_exact_from_normalised_from_fuzzy() -> None:
    a = company(name="株式会社さくら商事", phone="03-1234-5678", address=ADDRESS)
    assert how(a, company(name="株式会社さくら商事", phone="03-1234-5678"))["name"] == "exact"
    assert how(a, company(name="さくら商事㈱", phone="03-1234-5678"))["name"] == "normalised"
    typo = company(name="さくら商時株式会社", name_kana=None, phone="03-1234-5678")
    assert how(a, typo)["name"] == "fuzzy"
    assert how(a, typo)["phone"] == "exact"


def test_scores_are_symmetric_and_a_customer_matches_itself_fully() -> None:
    a = company(phone="03-1234-5678", address=ADDRESS)
    b = company(name="さくら商事(株)", address={**ADDRESS, "street": "千代田1丁目1番"})
    assert score(a, b).score == score(b, a).score
    assert score(a, a).score >= 0.99


def test_family_members_sharing_a_landline_and_address_are_not_a_likely_match() -> None:
    a = person(
        name="佐藤 花子", name_kana="サトウ ハナコ", phone="03-1234-5678", address=ADDRESS, birth_date="1960-01-01"
    )
    b = person(name="佐藤 太郎", name_kana="サトウ タロウ", phone="03-1234-5678", address=ADDRESS)
    assert score(a, b).score < 0.5


def test_namesakes_with_different_birth_dates_are_not_a_likely_match() -> None:
    assert score(person(birth_date="1980-01-01"), person(birth_date="1990-05-05")).score < 0.1


def test_two_records_sharing_only_a_common_name_stay_below_the_default_threshold() -> None:
    a = person(address=ADDRESS, phone="090-1111-2222")
    b = person(address={**ADDRESS, "postal_code": "530-0001", "prefecture": "大阪府", "city": "大阪市北区"})
    assert score(a, b).score < 0.8


def test_a_new_family_name_with_the_same_given_name_and_birth_date_is_a_likely_match() -> None:
    a = person(name="佐藤 花子", name_kana="サトウ ハナコ", birth_date="1985-06-15", address=ADDRESS)
    b = person(name="鈴木 花子", name_kana="スズキ ハナコ", birth_date="1985-06-15", address=ADDRESS)
    assert score(a, b).score >= 0.8
    assert how(a, b)["given_name"] == "normalised"


def test_sister_companies_in_one_building_behind_one_switchboard_are_not_a_likely_match() -> None:
    a = company(name="株式会社さくら商事", name_kana="サクラショウジ", phone="03-1234-5678", address=ADDRESS)
    b = company(name="株式会社さくら物流", name_kana="サクラブツリュウ", phone="03-1234-5678", address=ADDRESS)
    assert score(a, b).score < 0.8


# --- blocking and bulk detection --------------------------------------------------------------------


def test_blocking_keys_include_identifiers_and_name_and_postal_code_combinations() -> None:
    keys = blocking_keys(company(corporate_number=corporate_number(), phone="03-1234-5678", address=ADDRESS))
    assert f"c:{corporate_number()}" in keys
    assert "p:+81312345678" in keys
    assert "z:c:1000001:サク" in keys
    assert "n:c:サクラ商事" in keys


def test_only_customers_sharing_a_blocking_key_are_paired() -> None:
    keys = [
        company(phone="03-1234-5678"),
        company(name="さくら商事(株)", phone="0312345678"),
        person(name="全然 別人", name_kana="ゼンゼン ベツジン", phone="090-9999-9999"),
    ]
    assert candidate_pairs(keys) == {(0, 1)}


def test_an_oversized_block_pairs_neighbours_only() -> None:
    keys = [MatchKeys.from_profile("person", {"name": f"佐藤 {i:03d}", "phone": "03-1234-5678"}) for i in range(200)]
    pairs = candidate_pairs(keys, max_block=50, window=5)
    assert len(pairs) <= 200 * 5
    assert (0, 1) in pairs


def test_find_duplicates_lists_pairs_above_the_threshold_best_first() -> None:
    keys = [
        company(phone="03-1234-5678"),
        person(),
        company(name="さくら商事(株)", phone="0312345678"),
        person(name="佐藤花子", address=ADDRESS),
        person(name="さとう はなこ", name_kana=None, address=ADDRESS),
    ]
    found = find_duplicates(keys, 0.8)
    assert next((i, j) for _, i, j in found) == (0, 2)
    assert [s for s, _, _ in found] == sorted((s for s, _, _ in found), reverse=True)
    assert all(s >= 0.8 for s, _, _ in found)


# --- properties -----------------------------------------------------------------------------------

text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
        st.sampled_from(list("株式会社有限(株)㈱㈲（）カブシキガイシャｶﾌﾞｼｷｶﾞｲｼｬさくらー‐−–ｰ-・ 　ＡＢＣabc123１２３")),
    ),
    max_size=30,
)


@for_all(text)
@settings(max_examples=400)
def test_text_normalisation_is_idempotent(raw: str) -> None:
    assert normalise_text(normalise_text(raw)) == normalise_text(raw)


@for_all(text)
@settings(max_examples=400)
def test_name_keys_are_idempotent(raw: str) -> None:
    key, _ = company_name_key(raw)
    assert company_name_key(key)[0] == key
    assert person_name_key(person_name_key(raw)) == person_name_key(raw)
    assert reading_key(reading_key(raw)) == reading_key(raw)


@for_all(text, text, text)
@settings(max_examples=200)
def test_address_keys_are_idempotent(prefecture: str, city: str, street: str) -> None:
    pref, key = normalise_address(prefecture, city, street)
    assert normalise_address(pref, key, None) == (pref, key)


profiles = st.fixed_dictionaries(
    {
        "name": st.sampled_from(
            ["株式会社さくら商事", "さくら商事(株)", "佐藤 花子", "佐藤花子", "サトウ ハナコ", "鈴木 花子"]
        ),
        "name_kana": st.sampled_from([None, "サトウ ハナコ", "サクラショウジ", "スズキ ハナコ"]),
        "phone": st.sampled_from([None, "03-1234-5678", "090-1234-5678"]),
        "email": st.sampled_from([None, "a@example.jp", "A@EXAMPLE.JP", "b@example.jp"]),
        "birth_date": st.sampled_from([None, "1980-01-01", "1990-02-02"]),
        "corporate_number": st.sampled_from([None, corporate_number("111111111111"), corporate_number()]),
        "address": st.sampled_from([None, ADDRESS, {**ADDRESS, "street": "千代田1丁目1番"}]),
    }
)


@for_all(st.sampled_from(["company", "person"]), profiles, st.sampled_from(["company", "person"]), profiles)
@settings(max_examples=300)
def test_scores_are_symmetric_and_between_zero_and_one(
    kind_a: str, a: dict[str, Any], kind_b: str, b: dict[str, Any]
) -> None:
    keys_a, keys_b = MatchKeys.from_profile(kind_a, a), MatchKeys.from_profile(kind_b, b)
    assert 0.0 <= score(keys_a, keys_b).score <= 1.0
    assert score(keys_a, keys_b).score == score(keys_b, keys_a).score


KATAKANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン"


@st.composite
def company_name_variants(draw: st.DrawFn) -> tuple[str, str]:
    """A company name and the same name written another way (form, place, width, kana, spaces)."""
    core = draw(st.text(alphabet=KATAKANA + "商事物産工業ABCXYZ", min_size=2, max_size=8))
    form = draw(st.sampled_from(["株式会社", "(株)", "㈱", "（株）", "カブシキガイシャ"]))
    front = draw(st.booleans())
    written = draw(
        st.sampled_from(
            [
                lambda s: s,
                lambda s: s.translate(str.maketrans("ABCXYZ", "ＡＢＣＸＹＺ")),
                lambda s: "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in s),  # hiragana
                lambda s: s[:1] + " " + s[1:],
                lambda s: s[:1] + "・" + s[1:],
                lambda s: s.lower(),
            ]
        )
    )(core)
    sep = draw(st.sampled_from(["", " ", "　"]))
    variant = f"{form}{sep}{written}" if front else f"{written}{sep}{form}"
    return f"株式会社{core}", variant


@for_all(company_name_variants())
@settings(max_examples=400)
def test_variants_of_one_company_name_normalise_equal(names: tuple[str, str]) -> None:
    original, variant = names
    assert company_name_key(variant)[0] == company_name_key(original)[0]


@for_all(
    st.sampled_from(["佐藤", "髙橋", "渡邊", "山﨑", "齋藤"]),
    st.sampled_from(["花子", "太郎", "一郎"]),
    st.sampled_from(["", " ", "　", "・"]),
)
def test_variants_of_one_person_name_normalise_equal(family: str, given: str, sep: str) -> None:
    plain = family.translate(str.maketrans("髙邊﨑齋", "高辺崎斎"))
    assert person_name_key(f"{family}{sep}{given}") == person_name_key(f"{plain}{given}")
