"""The deals service's read-only replica of the customer master, fed by crm.contacts.events.v1."""
