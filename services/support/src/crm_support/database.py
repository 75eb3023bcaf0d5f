"""The support database's own tables beside its event store (applied by `crm up` and `crm migrate support`)."""

from __future__ import annotations

from crm_eventstore.projection import PROJECTION_RUNTIME_DDL

# The customer replica is a projection of crm.contacts.events.v1, so the projection runtime's
# dedupe and position tables live here too and commit in the same transaction as the replica.
# It holds ids and merge links only, never personal data: nothing in it needs erasing.
REPLICA_DDL = """
CREATE TABLE IF NOT EXISTS replica_customers (
    customer_id   uuid        PRIMARY KEY,
    kind          text,
    merged_into   uuid,
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS replica_contact_persons (
    customer_id   uuid        NOT NULL,
    person_id     uuid        NOT NULL,
    active        boolean     NOT NULL DEFAULT true,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, person_id)
);
"""

# The running SLA deadlines of every ticket, kept in the transaction that appends the ticket's
# events; the scheduler scans it by next_due_at instead of folding every stream.
SLA_DDL = """
CREATE TABLE IF NOT EXISTS ticket_sla_clocks (
    ticket_id             uuid        PRIMARY KEY,
    customer_id           uuid        NOT NULL,
    version               integer     NOT NULL,
    first_response_due_at timestamptz,
    resolution_due_at     timestamptz,
    breached              text[]      NOT NULL DEFAULT '{}',
    next_due_at           timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ticket_sla_clocks_due ON ticket_sla_clocks (next_due_at)
    WHERE next_due_at IS NOT NULL;
"""

DDL = PROJECTION_RUNTIME_DDL + REPLICA_DDL + SLA_DDL

GRANTS = """
GRANT SELECT, INSERT, UPDATE ON processed_events, projection_positions TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON replica_customers, replica_contact_persons TO {role};
GRANT SELECT, INSERT, UPDATE ON ticket_sla_clocks TO {role};
"""
