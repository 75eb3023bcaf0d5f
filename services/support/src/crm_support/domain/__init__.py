"""Pure ticket domain: commands, the ticket decider and service-level rules."""
