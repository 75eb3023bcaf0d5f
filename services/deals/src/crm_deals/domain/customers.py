"""What the deals service knows about customers (its replica of the customer master) and the check every
new record for a customer passes."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from crm_deals.domain.errors import CustomerWasMerged, UnknownContactPerson, UnknownCustomer


@dataclass(frozen=True)
class CustomerStanding:
    """What the replica says about a customer: known, merged into a survivor, its active contact persons."""

    customer_id: UUID
    known: bool
    survivor_id: UUID | None = None
    contact_person_ids: frozenset[UUID] = frozenset()


def check_customer(standing: CustomerStanding, contact_person_id: UUID | None = None) -> UUID:
    """The customer's id if new records may be made for it (and the contact person is one of its own)."""
    cid = standing.customer_id
    if not standing.known:
        raise UnknownCustomer(
            f"customer {cid} is not known to the deals service"
            " (a customer registered moments ago arrives within seconds: retry shortly)",
            field="customer_id",
        )
    if standing.survivor_id is not None:
        raise CustomerWasMerged(
            f"customer {cid} was merged into {standing.survivor_id}; use the surviving customer",
            field="customer_id",
            merged_into=str(standing.survivor_id),
        )
    if contact_person_id is not None and contact_person_id not in standing.contact_person_ids:
        raise UnknownContactPerson(
            f"no active contact person {contact_person_id} at customer {cid}", field="contact_person_id"
        )
    return cid
