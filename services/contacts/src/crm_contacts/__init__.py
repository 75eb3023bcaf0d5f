"""crm_contacts."""
