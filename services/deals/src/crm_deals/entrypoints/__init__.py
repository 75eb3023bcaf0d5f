"""HTTP API and relay process of the deals service."""
