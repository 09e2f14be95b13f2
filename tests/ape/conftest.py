"""Shared set-up of the Ape modules: an IdentityRegistry with its AuthorityGovernor (k = 2 of three
health authorities, parameter changes after one day); `_support.govern` runs an operation through
k-of-n approval.  Every contract is deployed with Ape's `project`; Ape's test accounts play
the roles: 0 the KMC, 1–3 the national, provincial and municipal authorities, 4–9 the rest.
"""

from __future__ import annotations

import pytest

from _support import AUTHORITY_ROLES, DAY, PEKS_KEY, PRE_KEY, ZERO32, pid


@pytest.fixture(scope="module")
def kmc(accounts):
    return accounts[0]


@pytest.fixture(scope="module")
def authorities(accounts):
    return [accounts[1], accounts[2], accounts[3]]


@pytest.fixture(scope="module")
def identity(project, kmc, authorities):
    """The IdentityRegistry (it creates the governor) with the three health authorities registered."""
    registry = project.IdentityRegistry.deploy(kmc, 2, DAY, sender=kmc)
    for name, account, role in zip(("national", "provincial", "municipal"), authorities, AUTHORITY_ROLES):
        registry.register(pid(name), account, role, ZERO32, PRE_KEY, PEKS_KEY, sender=kmc)
    return registry


@pytest.fixture(scope="module")
def governor(project, identity):
    return project.AuthorityGovernor.at(identity.governor())
