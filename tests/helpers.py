"""Assertion helpers shared by the contract and model tests."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest

from mbds_py.errors import ContractRevert


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
