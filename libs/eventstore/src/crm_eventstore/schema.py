"""DDL of a service's event store database; every statement is safe to run twice."""

from __future__ import annotations

from crm_http.access_log import ACCESS_LOG_DDL, ACCESS_LOG_GRANTS

# Why the ordering key is not simply pg_current_xact_id():
# readers tail the global order below the transaction-id horizon (see docs/adr/0002). A
# transaction that wrote something earlier (an idempotency record, say) holds an xid older
# than a transaction that appended to the same stream and committed in the meantime, so
# ordering by raw xid could put version 2 of a stream before version 1. The trigger gives
# each event max(own xid, tx_id of the stream's previous event): never below the writer's
# own xid (so the horizon proof still holds) and monotonic along every stream.
EVENT_STORE_DDL = r"""
CREATE TABLE IF NOT EXISTS events (
    position        bigint GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL PRIMARY KEY,
    type            text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    service         text        NOT NULL,
    stream_id       text        NOT NULL,
    version         integer     NOT NULL CHECK (version >= 1),
    customer_id     uuid        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor           jsonb       NOT NULL,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid,
    traceparent     text,
    payload         jsonb       NOT NULL,
    prev_hash       text,
    hash            text        NOT NULL,
    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
);
CREATE INDEX IF NOT EXISTS events_global_order ON events (tx_id, position);
CREATE INDEX IF NOT EXISTS events_customer ON events (customer_id);

CREATE OR REPLACE FUNCTION events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev record;
BEGIN
    IF NEW.version = 1 THEN
        IF NEW.prev_hash IS NOT NULL THEN
            RAISE EXCEPTION 'first event of % must not have a prev_hash', NEW.stream_id
                USING ERRCODE = 'CRM02';
        END IF;
        NEW.tx_id := pg_current_xact_id();
        RETURN NEW;
    END IF;
    SELECT hash, tx_id INTO prev FROM events
     WHERE stream_id = NEW.stream_id AND version = NEW.version - 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream % has no version %', NEW.stream_id, NEW.version - 1
            USING ERRCODE = 'CRM01';
    END IF;
    IF prev.hash IS DISTINCT FROM NEW.prev_hash THEN
        RAISE EXCEPTION 'prev_hash of %@% does not match the stream head', NEW.stream_id, NEW.version
            USING ERRCODE = 'CRM02';
    END IF;
    NEW.tx_id := GREATEST(pg_current_xact_id(), prev.tx_id);
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION crm_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP USING ERRCODE = 'CRM00';
END $$;

CREATE OR REPLACE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at commit only, so a relay woken by it finds the events visible.
    PERFORM pg_notify('crm_events', '');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS events_before_insert ON events;
CREATE TRIGGER events_before_insert BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_before_insert();
DROP TRIGGER IF EXISTS events_append_only ON events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION crm_reject_change();
DROP TRIGGER IF EXISTS events_no_truncate ON events;
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION crm_reject_change();
DROP TRIGGER IF EXISTS events_notify ON events;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key           text        PRIMARY KEY,
    request_hash  text        NOT NULL,
    status_code   integer,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS relay_positions (
    relay         text        PRIMARY KEY,
    tx_id         xid8        NOT NULL,
    position      bigint      NOT NULL,
    published     bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS scheduler_state (
    name          text        PRIMARY KEY,
    state         jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
"""
# Every service's database also keeps the append-only log of who read whose personal data
# (crm_http.access_log): the service's endpoints record their reads in it, auditors query it.
EVENT_STORE_DDL += ACCESS_LOG_DDL


def grants(role: str) -> str:
    """Privileges of a service's runtime role: append and read events, never change them."""
    quoted = '"' + role.replace('"', '""') + '"'
    return f"""
REVOKE ALL ON events FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM {quoted};
GRANT SELECT, INSERT ON events TO {quoted};
GRANT SELECT, INSERT, UPDATE ON idempotency_keys TO {quoted};
GRANT SELECT, INSERT, UPDATE ON relay_positions TO {quoted};
GRANT SELECT, INSERT, UPDATE ON scheduler_state TO {quoted};
""" + ACCESS_LOG_GRANTS.format(role=quoted)
