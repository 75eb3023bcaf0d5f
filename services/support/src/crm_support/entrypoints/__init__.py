"""HTTP API, relay and worker (customer replica + SLA scheduler) processes of the support service."""
