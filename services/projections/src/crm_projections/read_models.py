"""The schema of the projections database: every read model's DDL and runtime-role grants, in order.

`crm up` and `crm migrate projections` apply ``READ_MODELS_DDL`` / ``READ_MODELS_GRANTS``; a new read model
adds its DDL and grants to the tuples below (DDL must be idempotent: it runs on every start).
"""

from __future__ import annotations

from crm_projections.facts.schema import FACTS_DDL, FACTS_GRANTS
from crm_projections.privacy.store import PRIVACY_DDL, PRIVACY_GRANTS
from crm_projections.rebuild.status import OPERATIONS_DDL, OPERATIONS_GRANTS
from crm_projections.timeline.project import TIMELINE_DDL, TIMELINE_GRANTS

_DDL: tuple[str, ...] = (TIMELINE_DDL, PRIVACY_DDL, OPERATIONS_DDL, FACTS_DDL)
_GRANTS: tuple[str, ...] = (TIMELINE_GRANTS, PRIVACY_GRANTS, OPERATIONS_GRANTS, FACTS_GRANTS)

READ_MODELS_DDL = "\n".join(_DDL)
READ_MODELS_GRANTS = "\n".join(_GRANTS)
