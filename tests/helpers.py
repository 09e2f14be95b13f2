"""Helpers shared by the tests: revert assertions, a whole live network."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import pytest

from mbds_py.errors import ContractRevert

if TYPE_CHECKING:
    import http.client

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


def devchain_spec(work, engine: str = "anvil", block_time: int = 0):
    """The default spec (state in ``work``/devnet) with every chain on ``engine`` mining every ``block_time``
    seconds (0: on arrival); any other than Anvil on arrival is written to ``work`` (``spec.path``)."""
    from mbds_py.spec import default_spec_text, load_spec

    if (engine, block_time) == ("anvil", 0):
        return load_spec(None, state_dir=work / "devnet")
    path = work / f"{engine}-{block_time}.toml"
    path.write_text(default_spec_text().replace('engine = "anvil"', f'engine = "{engine}"\nblock_time = {block_time}', 1))
    spec = load_spec(path, state_dir=work / "devnet")
    assert {(c.engine, c.block_time) for c in spec.chains} == {(engine, block_time)}
    return spec


@contextmanager
def live_network_of(work, population, *, engine: str = "anvil", block_time: int = 0,
                    **network_kw) -> Iterator["Network"]:
    """:func:`live_network` with another population (and other :class:`~mbds_py.network.Network` fields, e.g.
    ``dpos``; every chain on another devchain ``engine`` or ``block_time``): tests that need participants of their
    own, so that none depends on what another test did."""
    import secrets

    from mbds_py.network import Network, PrivateChainSettings

    net = Network(devchain_spec(work, engine, block_time), secrets.token_urlsafe(16), population=tuple(population),
                  settings=PrivateChainSettings(max_slips=32, max_wait=0.5), scrypt_n=2**10, **network_kw)
    try:
        yield net.bring_up()
    finally:
        net.stop()


def members_for(names, role, *, institution: str | None = None):
    """Population members for test-only participants (``institution``: the hospital a doctor works at)."""
    from mbds_py.population import Member

    return tuple(Member(name, role, f"test participant {name}", institution=institution) for name in names)


def http_conn(port: int, timeout: float = 30) -> "http.client.HTTPConnection":
    """A keep-alive HTTP/1.1 connection to a service on 127.0.0.1:``port``."""
    import http.client

    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def json_answer(conn: "http.client.HTTPConnection") -> tuple[int, dict]:
    """The status and JSON body of the connection's pending response (which must be JSON)."""
    import json

    resp = conn.getresponse()
    assert resp.getheader("Content-Type").startswith("application/json")
    return resp.status, json.loads(resp.read())
