"""Settings of the support service (API and worker)."""

from __future__ import annotations

from datetime import time
from typing import Literal

from crm_eventstore.settings import InfraSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from crm_support.calendars import holiday_calendar
from crm_support.domain.sla import BusinessHours, SlaPolicy


class SupportSettings(InfraSettings):
    """CRM_ env vars; the database from CRM_SUPPORT_DATABASE_URL."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    support_database_url: str = "postgresql://crm_support@127.0.0.1:5432/crm_support"
    support_port: int = 8003
    support_replica_group_id: str = "crm-support-replica"
    projection_max_attempts: int = 5
    support_business_hours: str = Field(
        default="09:00-18:00",
        pattern=r"^(24x7|([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9])$",
        description="SLA clock: `24x7`, or opening hours HH:MM-HH:MM in JST on weekdays",
    )
    support_holidays: Literal["jp", "none"] = Field(
        default="jp", description="With business hours: `jp` keeps the desk closed on Japanese public holidays"
    )
    support_year_end_closure: bool = Field(default=True, description="With business hours: closed Dec 29 - Jan 3")
    support_sla_interval: float = Field(default=30.0, gt=0, description="Seconds between SLA scheduler ticks")

    def sla_policy(self) -> SlaPolicy:
        """The SLA policy these settings describe."""
        if self.support_business_hours == "24x7":
            return SlaPolicy(name="24x7")
        opens, closes = (time.fromisoformat(part) for part in self.support_business_hours.split("-"))
        japanese, year_end = self.support_holidays == "jp", self.support_year_end_closure
        name = f"business-hours {self.support_business_hours} JST weekdays"
        name += ", Japanese holidays" if japanese else ""
        name += ", year-end closure" if year_end else ""
        calendar = holiday_calendar(japanese_holidays=japanese, year_end_closure=year_end)
        return SlaPolicy(name=name, hours=BusinessHours(opens=opens, closes=closes, is_holiday=calendar))
