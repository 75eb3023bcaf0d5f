"""crm_cli."""
