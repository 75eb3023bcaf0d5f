"""Saved customer segments: a name and the search filters that define its members."""
