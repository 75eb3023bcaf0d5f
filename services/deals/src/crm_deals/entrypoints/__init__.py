"""HTTP API, relay and worker processes of the deals service."""
