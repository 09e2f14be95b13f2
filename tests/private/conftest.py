"""A real private chain for node tests (see mbds_py.private.testbed)."""

from __future__ import annotations

import pytest

from mbds_py.private.testbed import Testbed, private_testbed, secrets_for  # noqa: F401

CHAIN_ID = 43150


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    with private_testbed(tmp_path_factory.mktemp("private-chain"), CHAIN_ID) as bed:
        yield bed
