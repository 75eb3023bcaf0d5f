"""The deals database's own tables beside its event store (applied by `crm up` and `crm migrate deals`)."""

from __future__ import annotations

from crm_eventstore.customer_replica import REPLICA_DDL, REPLICA_GRANTS
from crm_eventstore.projection import PROJECTION_RUNTIME_DDL

# Contract end dates and invoice due dates, kept in the transaction that appends the aggregate's
# events; the scheduler scans it by due_on instead of folding every stream.
DEADLINES_DDL = """
CREATE TABLE IF NOT EXISTS deal_deadlines (
    kind          text        NOT NULL,
    aggregate_id  uuid        NOT NULL,
    customer_id   uuid        NOT NULL,
    version       integer     NOT NULL,
    due_on        date,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, aggregate_id)
);
CREATE INDEX IF NOT EXISTS deal_deadlines_due ON deal_deadlines (due_on) WHERE due_on IS NOT NULL;
"""

DDL = PROJECTION_RUNTIME_DDL + REPLICA_DDL + DEADLINES_DDL

GRANTS = (
    REPLICA_GRANTS
    + """
GRANT SELECT, INSERT, UPDATE ON processed_events, projection_positions TO {role};
GRANT SELECT, INSERT, UPDATE ON deal_deadlines TO {role};
"""
)
