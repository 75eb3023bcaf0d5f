"""Use cases of the contacts service: load, decide, append."""
