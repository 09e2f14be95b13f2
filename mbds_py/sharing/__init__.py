"""Data sharing (paper Algorithm 3, design §3 step 5 and §5): the patient's access policy.

* :mod:`.policy` — the rules as plain Python (grants, preset rules, requests,
  emergency access, revocation epochs, the access decision); no web3;
* :mod:`.agent` — :class:`~.agent.AccessPolicyAgent`, the thin adapter over the
  ``AccessPolicy`` contract (calls and events as the model's dataclasses);
* :mod:`.errors` — :class:`~.errors.AccessDenied` and
  :class:`~.errors.PolicyViolation`.
"""

from .errors import AccessDenied, PolicyViolation
from .policy import (ALL_ACTIONS, ZERO32, AccessEvent, AccessRequest, Action, Basis, Decision, EmergencyAccess,
                     EmergencyState, Grant, Identity, PolicyConfig, PolicyState, PresetRule, Reason, RequestState,
                     Revocation, Scope, evaluate, grant_key, keyword_set_tag)

__all__ = [
    "ALL_ACTIONS", "ZERO32",
    "AccessDenied", "AccessEvent", "AccessRequest", "Action", "Basis", "Decision", "EmergencyAccess",
    "EmergencyState", "Grant", "Identity", "PolicyConfig", "PolicyState", "PolicyViolation", "PresetRule",
    "Reason", "RequestState", "Revocation", "Scope", "evaluate", "grant_key", "keyword_set_tag",
]
