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
