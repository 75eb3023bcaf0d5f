"""Settings of the contacts service."""

from __future__ import annotations

from crm_eventstore.settings import InfraSettings
from pydantic_settings import SettingsConfigDict


class ContactsSettings(InfraSettings):
    """Contacts service settings (CRM_ env vars; the database from CRM_CONTACTS_DATABASE_URL)."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    contacts_database_url: str = "postgresql://crm_contacts@127.0.0.1:5432/crm_contacts"
    contacts_port: int = 8001
