"""Operating the read models: zero-downtime rebuilds, rebuild status and consumer lag."""
