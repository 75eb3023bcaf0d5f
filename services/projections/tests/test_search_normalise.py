"""Folding names for search (pure)."""

from crm_projections.search.normalise import bigrams, fold, query_bigrams, search_text


def test_folding_makes_width_kana_case_and_legal_form_variants_equal() -> None:
    assert fold("株式会社ＡＢＣ商事") == fold("(株)abc商事") == fold("㈱ＡＢＣ商事") == fold("ABC 商事 株式会社")
    assert fold("えーびーしー") == fold("ｴｰﾋﾞｰｼｰ") == fold("エービーシー")
    assert fold("キャノン") == fold("キヤノン")
    assert fold("株式会社") == "株式会社"


def test_a_stored_text_keeps_name_reading_and_legal_forms_apart() -> None:
    text = search_text("株式会社ABC商事", "カブシキガイシャ エービーシーショウジ")
    assert text.split("\x1f") == ["abc商事", "エビシシヨウジ", "株式会社"]
    assert "事エ" not in bigrams(text)
    assert set(query_bigrams(fold("BC商"))) <= set(bigrams(text))
    assert query_bigrams(fold("商")) == []
