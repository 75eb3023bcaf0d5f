"""Customer 360: a pure fold of the customer's timeline into profile, relations and revenue metrics."""
