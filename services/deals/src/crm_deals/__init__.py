"""crm_deals."""
