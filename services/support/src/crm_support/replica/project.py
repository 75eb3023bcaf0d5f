"""The support service's replica of the customer master: the shared projection under this service's name."""

from __future__ import annotations

from crm_eventstore import customer_replica
from crm_eventstore.customer_replica import (
    Change,
    CustomerMerged,
    CustomerRegistered,
    CustomerUnmerged,
    PersonLeft,
    PersonsJoined,
    PersonsRemoved,
)

__all__ = [
    "Change",
    "CustomerMerged",
    "CustomerRegistered",
    "CustomerReplicaProjection",
    "CustomerUnmerged",
    "PersonLeft",
    "PersonsJoined",
    "PersonsRemoved",
]


class CustomerReplicaProjection(customer_replica.CustomerReplicaProjection):
    """The customer replica as the support service runs it (its own name, group and positions)."""

    def __init__(self) -> None:
        super().__init__("support-customer-replica")
