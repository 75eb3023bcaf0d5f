"""Reads of the deals service's customer replica (eventually consistent, see docs/adr/0008)."""

from __future__ import annotations

import asyncpg
from crm_eventstore import customer_replica

from crm_deals.domain.customers import CustomerStanding


class ReplicaDirectory(customer_replica.ReplicaDirectory[CustomerStanding]):
    """Does a customer exist, was it merged (into which live survivor), who are its contact persons."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool, CustomerStanding)
