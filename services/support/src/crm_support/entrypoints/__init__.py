"""HTTP API and relay process of the support service."""
