"""A realistic Japanese B2B/B2C customer book, planned as data before anything is sent.

The plan is a pure function of (seed, customer count, today): the same arguments give the same book.
Every amount is a Decimal; order totals are the sums of their lines; invoices bill what was ordered
(tax included); payments never exceed what an invoice still owes; tickets and complaints name
orders and products the customer really bought.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

from faker import Faker

STAGES_OPEN = ("lead", "qualified", "proposal", "negotiation")
OWNERS = (
    ("sato.k", "tokyo-sales-1"),
    ("suzuki.m", "tokyo-sales-1"),
    ("takahashi.y", "tokyo-sales-2"),
    ("tanaka.h", "osaka-sales"),
    ("ito.r", "osaka-sales"),
)
SUPPORT_STAFF = (("kobayashi.a", "support-1"), ("yamamoto.s", "support-1"), ("nakamura.t", "support-2"))

# (prefecture, [(city, postal prefix)])
PLACES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("東京都", ("千代田区", "中央区", "港区", "新宿区", "渋谷区", "品川区", "江東区", "八王子市")),
    ("神奈川県", ("横浜市西区", "横浜市港北区", "川崎市中原区", "相模原市中央区", "藤沢市")),
    ("埼玉県", ("さいたま市大宮区", "川口市", "所沢市", "越谷市")),
    ("千葉県", ("千葉市中央区", "船橋市", "柏市", "市川市")),
    ("大阪府", ("大阪市北区", "大阪市中央区", "堺市堺区", "東大阪市", "吹田市")),
    ("愛知県", ("名古屋市中区", "名古屋市中村区", "豊田市", "岡崎市")),
    ("福岡県", ("福岡市博多区", "福岡市中央区", "北九州市小倉北区", "久留米市")),
    ("北海道", ("札幌市中央区", "旭川市", "函館市")),
    ("宮城県", ("仙台市青葉区", "石巻市")),
    ("広島県", ("広島市中区", "福山市")),
    ("京都府", ("京都市下京区", "京都市中京区", "宇治市")),
    ("兵庫県", ("神戸市中央区", "姫路市", "西宮市")),
)
AREA_CODES = {
    "東京都": "03", "大阪府": "06", "愛知県": "052", "福岡県": "092", "北海道": "011", "宮城県": "022",
    "神奈川県": "045", "埼玉県": "048", "千葉県": "043", "京都府": "075", "兵庫県": "078", "広島県": "082",
}  # fmt: skip

SURNAMES = (
    ("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"), ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"), ("山本", "ヤマモト"), ("中村", "ナカムラ"), ("小林", "コバヤシ"), ("加藤", "カトウ"),
    ("吉田", "ヨシダ"), ("山田", "ヤマダ"), ("佐々木", "ササキ"), ("山口", "ヤマグチ"), ("松本", "マツモト"),
    ("井上", "イノウエ"), ("木村", "キムラ"), ("林", "ハヤシ"), ("斎藤", "サイトウ"), ("清水", "シミズ"),
)  # fmt: skip
GIVEN_NAMES = (
    ("翔太", "ショウタ"), ("健一", "ケンイチ"), ("大輔", "ダイスケ"), ("拓也", "タクヤ"), ("直樹", "ナオキ"),
    ("陽子", "ヨウコ"), ("美咲", "ミサキ"), ("恵子", "ケイコ"), ("由美", "ユミ"), ("さくら", "サクラ"),
    ("誠", "マコト"), ("亮", "リョウ"), ("愛", "アイ"), ("真由美", "マユミ"), ("和也", "カズヤ"),
)  # fmt: skip
COMPANY_STEMS = (
    ("ABC", "エービーシー"), ("さくら", "サクラ"), ("東邦", "トウホウ"), ("日本", "ニホン"), ("大和", "ヤマト"),
    ("みらい", "ミライ"), ("青葉", "アオバ"), ("北斗", "ホクト"), ("旭", "アサヒ"), ("富士", "フジ"),
    ("光", "ヒカリ"), ("ひまわり", "ヒマワリ"), ("中央", "チュウオウ"), ("協和", "キョウワ"), ("丸山", "マルヤマ"),
)  # fmt: skip
COMPANY_SUFFIXES = (
    ("商事", "ショウジ", "卸売業"), ("製作所", "セイサクショ", "製造業"), ("工業", "コウギョウ", "製造業"),
    ("電機", "デンキ", "製造業"), ("システムズ", "システムズ", "情報通信業"), ("物産", "ブッサン", "卸売業"),
    ("建設", "ケンセツ", "建設業"), ("食品", "ショクヒン", "食料品製造業"), ("運輸", "ウンユ", "運輸業"),
    ("ソリューションズ", "ソリューションズ", "情報通信業"), ("不動産", "フドウサン", "不動産業"),
    ("メディカル", "メディカル", "医療・福祉"),
)  # fmt: skip
DEPARTMENTS = ("営業部", "情報システム部", "総務部", "購買部", "経営企画部")
TITLES = ("部長", "課長", "係長", "主任", "担当")
DECISION_ROLES = ("decision_maker", "approver", "influencer", "user")


@dataclass(frozen=True)
class Product:
    """An item in the catalogue the demo sells."""

    code: str
    name: str
    category: str
    unit_price: Decimal
    tax_rate: Decimal = Decimal("0.10")


CATALOGUE: tuple[Product, ...] = (
    Product("PC-NB-14", "ノートPC 14インチ ビジネスモデル", "PC", Decimal("128000")),
    Product("PC-NB-13", "モバイルノートPC 13インチ", "PC", Decimal("168000")),
    Product("PC-DT-01", "デスクトップPC スタンダード", "PC", Decimal("98000")),
    Product("PC-WS-02", "ワークステーション", "PC", Decimal("385000")),
    Product("MN-27-4K", "27インチ 4Kモニター", "モニター", Decimal("54800")),
    Product("MN-24-FHD", "24インチ フルHDモニター", "モニター", Decimal("21800")),
    Product("PR-LS-A3", "A3カラーレーザープリンター", "プリンター", Decimal("248000")),
    Product("PR-IJ-A4", "A4インクジェット複合機", "プリンター", Decimal("39800")),
    Product("SV-1U-R1", "1Uラックサーバー", "サーバー", Decimal("680000")),
    Product("SW-OFF-Y", "オフィスソフト 年間ライセンス", "ソフトウェア", Decimal("15800")),
    Product("SW-SEC-Y", "ウイルス対策ソフト 年間ライセンス", "ソフトウェア", Decimal("6800")),
    Product("AC-KB-01", "ワイヤレスキーボード", "周辺機器", Decimal("4980")),
    Product("AC-MS-01", "ワイヤレスマウス", "周辺機器", Decimal("2980")),
    Product("AC-DK-01", "USB-Cドッキングステーション", "周辺機器", Decimal("24800")),
    Product("SP-TN-01", "トナーカートリッジ（黒）", "消耗品", Decimal("12800")),
    Product("SP-CP-A4", "コピー用紙 A4 5000枚", "消耗品", Decimal("3980"), Decimal("0.10")),
    Product("FD-CF-01", "オフィス用コーヒー豆 1kg", "食品", Decimal("3240"), Decimal("0.08")),
    Product("SV-MT-Y", "保守サービス 年間", "保守サービス", Decimal("120000")),
)
CONSUMER_PRODUCTS = tuple(p for p in CATALOGUE if p.category in ("PC", "モニター", "周辺機器", "ソフトウェア", "食品"))


@dataclass
class ContactPlan:
    body: dict[str, Any]


@dataclass
class DealPlan:
    body: dict[str, Any]
    stages: list[str]  # stage moves after opening, in order
    outcome: Literal["open", "won", "lost"]
    final_amount: str | None
    lost_reason: str | None
    competitor: str | None
    activities: list[dict[str, Any]]
    contract: dict[str, Any] | None = None


@dataclass
class InvoicePlan:
    body: dict[str, Any]
    payments: list[dict[str, Any]]


@dataclass
class OrderPlan:
    body: dict[str, Any]
    lines: list[tuple[Product, int, Decimal]]  # product, quantity, discount
    deliver_on: date | None
    cancel: bool
    returns: list[dict[str, Any]]  # each {"line_no", "quantity"}
    invoice: InvoicePlan | None
    direct_payment: dict[str, Any] | None  # B2C: paid at purchase, no invoice


@dataclass
class TicketPlan:
    body: dict[str, Any]
    order_index: int | None
    assign: tuple[str, str]
    reply: str
    resolve: dict[str, Any] | None
    close: bool
    csat: dict[str, Any] | None
    escalate: dict[str, Any] | None


@dataclass
class CustomerPlan:
    """Everything the demo does for one customer, in order."""

    key: int
    register: dict[str, Any]
    rank: str
    tags: list[str]
    consents: list[dict[str, Any]]
    contacts: list[ContactPlan] = field(default_factory=list)
    deals: list[DealPlan] = field(default_factory=list)
    activities: list[dict[str, Any]] = field(default_factory=list)
    orders: list[OrderPlan] = field(default_factory=list)
    budgets: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[TicketPlan] = field(default_factory=list)

    def command_count(self) -> int:
        """How many HTTP commands executing this plan sends."""
        n = 1 + (1 if self.rank else 0) + (1 if self.tags else 0) + len(self.consents) + len(self.contacts)
        n += len(self.activities) + len(self.budgets)
        for d in self.deals:
            n += 1 + len(d.stages) + (1 if d.outcome != "open" else 0) + len(d.activities) + (1 if d.contract else 0)
        for o in self.orders:
            n += 1 + (1 if o.deliver_on else 0) + (1 if o.cancel else 0) + len(o.returns)
            n += (1 + len(o.invoice.payments)) if o.invoice else 0
            n += 1 if o.direct_payment else 0
        for t in self.tickets:
            n += 3 + (1 if t.resolve else 0) + (1 if t.close else 0) + (1 if t.csat else 0) + (1 if t.escalate else 0)
        return n


def _yen(value: Decimal) -> Decimal:
    return value.quantize(Decimal("1"), rounding=ROUND_DOWN)


def line_amount(product: Product, quantity: int, discount: Decimal) -> Decimal:
    """Pre-tax amount of an order line."""
    return product.unit_price * quantity - discount


def _tax_included(lines: list[tuple[Product, int, Decimal]]) -> Decimal:
    return sum(
        (line_amount(p, q, d) + _yen(line_amount(p, q, d) * p.tax_rate) for p, q, d in lines),
        Decimal(0),
    )


def _month_end(day: date) -> date:
    nxt = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return nxt - timedelta(days=1)


class BookPlanner:
    """Plans the book deterministically from a seed."""

    def __init__(self, seed: int, today: date) -> None:
        self.rng = random.Random(seed)
        self.faker = Faker("ja_JP")
        self.faker.seed_instance(seed)
        self.today = today
        self.seed = seed
        self._phones: set[str] = set()

    # -- people and places ---------------------------------------------------------------------

    def _person_name(self) -> tuple[str, str]:
        (s, sk), (g, gk) = self.rng.choice(SURNAMES), self.rng.choice(GIVEN_NAMES)
        return f"{s} {g}", f"{sk} {gk}"

    def _place(self) -> tuple[str, str, str]:
        prefecture, cities = self.rng.choice(PLACES)
        street = f"{self.faker.town()}{self.rng.randint(1, 5)}-{self.rng.randint(1, 30)}-{self.rng.randint(1, 20)}"
        return prefecture, self.rng.choice(cities), street

    def _postal_code(self) -> str:
        return f"{self.rng.randint(100, 999)}-{self.rng.randint(0, 9999):04d}"

    def _phone(self, prefecture: str, mobile: bool) -> str:
        while True:
            if mobile:
                phone = f"0{self.rng.choice('789')}0-{self.rng.randint(2000, 9999)}-{self.rng.randint(1000, 9999)}"
            else:
                area = AREA_CODES.get(prefecture, "03")
                middle = self.rng.randint(5000, 6999) if len(area) == 2 else self.rng.randint(200, 999)
                phone = f"{area}-{middle}-{self.rng.randint(1000, 9999)}"
            if phone not in self._phones:
                self._phones.add(phone)
                return phone

    def _email(self, domain_hint: int) -> str:
        return f"{self.faker.user_name()}{domain_hint}@example.{self.rng.choice(['jp', 'co.jp', 'com'])}"

    # -- the book ------------------------------------------------------------------------------

    def customer(self, key: int) -> CustomerPlan:
        """The plan for the key-th customer (70 % companies, 30 % consumers)."""
        company = self.rng.random() < 0.7
        prefecture, city, street = self._place()
        address = {"postal_code": self._postal_code(), "prefecture": prefecture, "city": city, "street": street}
        if company:
            stem, stem_kana = self.rng.choice(COMPANY_STEMS)
            suffix, suffix_kana, industry = self.rng.choice(COMPANY_SUFFIXES)
            legal, legal_kana = self.rng.choice(
                (("株式会社", "カブシキガイシャ"),) * 4 + (("有限会社", "ユウゲンガイシャ"),)
            )
            rep, _ = self._person_name()
            register: dict[str, Any] = {
                "kind": "company",
                "name": f"{legal}{stem}{suffix}{'' if key < 15 else f' {key}'}",
                "name_kana": f"{legal_kana}{stem_kana}{suffix_kana}",
                "industry": industry,
                "address": address,
                "phone": self._phone(prefecture, mobile=False),
                "email": f"info@example-{key}.co.jp",
                "capital": str(self.rng.choice([3_000_000, 10_000_000, 50_000_000, 100_000_000, 300_000_000])),
                "employee_count": self.rng.choice([8, 25, 60, 140, 320, 1200]),
                "fiscal_month": self.rng.choice([3, 3, 3, 12, 12, 6, 9]),
                "representative": rep,
                "external_id": f"DEMO{self.seed}-C{key:05d}",
            }
        else:
            name, kana = self._person_name()
            birth = date(self.rng.randint(1950, 2002), self.rng.randint(1, 12), self.rng.randint(1, 28))
            register = {
                "kind": "person",
                "name": name,
                "name_kana": kana,
                "address": address,
                "phone": self._phone(prefecture, mobile=True),
                "email": self._email(key),
                "birth_date": birth.isoformat(),
                "gender": self.rng.choice(["female", "male", "unspecified"]),
                "occupation": self.rng.choice(["会社員", "公務員", "自営業", "学生", "主婦", "エンジニア"]),
                "external_id": f"DEMO{self.seed}-P{key:05d}",
            }
        plan = CustomerPlan(
            key=key,
            register=register,
            rank=self.rng.choice(["S", "A", "A", "B", "B", "B", "C"]),
            tags=self.rng.sample(
                ["展示会2024", "紹介", "Web問合せ", "重点顧客", "休眠", "新規"], k=self.rng.randint(0, 2)
            ),
            consents=[
                {"channel": ch, "granted": self.rng.random() < 0.7, "purpose": "newsletter", "source": "web-form"}
                for ch in self.rng.sample(["email", "phone", "post"], k=self.rng.randint(0, 2))
            ],
        )
        if company:
            for _ in range(self.rng.randint(1, 3)):
                name, kana = self._person_name()
                plan.contacts.append(
                    ContactPlan(
                        {
                            "name": name,
                            "name_kana": kana,
                            "department": self.rng.choice(DEPARTMENTS),
                            "title": self.rng.choice(TITLES),
                            "email": self._email(key),
                            "phone": self._phone(prefecture, mobile=True),
                            "decision_role": self.rng.choice(DECISION_ROLES),
                        }
                    )
                )
            self._deals(plan)
        self._orders(plan, company)
        self._tickets(plan)
        if company:
            fiscal_month = int(register["fiscal_month"])
            this_fy = self.today.year if self.today.month > fiscal_month else self.today.year - 1
            for fy in (this_fy - 1, this_fy):
                if self.rng.random() < 0.5:
                    plan.budgets.append(
                        {
                            "fiscal_year": fy,
                            "amount": str(self.rng.choice([500_000, 2_000_000, 8_000_000])),
                            "currency": "JPY",
                        }
                    )
        return plan

    def _activity(self, deal: bool) -> dict[str, Any]:
        kind = self.rng.choice(["visit", "call", "email", "meeting", "online_meeting", "document_sent"])
        subjects = {
            "visit": "訪問：ご提案内容のご説明",
            "call": "電話：導入スケジュールの確認",
            "email": "メール：お見積書送付",
            "meeting": "打合せ：要件ヒアリング",
            "online_meeting": "オンライン会議：デモ実施",
            "document_sent": "資料送付：製品カタログ",
        }
        owner, _ = self.rng.choice(OWNERS)
        return {
            "kind": kind,
            "occurred_at": f"{(self.today - timedelta(days=self.rng.randint(1, 400))).isoformat()}T14:00:00+09:00",
            "staff": owner,
            "participants": [self._person_name()[0]],
            "subject": subjects[kind] + ("" if deal else "（定期フォロー）"),
            "content": self.rng.choice(
                ["先方は前向き。次回は見積条件を詰める。", "予算確保の目処は来期。", "競合と比較検討中。"]
            ),
            "outcome": self.rng.choice(["継続検討", "見積依頼あり", "次回訪問予定", "保留"]),
        }

    def _deals(self, plan: CustomerPlan) -> None:
        for _ in range(self.rng.randint(1, 3)):
            owner, team = self.rng.choice(OWNERS)
            product = self.rng.choice(CATALOGUE)
            amount = product.unit_price * self.rng.randint(3, 40)
            target = self.rng.choice([*STAGES_OPEN, "won", "won", "lost"])
            open_stages = list(STAGES_OPEN)
            reach = open_stages.index(target) if target in open_stages else self.rng.randint(1, 3)
            deal = DealPlan(
                body={
                    "title": f"{product.name} 導入案件",
                    "owner": owner,
                    "team": team,
                    "amount": str(amount),
                    "currency": "JPY",
                    "expected_close_date": (self.today + timedelta(days=self.rng.randint(10, 180))).isoformat(),
                    "source": self.rng.choice(["referral", "web", "exhibition", "existing_customer", "cold_call"]),
                },
                stages=open_stages[1 : reach + 1],
                outcome="won" if target == "won" else "lost" if target == "lost" else "open",
                final_amount=str(_yen(amount * Decimal(self.rng.choice(["0.9", "0.95", "1"]))))
                if target == "won"
                else None,
                lost_reason=self.rng.choice(["価格で他社に劣後", "予算凍結", "導入時期の延期"])
                if target == "lost"
                else None,
                competitor=self.rng.choice(["競合A社", "競合B社", None]) if target == "lost" else None,
                activities=[self._activity(True) for _ in range(self.rng.randint(1, 3))],
            )
            if target == "won" and self.rng.random() < 0.6:
                start = self.today - timedelta(days=self.rng.randint(30, 700))
                deal.contract = {
                    "title": f"{product.name} 保守契約",
                    "terms": "年次更新、解約は満了の1か月前までに書面で通知",
                    "start_date": start.isoformat(),
                    "end_date": (start + timedelta(days=364)).isoformat(),
                    "amount": str(self.rng.choice([120_000, 240_000, 600_000])),
                    "currency": "JPY",
                    "billing_cycle": self.rng.choice(["yearly", "monthly"]),
                    "auto_renewal": self.rng.random() < 0.5,
                }
            plan.deals.append(deal)
        plan.activities = [self._activity(False) for _ in range(self.rng.randint(0, 2))]

    def _orders(self, plan: CustomerPlan, company: bool) -> None:
        count = self.rng.randint(2, 12) if company else self.rng.randint(0, 4)
        catalogue = CATALOGUE if company else CONSUMER_PRODUCTS
        days = sorted(self.rng.randint(1, 5 * 365) for _ in range(count))
        for back in reversed(days):
            order_date = self.today - timedelta(days=back)
            lines: list[tuple[Product, int, Decimal]] = []
            for product in self.rng.sample(catalogue, k=self.rng.randint(1, 4 if company else 2)):
                quantity = self.rng.randint(1, 20 if company else 2)
                discount = _yen(product.unit_price * quantity * Decimal(self.rng.choice(["0", "0", "0.05", "0.1"])))
                lines.append((product, quantity, discount))
            total = sum((line_amount(p, q, d) for p, q, d in lines), Decimal(0))
            delivered = back > 7
            roll = self.rng.random()
            cancel = roll < 0.04 and not delivered
            returns: list[dict[str, Any]] = []
            if delivered and roll > 0.95:
                product, quantity, _ = lines[0]
                returns.append({"line_no": 1, "quantity": self.rng.randint(1, quantity)})
            body = {
                "order_date": order_date.isoformat(),
                "delivery_date": (order_date + timedelta(days=self.rng.randint(2, 14))).isoformat(),
                "currency": "JPY",
                "lines": [
                    {
                        "product_code": p.code,
                        "product_name": p.name,
                        "category": p.category,
                        "unit_price": str(p.unit_price),
                        "quantity": q,
                        "discount": str(d),
                    }
                    for p, q, d in lines
                ],
                "total": str(total),
            }
            deliver_on = order_date + timedelta(days=self.rng.randint(2, 7)) if delivered else None
            invoice: InvoicePlan | None = None
            direct: dict[str, Any] | None = None
            billed = _tax_included(lines)
            if company and not cancel:
                issued = deliver_on or order_date
                due = _month_end(_month_end(issued) + timedelta(days=1))
                invoice = InvoicePlan(
                    body={
                        "invoice_number": f"INV-{plan.key:05d}-{len(plan.orders) + 1:03d}",
                        "issued_on": issued.isoformat(),
                        "due_date": due.isoformat(),
                        "amount": str(billed),
                        "currency": "JPY",
                    },
                    payments=[],
                )
                if due < self.today:
                    if self.rng.random() < 0.9:
                        invoice.payments.append(
                            {
                                "amount": str(billed),
                                "paid_on": min(due, self.today).isoformat(),
                                "method": "bank_transfer",
                            }
                        )
                    else:  # partial payment, the rest stays outstanding (overdue)
                        half = _yen(billed / 2)
                        invoice.payments.append(
                            {"amount": str(half), "paid_on": due.isoformat(), "method": "bank_transfer"}
                        )
            elif not company and not cancel:
                direct = {
                    "amount": str(billed),
                    "paid_on": order_date.isoformat(),
                    "method": self.rng.choice(["credit_card", "convenience_store", "credit_card"]),
                }
            plan.orders.append(OrderPlan(body, lines, deliver_on, cancel, returns, invoice, direct))

    def _tickets(self, plan: CustomerPlan) -> None:
        delivered = [i for i, o in enumerate(plan.orders) if o.deliver_on is not None]
        if not delivered or self.rng.random() > 0.45:
            return
        for _ in range(self.rng.randint(1, 2)):
            index = self.rng.choice(delivered)
            order = plan.orders[index]
            product = order.lines[0][0]
            complaint = self.rng.random() < 0.35
            assert order.deliver_on is not None
            received = min(order.deliver_on + timedelta(days=self.rng.randint(1, 20)), self.today)
            if complaint:
                subject, content, category = (
                    f"{product.name}の初期不良",
                    "納品された製品が起動しない。至急交換してほしい。",
                    "product",
                )
            else:
                subject, content, category = (
                    f"{product.name}の設定方法について",
                    "初期設定の手順を教えてほしい。",
                    self.rng.choice(["product", "billing", "delivery"]),
                )
            done = self.rng.random() < 0.75
            resolve: dict[str, Any] | None = None
            if done:
                resolve = {"resolution": "代替品を手配し交換済み。" if complaint else "設定手順を案内し解決。"}
                if complaint:
                    resolve["root_cause"] = "出荷前検査での電源ユニット確認漏れ"
                    resolve["prevention"] = "出荷前検査項目に通電試験を追加し、チェックリストを改訂"
            plan.tickets.append(
                TicketPlan(
                    body={
                        "kind": "complaint" if complaint else "inquiry",
                        "channel": self.rng.choice(["phone", "email", "web_form"]),
                        "category": category,
                        "priority": self.rng.choice(["high", "urgent"])
                        if complaint
                        else self.rng.choice(["low", "normal"]),
                        "subject": subject,
                        "content": content,
                        "product": product.code,
                        "received_at": f"{received.isoformat()}T10:00:00+09:00",
                    },
                    order_index=index,
                    assign=self.rng.choice(SUPPORT_STAFF),
                    reply="ご連絡ありがとうございます。確認のうえ折り返しご連絡いたします。",
                    resolve=resolve,
                    close=done and self.rng.random() < 0.6,
                    csat={
                        "score": self.rng.randint(1, 3) if complaint else self.rng.randint(3, 5),
                        "comment": "対応に感謝",
                    }
                    if done and self.rng.random() < 0.7
                    else None,
                    escalate={"level": 1, "reason": "顧客影響大のため課長へ報告"}
                    if complaint and self.rng.random() < 0.5
                    else None,
                )
            )


def plan_book(customers: int, seed: int, today: date) -> list[CustomerPlan]:
    """The whole demo book: ``customers`` customer plans."""
    planner = BookPlanner(seed, today)
    return [planner.customer(key) for key in range(customers)]
