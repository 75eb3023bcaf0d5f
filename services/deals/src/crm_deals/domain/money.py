"""Money arithmetic: Decimal only, amounts checked against and rounded to the currency's minor unit."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal

from crm_deals.domain.errors import DomainError

#: ISO 4217 currencies whose minor unit is not 1/100 (everything else has two decimals).
_MINOR_UNITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip

#: Consumption tax rate when an order line names none (標準税率 10%).
DEFAULT_TAX_RATE = Decimal("0.10")

#: Business dates (order, due, end dates) are Japanese calendar dates.
JST = timezone(timedelta(hours=9), "JST")

ZERO = Decimal(0)


def today(now: datetime) -> date:
    """The business date (in Japan) of an instant."""
    return now.astimezone(JST).date()


def quantum(currency: str) -> Decimal:
    """The smallest amount of a currency: 1 for JPY, 0.01 for USD."""
    return Decimal(1).scaleb(-_MINOR_UNITS.get(currency, 2))


def check_amount(amount: Decimal, currency: str, field: str) -> Decimal:
    """The amount if it is expressible in the currency, else a DomainError naming `field`."""
    if amount != amount.quantize(quantum(currency)):
        raise DomainError(
            f"{amount} has more decimals than {currency} allows (smallest unit {quantum(currency)})", field
        )
    return amount


def round_down(amount: Decimal, currency: str) -> Decimal:
    """Rounded down to the currency's smallest unit (tax on a line: 円未満切り捨て)."""
    return amount.quantize(quantum(currency), rounding=ROUND_FLOOR)


def text(amount: Decimal, currency: str) -> str:
    """The event/JSON form of an amount: a plain decimal string at the currency's precision."""
    return format(amount.quantize(quantum(currency)), "f")


def parse(value: str) -> Decimal:
    """A decimal string from an event back to a Decimal."""
    return Decimal(value)
