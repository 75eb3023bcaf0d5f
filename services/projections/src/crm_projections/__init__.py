"""crm_projections."""
