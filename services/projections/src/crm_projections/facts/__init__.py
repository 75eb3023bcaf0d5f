"""Flat fact tables (customer profile, orders and lines, deals, tickets, activities, consents) fed by one projection."""
