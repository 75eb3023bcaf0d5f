"""DDL and runtime-role grants of the fact tables (and of saved segments, which live beside them)."""

from __future__ import annotations

# Every fact row carries the customer the event named (customer_id) and the customer it counts for
# now (subject_id): the survivor once that customer was merged into another (名寄せ), itself otherwise.
# A merge or unmerge re-points subject_id; no fact is lost or duplicated by it.
FACTS_DDL = """
CREATE TABLE IF NOT EXISTS fact_customers (
    customer_id   uuid PRIMARY KEY,
    kind          text,
    name          text,
    name_kana     text,
    search_text   text   NOT NULL DEFAULT '',
    search_grams  text[] NOT NULL DEFAULT '{}',
    sort_name     text   NOT NULL DEFAULT '',
    prefecture    text,
    city          text,
    industry      text,
    rank          text,
    fiscal_month  integer,
    tags          text[] NOT NULL DEFAULT '{}',
    registered_at timestamptz,
    merged_into   uuid,
    erased        boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fact_customers_grams ON fact_customers USING gin (search_grams);
CREATE INDEX IF NOT EXISTS fact_customers_tags ON fact_customers USING gin (tags);
CREATE INDEX IF NOT EXISTS fact_customers_merged_into ON fact_customers (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX IF NOT EXISTS fact_customers_sort_name ON fact_customers (sort_name COLLATE "C", customer_id);
CREATE INDEX IF NOT EXISTS fact_customers_registered ON fact_customers (registered_at, customer_id);

CREATE TABLE IF NOT EXISTS fact_consents (
    customer_id uuid    NOT NULL,
    channel     text    NOT NULL,
    purpose     text    NOT NULL,
    granted     boolean NOT NULL,
    changed_at  timestamptz NOT NULL,
    PRIMARY KEY (customer_id, channel, purpose)
);

CREATE TABLE IF NOT EXISTS fact_orders (
    order_id    uuid PRIMARY KEY,
    customer_id uuid    NOT NULL,
    subject_id  uuid    NOT NULL,
    order_date  date,
    currency    text,
    total       numeric NOT NULL DEFAULT 0,
    reversed    numeric NOT NULL DEFAULT 0,
    status      text    NOT NULL DEFAULT 'placed',
    deal_id     uuid
);
CREATE INDEX IF NOT EXISTS fact_orders_subject ON fact_orders (subject_id, order_date);
CREATE INDEX IF NOT EXISTS fact_orders_customer ON fact_orders (customer_id);
CREATE INDEX IF NOT EXISTS fact_orders_date ON fact_orders (order_date);

CREATE TABLE IF NOT EXISTS fact_order_lines (
    order_id     uuid    NOT NULL,
    line_no      integer NOT NULL,
    customer_id  uuid    NOT NULL,
    subject_id   uuid    NOT NULL,
    order_date   date    NOT NULL,
    product_code text    NOT NULL,
    product_name text,
    category     text,
    unit_price   numeric NOT NULL,
    quantity     integer NOT NULL,
    line_amount  numeric NOT NULL,
    reversed     numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX IF NOT EXISTS fact_order_lines_subject ON fact_order_lines (subject_id);
CREATE INDEX IF NOT EXISTS fact_order_lines_customer ON fact_order_lines (customer_id);
CREATE INDEX IF NOT EXISTS fact_order_lines_category ON fact_order_lines (category, order_date);
CREATE INDEX IF NOT EXISTS fact_order_lines_product ON fact_order_lines (product_code, order_date);

-- Cancellations and returns, one row per event (and per returned line), so an order's reversed
-- amount is recomputed from them whatever order they arrive in.
CREATE TABLE IF NOT EXISTS fact_order_reversals (
    event_id    uuid    NOT NULL,
    line_no     integer NOT NULL,
    order_id    uuid    NOT NULL,
    kind        text    NOT NULL,
    full_order  boolean NOT NULL,
    amount      numeric NOT NULL,
    PRIMARY KEY (event_id, line_no)
);
CREATE INDEX IF NOT EXISTS fact_order_reversals_order ON fact_order_reversals (order_id);

CREATE TABLE IF NOT EXISTS fact_deals (
    deal_id             uuid PRIMARY KEY,
    customer_id         uuid NOT NULL,
    subject_id          uuid NOT NULL,
    title               text,
    owner               text,
    team                text,
    pipeline            text,
    stage               text,
    status              text,
    amount              numeric,
    currency            text,
    opened_on           date,
    expected_close_date date,
    closed_on           date,
    lost_reason         text
);
CREATE INDEX IF NOT EXISTS fact_deals_subject ON fact_deals (subject_id);
CREATE INDEX IF NOT EXISTS fact_deals_customer ON fact_deals (customer_id);
CREATE INDEX IF NOT EXISTS fact_deals_status ON fact_deals (status, owner);

CREATE TABLE IF NOT EXISTS fact_tickets (
    ticket_id   uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    subject_id  uuid NOT NULL,
    kind        text,
    category    text,
    channel     text,
    priority    text,
    product     text,
    status      text,
    opened_at   timestamptz,
    resolved_at timestamptz,
    csat        integer,
    rated_at    timestamptz
);
ALTER TABLE fact_tickets ADD COLUMN IF NOT EXISTS assignee text, ADD COLUMN IF NOT EXISTS team text;
CREATE INDEX IF NOT EXISTS fact_tickets_subject ON fact_tickets (subject_id);
CREATE INDEX IF NOT EXISTS fact_tickets_customer ON fact_tickets (customer_id);

CREATE TABLE IF NOT EXISTS fact_activities (
    activity_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    subject_id  uuid NOT NULL,
    kind        text NOT NULL,
    staff       text,
    deal_id     uuid,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS fact_activities_subject ON fact_activities (subject_id, occurred_at);
CREATE INDEX IF NOT EXISTS fact_activities_customer ON fact_activities (customer_id);

-- Per-customer figures the search sorts and filters on, recomputed from the facts above whenever
-- one of that customer's facts changes (so they never drift, whatever order events arrive in).
CREATE TABLE IF NOT EXISTS fact_customer_totals (
    customer_id         uuid PRIMARY KEY,
    revenue             numeric NOT NULL DEFAULT 0,
    order_count         integer NOT NULL DEFAULT 0,
    first_purchase_date date,
    last_purchase_date  date,
    last_contact_at     timestamptz,
    open_complaints     integer NOT NULL DEFAULT 0,
    open_tickets        integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS fact_customer_totals_revenue ON fact_customer_totals (revenue, customer_id);

CREATE TABLE IF NOT EXISTS segments (
    segment_id uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    filters    jsonb NOT NULL,
    sort       text NOT NULL,
    created_at timestamptz NOT NULL,
    created_by text NOT NULL
);
"""

FACTS_GRANTS = """
GRANT SELECT, INSERT, UPDATE, DELETE ON fact_customers, fact_consents, fact_orders, fact_order_lines,
    fact_order_reversals, fact_deals, fact_tickets, fact_activities, fact_customer_totals TO {role};
GRANT SELECT, INSERT ON segments TO {role};
"""
