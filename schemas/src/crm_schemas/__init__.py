"""crm_schemas."""
