"""Configuration every service process reads from its environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class InfraSettings(BaseSettings):
    """Where Kafka, the key database and the token issuer are (env vars prefixed CRM_)."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_partitions: int = Field(default=6, ge=1)
    kafka_idempotence: str = Field(default="auto", pattern="^(auto|true|false)$")
    kafka_security_protocol: str = Field(default="PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    kafka_sasl_mechanism: str = Field(default="SCRAM-SHA-512", pattern="^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: Path | None = None
    keys_database_url: str = "postgresql://crm_keys@127.0.0.1:5432/crm_keys"
    master_key: str = Field(default="", description="base64 of 32 bytes; wraps the customer keys")
    jwt_issuer: str = "crm-dev"
    jwt_audience: str = "crm"
    jwks_url: str | None = None
    jwks_file: Path | None = None
    relay_poll_interval: float = 1.0
    metrics_host: str = Field(default="127.0.0.1", description="Bind address of worker processes' metrics port")


def service_database_url(service: str) -> str:
    """The service's own database URL from CRM_<SERVICE>_DATABASE_URL."""
    import os

    name = f"CRM_{service.upper()}_DATABASE_URL"
    url = os.environ.get(name)
    if not url:
        raise RuntimeError(f"{name} is not set")
    return url
