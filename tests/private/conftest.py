"""A real private chain for node tests (see mbds_py.private.testbed)."""

from __future__ import annotations

import pytest

from mbds_py.private.testbed import Testbed, private_testbed, secrets_for  # noqa: F401

CHAIN_ID = 43150


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    # max_pending: a replica holding 200 unordered slips answers 429 (test_replicas' back-pressure test)
    with private_testbed(tmp_path_factory.mktemp("private-chain"), CHAIN_ID, max_pending=200) as bed:
        yield bed
