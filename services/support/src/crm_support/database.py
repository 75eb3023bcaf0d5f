"""The support database's own tables beside its event store (applied by `crm up` and `crm migrate support`)."""

from __future__ import annotations

from crm_eventstore.customer_replica import REPLICA_DDL, REPLICA_GRANTS
from crm_eventstore.projection import PROJECTION_RUNTIME_DDL

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

GRANTS = (
    REPLICA_GRANTS
    + """
GRANT SELECT, INSERT, UPDATE ON processed_events, projection_positions TO {role};
GRANT SELECT, INSERT, UPDATE ON ticket_sla_clocks TO {role};
"""
)
