"""HTTP API and relay process of the contacts service."""
