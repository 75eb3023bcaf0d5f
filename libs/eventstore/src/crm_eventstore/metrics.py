"""Prometheus metrics of relays and projections."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RELAY_PUBLISHED = Counter("crm_relay_published_events_total", "Events published by a relay", ["service"])
RELAY_LAG_EVENTS = Gauge("crm_relay_lag_events", "Committed events not yet acknowledged by the broker", ["service"])
RELAY_LAG_SECONDS = Gauge(
    "crm_relay_lag_seconds", "Age of the oldest event not yet published (0 when caught up)", ["service"]
)
PROJECTION_APPLIED = Counter("crm_projection_applied_events_total", "Events applied by a projection", ["projection"])
PROJECTION_DUPLICATES = Counter(
    "crm_projection_duplicate_events_total", "Redelivered events skipped by dedupe", ["projection"]
)
PROJECTION_FAILURES = Counter("crm_projection_failures_total", "Failed attempts to apply an event", ["projection"])
PROJECTION_DEADLETTERED = Counter(
    "crm_projection_deadlettered_total", "Events sent to the dead-letter topic", ["projection"]
)
PROJECTION_LAG_EVENTS = Gauge(
    "crm_projection_lag_events", "Records behind the partition end", ["projection", "topic", "partition"]
)
PROJECTION_LAG_SECONDS = Gauge(
    "crm_projection_lag_seconds", "Seconds between recording and applying the last event", ["projection"]
)
