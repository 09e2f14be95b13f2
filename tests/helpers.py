"""Helpers shared by the tests: revert assertions, a whole live network."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import pytest

from mbds_py.errors import ContractRevert

if TYPE_CHECKING:
    from mbds_py.network import Network


@contextmanager
def raises_named(exc_type: type[BaseException], name: str, *args) -> Iterator[pytest.ExceptionInfo]:
    """Assert that the block raises ``exc_type`` whose ``error_name`` is ``name`` (and, if given, whose
    decoded arguments are ``args``)."""
    with pytest.raises(exc_type) as info:
        yield info
    assert info.value.error_name == name, str(info.value)
    if args:
        assert info.value.args_decoded == args, f"{info.value.args_decoded!r} != {args!r}"


def reverts(name: str, *args):
    """Assert a contract call reverts with the custom error ``name`` (and these decoded arguments)."""
    return raises_named(ContractRevert, name, *args)


@contextmanager
def live_network(work) -> Iterator["Network"]:
    """A whole network (devnet, contracts, registrations, election, replicas, consortium nodes) in ``work``,
    with a random passphrase and cheap keystores; stopped on exit."""
    import secrets

    from mbds_py.network import Network, PrivateChainSettings
    from mbds_py.spec import load_spec

    net = Network(load_spec(None, state_dir=work / "devnet"), secrets.token_urlsafe(16),
                  settings=PrivateChainSettings(max_slips=32, max_wait=0.5), scrypt_n=2**10)
    try:
        yield net.bring_up()
    finally:
        net.stop()


@contextmanager
def live_network_of(work, population, **network_kw) -> Iterator["Network"]:
    """:func:`live_network` with another population (and other :class:`~mbds_py.network.Network` fields, e.g.
    ``dpos``): tests that need participants of their own, so that none depends on what another test did."""
    import secrets

    from mbds_py.network import Network, PrivateChainSettings
    from mbds_py.spec import load_spec

    net = Network(load_spec(None, state_dir=work / "devnet"), secrets.token_urlsafe(16), population=tuple(population),
                  settings=PrivateChainSettings(max_slips=32, max_wait=0.5), scrypt_n=2**10, **network_kw)
    try:
        yield net.bring_up()
    finally:
        net.stop()


def members_for(names, role, *, institution: str | None = None):
    """Population members for test-only participants (``institution``: the hospital a doctor works at)."""
    from mbds_py.population import Member

    return tuple(Member(name, role, f"test participant {name}", institution=institution) for name in names)
