"""Settings of the deals service (API and worker)."""

from __future__ import annotations

import json

from crm_eventstore.settings import InfraSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crm_deals.domain.pipeline import DEFAULT_PIPELINE, Pipeline, Pipelines


class DealsSettings(InfraSettings):
    """CRM_ env vars; the database from CRM_DEALS_DATABASE_URL."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    deals_database_url: str = "postgresql://crm_deals@127.0.0.1:5432/crm_deals"
    deals_port: int = 8002
    deals_replica_group_id: str = "crm-deals-replica"
    projection_max_attempts: int = 5
    deals_scheduler_interval: float = Field(default=60.0, gt=0, description="Seconds between scheduler ticks")
    deals_pipelines: str = Field(
        default="{}",
        description='Extra pipelines as JSON, name → open stages, e.g. {"renewal": ["proposal", "negotiation"]};'
        " the default pipeline (lead, qualified, proposal, negotiation) is always there unless redefined",
    )

    def pipelines(self) -> Pipelines:
        """The default pipeline plus the configured ones."""
        configured = json.loads(self.deals_pipelines or "{}")
        if not isinstance(configured, dict):
            raise ValueError("CRM_DEALS_PIPELINES must be a JSON object of name → list of stages")
        pipelines = {DEFAULT_PIPELINE.name: DEFAULT_PIPELINE}
        for name, stages in configured.items():
            pipelines[str(name)] = Pipeline(str(name), tuple(str(stage) for stage in stages))
        return pipelines
