"""Ticket use cases and the SLA scheduler."""
