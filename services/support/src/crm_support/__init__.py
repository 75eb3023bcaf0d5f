"""crm_support."""
