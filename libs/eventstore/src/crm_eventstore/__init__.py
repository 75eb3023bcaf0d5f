"""crm_eventstore."""
