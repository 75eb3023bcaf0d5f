"""The deals domain: pure deciders for deals, activities, contracts, orders, invoices and budgets."""
