"""The customer timeline read model."""
