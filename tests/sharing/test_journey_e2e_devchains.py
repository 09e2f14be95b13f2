"""The sharing end-to-end tests again on the other devchains: every chain on Ganache, then every chain on Anvil
mining a block each second (as real chains do) instead of on arrival. Same tests, same assertions; each devchain
gets a network of its own (module fixture ``world``, parametrized through ``devchain``)."""

from __future__ import annotations

import pytest

from tests.sharing.test_journey_e2e import *  # noqa: F401,F403 — the tests and fixtures, collected here again

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module", params=[
    pytest.param(("ganache", 0), marks=[pytest.mark.ganache, pytest.mark.xdist_group("sharing-e2e-ganache")],
                 id="ganache"),
    pytest.param(("anvil", 1), marks=pytest.mark.xdist_group("sharing-e2e-block-time"), id="anvil-block-time-1s"),
])
def devchain(request) -> tuple[str, int]:
    return request.param
