"""Pivot reports: one measure over one or two dimensions, with totals, as JSON or CSV."""
