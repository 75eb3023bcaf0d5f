"""Settings of the projections service (query API and consumers)."""

from __future__ import annotations

from crm_eventstore.settings import InfraSettings
from pydantic_settings import SettingsConfigDict


class ProjectionsSettings(InfraSettings):
    """CRM_ env vars; the read-model database from CRM_PROJECTIONS_DATABASE_URL."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    projections_database_url: str = "postgresql://crm_projections@127.0.0.1:5432/crm_projections"
    projections_port: int = 8000
    projections_group_id: str = "crm-projections"
    projection_max_attempts: int = 5
    # Read-only URLs of the services' event stores: GET /customers/{id}/timeline/verify and
    # `crm projections rebuild --source event-stores` read the source events from them.
    contacts_database_url: str | None = None
    deals_database_url: str | None = None
    support_database_url: str | None = None
    # GET /readyz of the query API answers 503 while a projection rebuilds or is farther behind than this.
    projection_max_lag_events: int = 10_000
    projection_max_lag_seconds: float = 300.0
