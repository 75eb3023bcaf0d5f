"""Marking event fields that hold personal data, so they are stored and published encrypted."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


@dataclass(frozen=True)
class PersonalData:
    """Metadata marker: this field is encrypted under the customer's data key."""


PERSONAL = PersonalData()

Personal = Annotated[T, PERSONAL]

CIPHERTEXT_PREFIX = "enc:v1:"


@functools.cache
def personal_fields(model: type[BaseModel]) -> frozenset[str]:
    """Names of a model's fields marked as personal data (computed once per class)."""
    return frozenset(
        name for name, info in model.model_fields.items() if any(isinstance(m, PersonalData) for m in info.metadata)
    )


def is_ciphertext(value: object) -> bool:
    """True if a value is an encrypted personal field as stored and published."""
    return isinstance(value, str) and value.startswith(CIPHERTEXT_PREFIX)
