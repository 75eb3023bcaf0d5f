"""Customer search: filters combined with AND, Japanese-aware name matching, keyset pagination."""
