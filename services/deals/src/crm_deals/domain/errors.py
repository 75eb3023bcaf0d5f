"""Rejections of deals-service commands; the HTTP layer maps each to problem+json (404, 409, 422)."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A command the deals domain rejects (422 unless a subclass says otherwise), naming the field at fault."""

    status = 422

    def __init__(self, message: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.field = field
        self.extra = extra


class NotFound(DomainError):
    """The addressed deal, contract, order or invoice does not exist."""

    status = 404


class AlreadyExists(DomainError):
    """Creating an aggregate whose id is already taken."""

    status = 409


class InvalidTransition(DomainError):
    """The command does not fit the aggregate's current status (e.g. winning a lost deal)."""

    status = 409


class UnknownCustomer(DomainError):
    """The customer is not known to the deals service (its replica of the customer master)."""


class CustomerWasMerged(DomainError):
    """The customer was merged into another (名寄せ): new records go to the survivor."""


class UnknownContactPerson(DomainError):
    """No active contact person with this id at the customer."""
