"""Pure customer-master domain: commands, state, decide and evolve."""
