"""The contacts database's own tables beside the event store (applied by `crm up` and `crm migrate contacts`)."""

from crm_contacts.app.directory import DIRECTORY_DDL, DIRECTORY_GRANTS

DDL = DIRECTORY_DDL
GRANTS = DIRECTORY_GRANTS
