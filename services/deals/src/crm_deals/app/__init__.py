"""Deals use cases (load, fold, decide, append) and the scheduler."""
