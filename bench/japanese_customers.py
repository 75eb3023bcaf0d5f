"""A seedable generator of Japanese customers with labelled duplicates (名寄せ ground truth).

`generate(n, duplicate_rate, seed)` returns registration bodies as people type them (表記揺れ and
all), the customers the write side folds from them, and the pairs of records that are one customer.

Duplicates are copies of a customer with a few variations each: 株式会社/(株)/㈱ placement,
full/half width, hyphen look-alikes, hiragana/katakana readings, spaces, variant kanji, an IME
homophone or a one-character typo, e-mail case, phone notation, an address written another way,
and some real change (moved, new phone, dropped 法人番号). Hard non-duplicates are generated on
purpose: family members sharing an address and landline, sister companies in one building, and
the homonyms that common names produce by themselves.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import combinations
from typing import Any
from uuid import UUID

import jaconv
import phonenumbers
from crm_contacts.domain.commands import RegisterCustomer
from crm_contacts.domain.customer import Customer, decide, fold

NOW = datetime(2025, 4, 1, 3, 0, tzinfo=UTC)

# (kanji, katakana, romaji)
SURNAMES = [
    ("佐藤", "サトウ", "sato"), ("鈴木", "スズキ", "suzuki"), ("高橋", "タカハシ", "takahashi"),
    ("田中", "タナカ", "tanaka"), ("伊藤", "イトウ", "ito"), ("渡辺", "ワタナベ", "watanabe"),
    ("山本", "ヤマモト", "yamamoto"), ("中村", "ナカムラ", "nakamura"), ("小林", "コバヤシ", "kobayashi"),
    ("加藤", "カトウ", "kato"), ("吉田", "ヨシダ", "yoshida"), ("山田", "ヤマダ", "yamada"),
    ("佐々木", "ササキ", "sasaki"), ("山口", "ヤマグチ", "yamaguchi"), ("松本", "マツモト", "matsumoto"),
    ("井上", "イノウエ", "inoue"), ("木村", "キムラ", "kimura"), ("林", "ハヤシ", "hayashi"),
    ("斎藤", "サイトウ", "saito"), ("清水", "シミズ", "shimizu"), ("山崎", "ヤマザキ", "yamazaki"),
    ("森", "モリ", "mori"), ("池田", "イケダ", "ikeda"), ("橋本", "ハシモト", "hashimoto"),
    ("阿部", "アベ", "abe"), ("石川", "イシカワ", "ishikawa"), ("山下", "ヤマシタ", "yamashita"),
    ("中島", "ナカジマ", "nakajima"), ("石井", "イシイ", "ishii"), ("小川", "オガワ", "ogawa"),
    ("前田", "マエダ", "maeda"), ("岡田", "オカダ", "okada"), ("長谷川", "ハセガワ", "hasegawa"),
    ("藤田", "フジタ", "fujita"), ("後藤", "ゴトウ", "goto"), ("近藤", "コンドウ", "kondo"),
    ("村上", "ムラカミ", "murakami"), ("遠藤", "エンドウ", "endo"), ("青木", "アオキ", "aoki"),
    ("坂本", "サカモト", "sakamoto"), ("斉藤", "サイトウ", "saito"), ("福田", "フクダ", "fukuda"),
    ("太田", "オオタ", "ota"), ("西村", "ニシムラ", "nishimura"), ("藤井", "フジイ", "fujii"),
    ("金子", "カネコ", "kaneko"), ("岡本", "オカモト", "okamoto"), ("藤原", "フジワラ", "fujiwara"),
    ("中野", "ナカノ", "nakano"), ("三浦", "ミウラ", "miura"), ("原田", "ハラダ", "harada"),
    ("中川", "ナカガワ", "nakagawa"), ("松田", "マツダ", "matsuda"), ("竹内", "タケウチ", "takeuchi"),
    ("小野", "オノ", "ono"), ("田村", "タムラ", "tamura"), ("中山", "ナカヤマ", "nakayama"),
    ("和田", "ワダ", "wada"), ("石田", "イシダ", "ishida"), ("森田", "モリタ", "morita"),
    ("上田", "ウエダ", "ueda"), ("原", "ハラ", "hara"), ("内田", "ウチダ", "uchida"),
    ("柴田", "シバタ", "shibata"), ("酒井", "サカイ", "sakai"), ("宮崎", "ミヤザキ", "miyazaki"),
    ("横山", "ヨコヤマ", "yokoyama"), ("高木", "タカギ", "takagi"), ("安藤", "アンドウ", "ando"),
    ("宮本", "ミヤモト", "miyamoto"), ("大野", "オオノ", "ono"), ("小島", "コジマ", "kojima"),
    ("谷口", "タニグチ", "taniguchi"), ("工藤", "クドウ", "kudo"), ("今井", "イマイ", "imai"),
    ("高田", "タカダ", "takada"), ("増田", "マスダ", "masuda"), ("丸山", "マルヤマ", "maruyama"),
    ("杉山", "スギヤマ", "sugiyama"), ("村田", "ムラタ", "murata"), ("大塚", "オオツカ", "otsuka"),
    ("新井", "アライ", "arai"), ("小山", "コヤマ", "koyama"), ("平野", "ヒラノ", "hirano"),
    ("藤本", "フジモト", "fujimoto"), ("河野", "コウノ", "kono"), ("上野", "ウエノ", "ueno"),
    ("野口", "ノグチ", "noguchi"), ("武田", "タケダ", "takeda"), ("松井", "マツイ", "matsui"),
    ("千葉", "チバ", "chiba"), ("岩崎", "イワサキ", "iwasaki"), ("菅原", "スガワラ", "sugawara"),
    ("木下", "キノシタ", "kinoshita"), ("久保", "クボ", "kubo"), ("佐野", "サノ", "sano"),
    ("野村", "ノムラ", "nomura"), ("松尾", "マツオ", "matsuo"), ("菊地", "キクチ", "kikuchi"),
    ("杉本", "スギモト", "sugimoto"), ("市川", "イチカワ", "ichikawa"), ("古川", "フルカワ", "furukawa"),
    ("大西", "オオニシ", "onishi"), ("島田", "シマダ", "shimada"), ("水野", "ミズノ", "mizuno"),
    ("桜井", "サクライ", "sakurai"), ("高野", "タカノ", "takano"), ("渡部", "ワタベ", "watabe"),
    ("吉川", "ヨシカワ", "yoshikawa"), ("山内", "ヤマウチ", "yamauchi"), ("西田", "ニシダ", "nishida"),
    ("飯田", "イイダ", "iida"), ("菅野", "カンノ", "kanno"), ("浜田", "ハマダ", "hamada"),
    ("北村", "キタムラ", "kitamura"), ("松下", "マツシタ", "matsushita"), ("川口", "カワグチ", "kawaguchi"),
    ("宮田", "ミヤタ", "miyata"), ("大橋", "オオハシ", "ohashi"), ("中西", "ナカニシ", "nakanishi"),
    ("辻", "ツジ", "tsuji"), ("関", "セキ", "seki"), ("永井", "ナガイ", "nagai"), ("荒木", "アラキ", "araki"),
    ("沢田", "サワダ", "sawada"), ("広瀬", "ヒロセ", "hirose"), ("富田", "トミタ", "tomita"),
]  # fmt: skip
GIVEN_FEMALE = [
    ("花子", "ハナコ", "hanako"), ("陽子", "ヨウコ", "yoko"), ("恵子", "ケイコ", "keiko"), ("裕子", "ユウコ", "yuko"),
    ("美咲", "ミサキ", "misaki"), ("美紀", "ミキ", "miki"), ("真由美", "マユミ", "mayumi"), ("直美", "ナオミ", "naomi"),
    ("由美子", "ユミコ", "yumiko"), ("智子", "トモコ", "tomoko"), ("久美子", "クミコ", "kumiko"), ("明美", "アケミ", "akemi"),
    ("さくら", "サクラ", "sakura"), ("陽菜", "ヒナ", "hina"), ("結衣", "ユイ", "yui"), ("葵", "アオイ", "aoi"),
    ("愛", "アイ", "ai"), ("舞", "マイ", "mai"), ("彩", "アヤ", "aya"), ("千尋", "チヒロ", "chihiro"),
    ("麻衣", "マイ", "mai"), ("理恵", "リエ", "rie"), ("香織", "カオリ", "kaori"), ("恵美", "エミ", "emi"),
    ("幸子", "サチコ", "sachiko"), ("和子", "カズコ", "kazuko"), ("洋子", "ヨウコ", "yoko"), ("京子", "キョウコ", "kyoko"),
    ("優子", "ユウコ", "yuko"), ("奈々", "ナナ", "nana"), ("沙織", "サオリ", "saori"), ("翔子", "ショウコ", "shoko"),
    ("美穂", "ミホ", "miho"), ("亜希子", "アキコ", "akiko"), ("千夏", "チナツ", "chinatsu"), ("遥", "ハルカ", "haruka"),
    ("凛", "リン", "rin"), ("紗希", "サキ", "saki"), ("瞳", "ヒトミ", "hitomi"), ("静香", "シズカ", "shizuka"),
]  # fmt: skip
GIVEN_MALE = [
    ("太郎", "タロウ", "taro"), ("一郎", "イチロウ", "ichiro"), ("健一", "ケンイチ", "kenichi"), ("誠", "マコト", "makoto"),
    ("浩", "ヒロシ", "hiroshi"), ("大輔", "ダイスケ", "daisuke"), ("翔太", "ショウタ", "shota"), ("拓也", "タクヤ", "takuya"),
    ("健太", "ケンタ", "kenta"), ("直樹", "ナオキ", "naoki"), ("和也", "カズヤ", "kazuya"), ("達也", "タツヤ", "tatsuya"),
    ("隆", "タカシ", "takashi"), ("学", "マナブ", "manabu"), ("修", "オサム", "osamu"), ("茂", "シゲル", "shigeru"),
    ("清", "キヨシ", "kiyoshi"), ("進", "ススム", "susumu"), ("蓮", "レン", "ren"), ("悠真", "ユウマ", "yuma"),
    ("陽翔", "ハルト", "haruto"), ("大和", "ヤマト", "yamato"), ("湊", "ミナト", "minato"), ("颯太", "ソウタ", "sota"),
    ("亮", "リョウ", "ryo"), ("淳", "ジュン", "jun"), ("剛", "ツヨシ", "tsuyoshi"), ("博之", "ヒロユキ", "hiroyuki"),
    ("正樹", "マサキ", "masaki"), ("雅人", "マサト", "masato"), ("康弘", "ヤスヒロ", "yasuhiro"), ("秀樹", "ヒデキ", "hideki"),
    ("俊介", "シュンスケ", "shunsuke"), ("慎也", "シンヤ", "shinya"), ("智也", "トモヤ", "tomoya"), ("裕太", "ユウタ", "yuta"),
    ("光", "ヒカル", "hikaru"), ("勇気", "ユウキ", "yuki"), ("翼", "ツバサ", "tsubasa"), ("圭", "ケイ", "kei"),
]  # fmt: skip
# Same reading, another kanji: what an IME conversion slip leaves in a record.
HOMOPHONES = {
    "裕子": "祐子", "優子": "裕子", "美紀": "美樹", "恵子": "啓子", "和也": "和哉", "健一": "健市",
    "直樹": "直紀", "智子": "知子", "陽子": "洋子", "正樹": "政樹", "達也": "竜也", "博之": "弘之",
    "斎藤": "斉藤", "斉藤": "齊藤", "渡辺": "渡邊", "高橋": "髙橋", "山崎": "山﨑", "菊地": "菊池",
    "浜田": "濱田", "沢田": "澤田", "島田": "嶋田", "桜井": "櫻井", "広瀬": "廣瀬", "富田": "冨田",
    "電機": "電気", "工業": "興業", "製作所": "制作所", "化学": "科学", "精機": "精器", "商会": "商界",
    "通商": "通称", "開発": "解発", "印刷": "印册",
}  # fmt: skip
# Variant kanji (異体字) that a duplicate may be written with.
ITAIJI = {"高": "髙", "崎": "﨑", "辺": "邊", "斎": "齋", "沢": "澤", "浜": "濱", "島": "嶋", "桜": "櫻", "国": "國",
          "広": "廣", "恵": "惠", "真": "眞", "富": "冨", "竜": "龍", "瀬": "瀨"}  # fmt: skip

HEADS = [
    ("さくら", "サクラ", "sakura"), ("東洋", "トウヨウ", "toyo"), ("日本", "ニホン", "nihon"), ("大和", "ヤマト", "yamato"),
    ("富士", "フジ", "fuji"), ("北斗", "ホクト", "hokuto"), ("青葉", "アオバ", "aoba"), ("みらい", "ミライ", "mirai"),
    ("アルファ", "アルファ", "alpha"), ("テクノ", "テクノ", "techno"), ("グローバル", "グローバル", "global"),
    ("ABC", "エービーシー", "abc"), ("NKS", "エヌケーエス", "nks"), ("サン", "サン", "sun"), ("朝日", "アサヒ", "asahi"),
    ("昭和", "ショウワ", "showa"), ("中央", "チュウオウ", "chuo"), ("太平洋", "タイヘイヨウ", "taiheiyo"),
    ("ひかり", "ヒカリ", "hikari"), ("丸和", "マルワ", "maruwa"), ("山陽", "サンヨウ", "sanyo"), ("関東", "カントウ", "kanto"),
    ("東海", "トウカイ", "tokai"), ("北陸", "ホクリク", "hokuriku"), ("九州", "キュウシュウ", "kyushu"),
    ("瑞穂", "ミズホ", "mizuho"), ("日進", "ニッシン", "nisshin"), ("協和", "キョウワ", "kyowa"), ("共栄", "キョウエイ", "kyoei"),
    ("大成", "タイセイ", "taisei"), ("三和", "サンワ", "sanwa"), ("新日本", "シンニホン", "shinnihon"), ("東亜", "トウア", "toa"),
    ("平和", "ヘイワ", "heiwa"), ("明星", "ミョウジョウ", "myojo"), ("ひまわり", "ヒマワリ", "himawari"),
    ("あおぞら", "アオゾラ", "aozora"), ("ユニバース", "ユニバース", "universe"), ("エコー", "エコー", "echo"),
    ("ネクスト", "ネクスト", "next"), ("スマイル", "スマイル", "smile"), ("リバティ", "リバティ", "liberty"),
    ("オリオン", "オリオン", "orion"), ("日東", "ニットウ", "nitto"), ("若葉", "ワカバ", "wakaba"), ("双葉", "フタバ", "futaba"),
    ("千代田", "チヨダ", "chiyoda"), ("浪速", "ナニワ", "naniwa"), ("京阪", "ケイハン", "keihan"), ("湘南", "ショウナン", "shonan"),
    ("白鳥", "シラトリ", "shiratori"), ("黒潮", "クロシオ", "kuroshio"), ("金剛", "コンゴウ", "kongo"), ("銀河", "ギンガ", "ginga"),
    ("みどり", "ミドリ", "midori"), ("さつき", "サツキ", "satsuki"), ("かえで", "カエデ", "kaede"), ("トーワ", "トーワ", "towa"),
    ("セントラル", "セントラル", "central"), ("パシフィック", "パシフィック", "pacific"), ("ダイヤ", "ダイヤ", "daiya"),
    ("KSP", "ケーエスピー", "ksp"), ("JTC", "ジェイティーシー", "jtc"), ("エムズ", "エムズ", "ms"), ("富国", "フコク", "fukoku"),
    ("相模", "サガミ", "sagami"), ("武蔵", "ムサシ", "musashi"), ("信濃", "シナノ", "shinano"), ("阿波", "アワ", "awa"),
    ("出雲", "イズモ", "izumo"), ("筑紫", "ツクシ", "tsukushi"), ("琉球", "リュウキュウ", "ryukyu"), ("蝦夷", "エゾ", "ezo"),
    ("鳳凰", "ホウオウ", "hoo"), ("麒麟", "キリン", "kirin"), ("不二", "フジ", "fuji2"), ("三光", "サンコウ", "sanko"),
    ("東邦", "トウホウ", "toho"), ("西部", "セイブ", "seibu"), ("北星", "ホクセイ", "hokusei"), ("南海", "ナンカイ", "nankai"),
]  # fmt: skip
MIDS = [
    ("東京", "トウキョウ", "tokyo"), ("大阪", "オオサカ", "osaka"), ("関西", "カンサイ", "kansai"), ("中部", "チュウブ", "chubu"),
    ("ジャパン", "ジャパン", "japan"), ("インターナショナル", "インターナショナル", "intl"), ("総合", "ソウゴウ", "sogo"),
    ("第一", "ダイイチ", "daiichi"), ("トータル", "トータル", "total"), ("ライフ", "ライフ", "life"),
]  # fmt: skip
WORDS = [
    ("商事", "ショウジ", "shoji"), ("物産", "ブッサン", "bussan"), ("工業", "コウギョウ", "kogyo"),
    ("製作所", "セイサクショ", "seisakusho"), ("電機", "デンキ", "denki"), ("建設", "ケンセツ", "kensetsu"),
    ("不動産", "フドウサン", "fudosan"), ("運輸", "ウンユ", "unyu"), ("食品", "ショクヒン", "shokuhin"),
    ("化学", "カガク", "kagaku"), ("システム", "システム", "system"), ("ソリューションズ", "ソリューションズ", "solutions"),
    ("テクノロジー", "テクノロジー", "technology"), ("産業", "サンギョウ", "sangyo"), ("印刷", "インサツ", "insatsu"),
    ("製薬", "セイヤク", "seiyaku"), ("精機", "セイキ", "seiki"), ("通商", "ツウショウ", "tsusho"), ("電子", "デンシ", "denshi"),
    ("設計", "セッケイ", "sekkei"), ("開発", "カイハツ", "kaihatsu"), ("ホールディングス", "ホールディングス", "hd"),
    ("サービス", "サービス", "service"), ("エンジニアリング", "エンジニアリング", "engineering"),
    ("ネットワークス", "ネットワークス", "networks"), ("薬品", "ヤクヒン", "yakuhin"), ("倉庫", "ソウコ", "soko"),
    ("物流", "ブツリュウ", "butsuryu"), ("コンサルティング", "コンサルティング", "consulting"), ("商会", "ショウカイ", "shokai"),
    ("製菓", "セイカ", "seika"), ("酒造", "シュゾウ", "shuzo"), ("硝子", "ガラス", "glass"), ("鉄工", "テッコウ", "tekko"),
    ("木材", "モクザイ", "mokuzai"), ("住設", "ジュウセツ", "jusetsu"), ("電設", "デンセツ", "densetsu"),
    ("観光", "カンコウ", "kanko"), ("交通", "コウツウ", "kotsu"), ("ホーム", "ホーム", "home"), ("メディカル", "メディカル", "medical"),
    ("フーズ", "フーズ", "foods"), ("興産", "コウサン", "kosan"), ("海運", "カイウン", "kaiun"), ("繊維", "センイ", "seni"),
]  # fmt: skip
# Legal form → (probability, name words that fit it). 株式会社 and 有限会社 take WORDS.
FORMS: list[tuple[str, str, float, list[tuple[str, str, str]] | None]] = [
    ("株式会社", "カブシキガイシャ", 0.70, None),
    ("有限会社", "ユウゲンガイシャ", 0.12, None),
    ("合同会社", "ゴウドウガイシャ", 0.07, None),
    ("一般社団法人", "イッパンシャダンホウジン", 0.03,
     [("協会", "キョウカイ", "kyokai"), ("機構", "キコウ", "kiko"), ("振興会", "シンコウカイ", "shinkokai")]),
    ("医療法人", "イリョウホウジン", 0.03,
     [("会", "カイ", "kai"), ("病院", "ビョウイン", "hospital"), ("クリニック", "クリニック", "clinic")]),
    ("社会福祉法人", "シャカイフクシホウジン", 0.02, [("福祉会", "フクシカイ", "fukushikai"), ("会", "カイ", "kai")]),
    ("学校法人", "ガッコウホウジン", 0.015, [("学園", "ガクエン", "gakuen"), ("学院", "ガクイン", "gakuin")]),
    ("特定非営利活動法人", "トクテイヒエイリカツドウホウジン", 0.015,
     [("ネット", "ネット", "net"), ("支援センター", "シエンセンター", "support"), ("の会", "ノカイ", "nokai")]),
]  # fmt: skip
# How a legal form may be written: (株) and ㈱ only for the forms that have them.
ABBREVIATIONS = {"株式会社": ["(株)", "㈱", "（株）"], "有限会社": ["(有)", "㈲", "（有）"], "合同会社": ["(同)"]}
ENGLISH = {"株式会社": ["Co., Ltd.", "Co.,Ltd.", "Inc.", "K.K."], "合同会社": ["LLC", "G.K."], "有限会社": ["Y.K."]}

# Prefecture → (share of customers, landline area codes, cities, first digit pair of postal codes)
PREFS: dict[str, tuple[float, list[str], list[str], str]] = {
    "東京都": (0.22, ["03"], ["千代田区", "中央区", "港区", "新宿区", "渋谷区", "品川区", "世田谷区", "豊島区", "台東区", "江東区"], "1"),
    "大阪府": (0.10, ["06"], ["大阪市北区", "大阪市中央区", "大阪市西区", "堺市堺区", "豊中市", "吹田市"], "5"),
    "神奈川県": (0.09, ["045", "044"], ["横浜市西区", "横浜市中区", "川崎市川崎区", "相模原市中央区", "藤沢市"], "2"),
    "愛知県": (0.08, ["052"], ["名古屋市中区", "名古屋市中村区", "名古屋市東区", "豊田市", "岡崎市"], "4"),
    "埼玉県": (0.05, ["048"], ["さいたま市大宮区", "さいたま市浦和区", "川口市", "川越市"], "3"),
    "千葉県": (0.05, ["043", "047"], ["千葉市中央区", "船橋市", "松戸市", "柏市"], "2"),
    "北海道": (0.05, ["011"], ["札幌市中央区", "札幌市北区", "旭川市", "函館市"], "0"),
    "福岡県": (0.05, ["092"], ["福岡市博多区", "福岡市中央区", "北九州市小倉北区", "久留米市"], "8"),
    "兵庫県": (0.04, ["078"], ["神戸市中央区", "姫路市", "西宮市", "尼崎市"], "6"),
    "京都府": (0.03, ["075"], ["京都市中京区", "京都市下京区", "宇治市"], "6"),
    "静岡県": (0.03, ["054", "053"], ["静岡市葵区", "浜松市中区", "沼津市"], "4"),
    "広島県": (0.03, ["082"], ["広島市中区", "福山市", "呉市"], "7"),
    "宮城県": (0.03, ["022"], ["仙台市青葉区", "仙台市宮城野区", "石巻市"], "9"),
    "新潟県": (0.02, ["025"], ["新潟市中央区", "長岡市"], "9"),
    "岡山県": (0.02, ["086"], ["岡山市北区", "倉敷市"], "7"),
    "熊本県": (0.02, ["096"], ["熊本市中央区", "八代市"], "8"),
    "長野県": (0.02, ["026"], ["長野市", "松本市"], "3"),
    "沖縄県": (0.02, ["098"], ["那覇市", "沖縄市"], "9"),
    "石川県": (0.02, ["076"], ["金沢市", "小松市"], "9"),
    "鹿児島県": (0.02, ["099"], ["鹿児島市", "霧島市"], "8"),
}  # fmt: skip
TOWNS = [
    "本町", "栄町", "中央", "緑町", "旭町", "幸町", "東町", "西町", "南町", "北町", "大手町", "桜町", "新町", "元町",
    "松原", "青葉台", "若葉", "日の出町", "港町", "駅前", "曙町", "錦町", "寿町", "宮前", "平和町", "昭和町", "大通",
    "城東", "城西", "泉町", "丸の内", "神田", "梅田", "天神", "栄", "中島", "高砂", "朝日町", "住吉町", "富士見",
    "霞ケ丘", "春日", "八幡", "白山", "山王", "清水", "一番町", "二番町", "柳町", "紺屋町",
]  # fmt: skip
BUILDINGS = ["ビル", "センタービル", "第一ビル", "第二ビル", "タワー", "ハイツ", "プラザ", "会館"]
OCCUPATIONS = ["会社員", "公務員", "自営業", "パート", "学生", "医師", "教員", "看護師", "主婦", "エンジニア", "無職"]
INDUSTRIES = ["製造業", "卸売業", "小売業", "建設業", "情報通信業", "運輸業", "不動産業", "医療・福祉", "サービス業"]
PERSON_MAIL = ["gmail.com", "yahoo.co.jp", "icloud.com", "docomo.ne.jp", "ezweb.ne.jp", "softbank.ne.jp", "outlook.jp"]
MOBILE_PREFIXES = ("090", "080", "070")
DASHES = ["-", "‐", "−", "ー", "–", "―", "－"]


@dataclass
class LabelledSet:
    """Registration bodies as typed, the customers folded from them, and which records are one customer."""

    bodies: list[dict[str, Any]]
    customers: list[Customer]
    entity: list[int]
    pairs: set[tuple[int, int]]
    variations: list[list[str]] = field(default_factory=list)
    hard_negatives: list[str] = field(default_factory=list)
    rejected: int = 0


def corporate_number(rng: random.Random) -> str:
    """A random 法人番号 with a valid check digit."""
    base = "".join(rng.choice("0123456789") for _ in range(12))
    total = sum(int(d) * (2 if n % 2 == 0 else 1) for n, d in enumerate(reversed(base), start=1))
    return f"{9 - total % 9}{base}"


def _stable(text: str, modulo: int) -> int:
    return zlib.crc32(text.encode()) % modulo


def _postal(pref: str, city: str, town: str) -> str:
    head = PREFS[pref][3]
    return f"{head}{_stable(pref + city, 100):02d}{_stable(city + town, 10000):04d}"


def _valid_phone(number: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, "JP"))
    except phonenumbers.NumberParseException:
        return False


def landline(rng: random.Random, pref: str) -> str:
    """A valid fixed-line number in the prefecture's area, written 03-1234-5678 or 045-123-4567."""
    for _ in range(50):
        area = rng.choice(PREFS[pref][1])
        if len(area) == 2:
            number = f"{area}-{rng.randint(3000, 6999)}-{rng.randint(0, 9999):04d}"
        else:
            number = f"{area}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
        if _valid_phone(number):
            return number
    raise RuntimeError(f"no valid landline for {pref}")


def mobile(rng: random.Random) -> str:
    """A valid mobile number, written 090-1234-5678."""
    for _ in range(50):
        number = f"{rng.choice(MOBILE_PREFIXES)}-{rng.randint(1000, 9999)}-{rng.randint(0, 9999):04d}"
        if _valid_phone(number):
            return number
    raise RuntimeError("no valid mobile number")


def _pick_pref(rng: random.Random) -> str:
    names = list(PREFS)
    return rng.choices(names, weights=[PREFS[p][0] for p in names])[0]


def address(rng: random.Random, pref: str | None = None) -> dict[str, Any]:
    """A postal address with a postal code consistent with its town."""
    pref = pref or _pick_pref(rng)
    city = rng.choice(PREFS[pref][2])
    town = rng.choice(TOWNS)
    chome, ban, go = rng.randint(1, 9), rng.randint(1, 30), rng.randint(1, 20)
    street = f"{town}{chome}-{ban}-{go}"
    building = None
    if rng.random() < 0.35:
        building = f"{rng.choice(HEADS)[0]}{rng.choice(BUILDINGS)}{rng.randint(1, 12)}F"
    return {
        "postal_code": _postal(pref, city, town),
        "prefecture": pref,
        "city": city,
        "street": street,
        "_parts": (town, chome, ban, go, building),
    }


def _render_street(parts: tuple[str, int, int, int, str | None], style: str) -> str:
    town, chome, ban, go, building = parts
    kanji = "〇一二三四五六七八九"
    match style:
        case "kanji":
            body = f"{town}{chome}丁目{ban}番{go}号"
        case "kanji_numeral":
            body = f"{town}{kanji[chome]}丁目{ban}番地{go}"
        case "wide":
            body = jaconv.h2z(f"{town}{chome}-{ban}-{go}", ascii=True, digit=True)
        case "no":
            body = f"{town}{chome}の{ban}の{go}"
        case _:
            dash = style if style in DASHES else "-"
            body = f"{town}{chome}{dash}{ban}{dash}{go}"
    if building:
        body += (" " if style != "wide" else "　") + building
    return body


def _rendered_address(addr: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in addr.items() if not k.startswith("_")}


def _with_street(addr: dict[str, Any], style: str) -> dict[str, Any]:
    return {**addr, "street": _render_street(addr["_parts"], style)}


@dataclass
class _Company:
    head: tuple[str, str, str]
    mid: tuple[str, str, str] | None
    word: tuple[str, str, str]
    form: str
    form_kana: str
    front: bool
    corporate_number: str | None
    address: dict[str, Any]
    phone: str
    email: str | None
    url: str | None
    representative: str

    @property
    def body_name(self) -> str:
        return self.head[0] + (self.mid[0] if self.mid else "") + self.word[0]

    @property
    def body_kana(self) -> str:
        return self.head[1] + (self.mid[1] if self.mid else "") + self.word[1]


def _company(rng: random.Random, used: set[str], near: _Company | None = None) -> _Company:
    forms = FORMS
    form, form_kana, _, words = rng.choices(forms, weights=[f[2] for f in forms])[0]
    head = near.head if near else rng.choice(HEADS)
    mid = rng.choice(MIDS) if rng.random() < 0.25 else None
    word = rng.choice(words or WORDS)
    if near and word == near.word and mid == near.mid:
        word = rng.choice([w for w in (words or WORDS) if w != near.word])
    addr = near.address if near else address(rng)
    slug = f"{head[2]}-{(mid[2] + '-') if mid else ''}{word[2]}"
    while slug in used:  # two companies of one name still have their own domains
        slug = f"{slug}-{rng.randint(1, 99)}"
    used.add(slug)
    free_mail = rng.random() < 0.08
    email = f"{slug.replace('-', '.')}@{rng.choice(PERSON_MAIL)}" if free_mail else f"info@{slug}.example.co.jp"
    surname, given = rng.choice(SURNAMES), rng.choice(GIVEN_MALE + GIVEN_FEMALE)
    return _Company(
        head=head,
        mid=mid,
        word=word,
        form=form,
        form_kana=form_kana,
        front=rng.random() < 0.45,
        corporate_number=corporate_number(rng) if rng.random() < 0.85 else None,
        address=addr,
        phone=near.phone if near and rng.random() < 0.25 else landline(rng, addr["prefecture"]),
        email=email if rng.random() < 0.8 else None,
        url=None if free_mail or rng.random() < 0.2 else f"https://www.{slug}.example.co.jp/",
        representative=f"{surname[0]} {given[0]}",
    )


def _company_body(c: _Company, rng: random.Random) -> dict[str, Any]:
    name = f"{c.form}{c.body_name}" if c.front else f"{c.body_name}{c.form}"
    kana = c.body_kana if rng.random() < 0.6 else (f"{c.form_kana}{c.body_kana}" if c.front else c.body_kana)
    return {
        "kind": "company",
        "name": name,
        "name_kana": kana,
        "corporate_number": c.corporate_number,
        "industry": rng.choice(INDUSTRIES),
        "address": _rendered_address(_with_street(c.address, "-")),
        "phone": c.phone,
        "email": c.email,
        "url": c.url,
        "capital": str(rng.choice([1, 3, 5, 10, 30, 50, 100]) * 1_000_000),
        "employee_count": rng.randint(1, 2000),
        "fiscal_month": rng.choice([3, 3, 3, 12, 6, 9]),
        "representative": c.representative,
    }


@dataclass
class _Person:
    surname: tuple[str, str, str]
    given: tuple[str, str, str]
    gender: str
    birth_date: date | None
    address: dict[str, Any]
    phone: str | None
    email: str | None
    occupation: str


def _person(rng: random.Random, family_of: _Person | None = None, namesake_of: _Person | None = None) -> _Person:
    female = rng.random() < 0.5
    given = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
    if family_of is not None:
        while given == family_of.given:
            given = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
    if namesake_of is not None:
        given, female = namesake_of.given, namesake_of.gender == "female"
    relative = family_of or namesake_of
    surname = relative.surname if relative is not None else rng.choice(SURNAMES)
    addr = family_of.address if family_of else address(rng)
    born = date(1940, 1, 1) + timedelta(days=rng.randint(0, 365 * 66))
    home = family_of.phone if family_of and family_of.phone and family_of.phone[:3] not in MOBILE_PREFIXES else None
    phone = home if home and rng.random() < 0.7 else (mobile(rng) if rng.random() < 0.85 else None)
    if family_of is None and rng.random() < 0.25:
        phone = landline(rng, addr["prefecture"])  # a home landline, which the family shares
    mail_user = (
        f"{given[2]}.{surname[2]}{rng.randint(1, 999)}" if rng.random() < 0.7 else f"{surname[2]}{rng.randint(1, 9999)}"
    )
    return _Person(
        surname=surname,
        given=given,
        gender="female" if female else "male",
        birth_date=born if rng.random() < 0.7 else None,
        address=addr,
        phone=phone,
        email=f"{mail_user}@{rng.choice(PERSON_MAIL)}" if rng.random() < 0.7 else None,
        occupation=rng.choice(OCCUPATIONS),
    )


def _person_body(p: _Person, rng: random.Random) -> dict[str, Any]:
    spaced = rng.random() < 0.6
    return {
        "kind": "person",
        "name": f"{p.surname[0]} {p.given[0]}" if spaced else f"{p.surname[0]}{p.given[0]}",
        "name_kana": (f"{p.surname[1]} {p.given[1]}" if spaced else f"{p.surname[1]}{p.given[1]}")
        if rng.random() < 0.85
        else None,
        "birth_date": p.birth_date.isoformat() if p.birth_date else None,
        "gender": p.gender if rng.random() < 0.8 else None,
        "occupation": p.occupation,
        "address": _rendered_address(_with_street(p.address, "-")),
        "phone": p.phone,
        "email": p.email,
    }


# --- variations ---------------------------------------------------------------------------------

Variation = Callable[[dict[str, Any], random.Random, Any], str | None]


def _replace_one(text: str, rng: random.Random, alphabet: str) -> str:
    if len(text) < 2:
        return text
    pos = rng.randrange(len(text))
    return text[:pos] + rng.choice(alphabet) + text[pos + 1 :]


KATAKANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン"


def v_legal_form_notation(body: dict[str, Any], rng: random.Random, c: _Company) -> str | None:
    choices = [c.form, *ABBREVIATIONS.get(c.form, [])]
    written = rng.choice(choices)
    front = c.front if rng.random() < 0.7 else not c.front
    english = ENGLISH.get(c.form)
    if english and rng.random() < 0.1:
        romaji = " ".join(part[2].capitalize() for part in (c.head, c.mid, c.word) if part)
        body["name"] = f"{romaji} {rng.choice(english)}"
        return "english_legal_form"
    sep = rng.choice(["", "", " ", "　"])
    body["name"] = f"{written}{sep}{c.body_name}" if front else f"{c.body_name}{sep}{written}"
    return "legal_form" + ("_moved" if front != c.front else "")


def v_width(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    if rng.random() < 0.5:
        body["name"] = jaconv.h2z(body["name"], kana=True, ascii=True, digit=True)
        return "full_width"
    body["name"] = jaconv.z2h(body["name"], kana=True, ascii=True, digit=True)
    if body.get("name_kana"):
        body["name_kana"] = jaconv.z2h(body["name_kana"], kana=True, ascii=True, digit=True)
    return "half_width"


def v_spaces(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    name = body["name"].replace(" ", "").replace("　", "")
    if len(name) < 3:
        return None
    pos = rng.randint(1, len(name) - 1)
    body["name"] = name[:pos] + rng.choice([" ", "　", "・"]) + name[pos:]
    return "spaces"


def v_kana_script(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    kana = body.get("name_kana")
    if not kana:
        return None
    writings: list[Callable[[str], str]] = [
        lambda t: str(jaconv.kata2hira(t)),
        lambda t: str(jaconv.z2h(t, kana=True)),
        lambda t: t.replace("ー", "-"),
    ]
    body["name_kana"] = rng.choice(writings)(kana)
    return "kana_script"


def v_drop_kana(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    if not body.get("name_kana"):
        return None
    body["name_kana"] = None
    return "kana_dropped"


def v_company_homophone(body: dict[str, Any], rng: random.Random, c: _Company) -> str | None:
    for word, other in HOMOPHONES.items():
        if word in body["name"] and len(word) >= 2 and word in c.body_name:
            body["name"] = body["name"].replace(word, other, 1)
            return "homophone"
    return v_company_typo(body, rng, c)


def v_company_typo(body: dict[str, Any], rng: random.Random, c: _Company) -> str | None:
    # One character of the katakana or Latin part dropped or replaced, in the name or in its reading.
    if rng.random() < 0.5 and body.get("name_kana"):
        body["name_kana"] = _replace_one(body["name_kana"], rng, KATAKANA)
        return "typo_in_kana"
    name = body["name"]
    core = c.body_name
    if core not in name:
        return None
    if rng.random() < 0.5:
        pos = rng.randrange(len(core))
        typo = core[:pos] + core[pos + 1 :]
    else:
        typo = _replace_one(core, rng, KATAKANA)
    body["name"] = name.replace(core, typo, 1)
    return "typo"


def v_hiragana_name(body: dict[str, Any], rng: random.Random, c: _Company) -> str | None:
    if jaconv.kata2hira(c.head[1]) == c.head[0]:
        body["name"] = body["name"].replace(c.head[0], c.head[1], 1)
        return "katakana_for_hiragana"
    if c.head[0] == c.head[1]:
        body["name"] = body["name"].replace(c.head[0], jaconv.kata2hira(c.head[1]), 1)
        return "hiragana_for_katakana"
    return None


def v_phone_notation(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    phone = body.get("phone")
    if not phone:
        return None
    digits = phone.replace("-", "")
    parts = phone.split("-")
    style = rng.choice(["plain", "paren", "intl", "wide", "dash"])
    match style:
        case "plain":
            body["phone"] = digits
        case "paren":
            body["phone"] = f"{parts[0]}({parts[1]}){parts[2]}"
        case "intl":
            body["phone"] = f"+81-{parts[0][1:]}-{parts[1]}-{parts[2]}"
        case "wide":
            body["phone"] = jaconv.h2z(phone, ascii=True, digit=True)
        case _:
            body["phone"] = rng.choice(DASHES).join(parts)
    return "phone_notation"


def v_email_case(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    email = body.get("email")
    if not email:
        return None
    local, domain = email.split("@")
    body["email"] = rng.choice([email.upper(), f"{local.capitalize()}@{domain.upper()}", f"{local}@{domain.upper()}"])
    return "email_case"


def v_address_notation(body: dict[str, Any], rng: random.Random, entity: Any) -> str | None:
    base = entity.address
    style = rng.choice(["kanji", "kanji_numeral", "wide", "no", *DASHES])
    addr = _with_street(base, style)
    postal = base["postal_code"]
    addr["postal_code"] = rng.choice(
        [f"{postal[:3]}-{postal[3:]}", postal, jaconv.h2z(f"{postal[:3]}-{postal[3:]}", digit=True, ascii=True)]
    )
    if rng.random() < 0.2:
        addr["prefecture"] = None
        addr["city"] = f"{base['prefecture']}{base['city']}"
    if base["_parts"][4] and rng.random() < 0.3:
        town, chome, ban, go, _ = base["_parts"]
        addr["street"] = _render_street((town, chome, ban, go, None), style)
    body["address"] = _rendered_address(addr)
    return "address_notation"


def v_address_typo(body: dict[str, Any], rng: random.Random, entity: Any) -> str | None:
    # One digit of the house number mistyped, or the city left out.
    addr = dict(body["address"])
    if rng.random() < 0.5:
        street = addr["street"]
        digits = [i for i, ch in enumerate(street) if ch.isdigit()]
        pos = digits[-1]
        addr["street"] = street[:pos] + str((int(street[pos]) + rng.randint(1, 8)) % 10) + street[pos + 1 :]
        body["address"] = addr
        return "address_typo"
    addr["city"] = None
    body["address"] = addr
    return "city_omitted"


def v_moved(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    body["address"] = _rendered_address(_with_street(address(rng), "-"))
    return "moved"


def v_new_phone(body: dict[str, Any], rng: random.Random, entity: Any) -> str | None:
    if body["kind"] == "company":
        body["phone"] = landline(rng, entity.address["prefecture"])
    else:
        body["phone"] = mobile(rng)
    return "new_phone"


def v_drop_contact(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    name = rng.choice(["phone", "email"])
    if not body.get(name):
        return None
    body[name] = None
    return f"{name}_dropped"


def v_drop_corporate_number(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    if not body.get("corporate_number"):
        return None
    body["corporate_number"] = None
    return "corporate_number_dropped"


def v_url_notation(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    url = body.get("url")
    if not url:
        return None
    body["url"] = rng.choice(
        [url.replace("https://www.", "http://"), url.rstrip("/"), url.upper().replace("HTTPS", "https")]
    )
    return "url_notation"


def v_person_name(body: dict[str, Any], rng: random.Random, p: _Person) -> str | None:
    style = rng.choice(["space", "nospace", "wide_space", "itaiji", "homophone", "katakana_only", "hiragana_given"])
    full = p.surname[0] + p.given[0]
    match style:
        case "space":
            body["name"] = f"{p.surname[0]} {p.given[0]}"
        case "nospace":
            body["name"] = full
        case "wide_space":
            body["name"] = f"{p.surname[0]}　{p.given[0]}"
        case "itaiji":
            variants = [c for c in full if c in ITAIJI]
            if not variants:
                return None
            body["name"] = body["name"].replace(variants[0], ITAIJI[variants[0]], 1)
        case "homophone":
            for part in (p.given[0], p.surname[0]):
                if part in HOMOPHONES:
                    body["name"] = body["name"].replace(part, HOMOPHONES[part], 1)
                    break
            else:
                return None
        case "katakana_only":
            body["name"] = rng.choice([f"{p.surname[1]} {p.given[1]}", p.surname[1] + p.given[1]])
            body["name_kana"] = None
        case _:
            body["name"] = f"{p.surname[0]} {jaconv.kata2hira(p.given[1])}"
    return f"name_{style}"


def v_person_kana_typo(body: dict[str, Any], rng: random.Random, p: _Person) -> str | None:
    if not body.get("name_kana"):
        return None
    body["name_kana"] = _replace_one(body["name_kana"].replace(" ", ""), rng, KATAKANA)
    return "typo_in_kana"


def v_drop_birth_date(body: dict[str, Any], rng: random.Random, _: Any) -> str | None:
    if not body.get("birth_date"):
        return None
    body["birth_date"] = None
    return "birth_date_dropped"


def v_married(body: dict[str, Any], rng: random.Random, p: _Person) -> str | None:
    other = rng.choice(SURNAMES)
    if other == p.surname:
        return None
    body["name"] = f"{other[0]} {p.given[0]}"
    if body.get("name_kana"):
        body["name_kana"] = f"{other[1]} {p.given[1]}"
    return "surname_changed"


# (variation, weight): each duplicate gets one to four of them.
COMPANY_VARIATIONS: list[tuple[Variation, float]] = [
    (v_legal_form_notation, 3.0),
    (v_width, 1.5),
    (v_spaces, 1.0),
    (v_kana_script, 1.0),
    (v_drop_kana, 0.8),
    (v_company_homophone, 0.8),
    (v_company_typo, 0.6),
    (v_hiragana_name, 0.6),
    (v_phone_notation, 2.0),
    (v_email_case, 1.2),
    (v_address_notation, 2.0),
    (v_url_notation, 0.6),
    (v_address_typo, 0.5),
    (v_drop_corporate_number, 2.0),
    (v_drop_contact, 0.8),
    (v_new_phone, 0.4),
    (v_moved, 0.3),
]
PERSON_VARIATIONS: list[tuple[Variation, float]] = [
    (v_person_name, 3.0),
    (v_width, 0.6),
    (v_kana_script, 1.2),
    (v_drop_kana, 0.6),
    (v_person_kana_typo, 0.4),
    (v_phone_notation, 2.0),
    (v_email_case, 1.5),
    (v_address_notation, 2.0),
    (v_drop_birth_date, 1.0),
    (v_address_typo, 0.5),
    (v_drop_contact, 0.8),
    (v_new_phone, 0.4),
    (v_moved, 0.4),
    (v_married, 0.1),
]


def _variant(
    body: dict[str, Any], rng: random.Random, entity: Any, variations: list[tuple[Variation, float]]
) -> tuple[dict[str, Any], list[str]]:
    copy = {**body, "address": dict(body["address"]) if body.get("address") else None}
    applied: list[str] = []
    count = rng.choice([1, 2, 2, 3, 3, 4])
    moves = rng.choices([v for v, _ in variations], weights=[w for _, w in variations], k=count)
    for move in dict.fromkeys(moves):
        done = move(copy, rng, entity)
        if done:
            applied.append(done)
    if not applied or copy == body:
        applied.append(v_phone_notation(copy, rng, entity) or "identical")
    return copy, applied


def customer_from(body: dict[str, Any], customer_id: UUID, now: datetime = NOW) -> Customer:
    """The write-side customer a registration body produces (validated and normalised as the API does)."""
    command = RegisterCustomer.model_validate({k: v for k, v in body.items() if v is not None})
    return fold(customer_id, decide(command, Customer(id=customer_id), now))


def generate(n: int, duplicate_rate: float = 0.10, seed: int = 0, company_share: float = 0.5) -> LabelledSet:
    """About n customers of which about duplicate_rate are extra records of another one, labelled."""
    rng = random.Random(seed)
    bodies: list[dict[str, Any]] = []
    entity_of: list[int] = []
    variations: list[list[str]] = []
    hard: list[str] = []
    originals: list[tuple[int, Any, str]] = []
    entities = 0
    slugs: set[str] = set()
    while len(bodies) < n * (1 - duplicate_rate):
        if rng.random() < company_share:
            company = _company(rng, slugs)
            group = [company]
            if rng.random() < 0.06:
                # A sister company in the same building, sometimes behind the same switchboard.
                group.append(_company(rng, slugs, near=company))
                hard.append("sister_company")
            for item in group:
                body = _company_body(item, rng)
                bodies.append(body)
                entity_of.append(entities)
                variations.append([])
                originals.append((len(bodies) - 1, item, "company"))
                entities += 1
        else:
            person = _person(rng)
            group_p = [person]
            if rng.random() < 0.10:
                group_p.append(_person(rng, family_of=person))  # same address, maybe the same landline
                hard.append("family_member")
            if rng.random() < 0.03:
                group_p.append(_person(rng, namesake_of=person))  # 同姓同名: same name, another person
                hard.append("namesake")
            for item_p in group_p:
                body = _person_body(item_p, rng)
                bodies.append(body)
                entity_of.append(entities)
                variations.append([])
                originals.append((len(bodies) - 1, item_p, "person"))
                entities += 1
    while len(bodies) < n:
        original, entity, kind = rng.choice(originals)
        copy, applied = _variant(
            bodies[original], rng, entity, COMPANY_VARIATIONS if kind == "company" else PERSON_VARIATIONS
        )
        bodies.append(copy)
        entity_of.append(entity_of[original])
        variations.append(applied)
    customers: list[Customer] = []
    keep: list[int] = []
    rejected = 0
    for i, body in enumerate(bodies):
        try:
            customers.append(customer_from(body, UUID(int=rng.getrandbits(128), version=4)))
            keep.append(i)
        except ValueError:
            rejected += 1
    bodies = [bodies[i] for i in keep]
    entity_of = [entity_of[i] for i in keep]
    variations = [variations[i] for i in keep]
    clusters: dict[int, list[int]] = {}
    for i, e in enumerate(entity_of):
        clusters.setdefault(e, []).append(i)
    pairs = {(a, b) for members in clusters.values() for a, b in combinations(members, 2)}
    return LabelledSet(bodies, customers, entity_of, pairs, variations, hard, rejected)
