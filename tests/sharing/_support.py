"""Helpers shared by the sharing tests: population, IDs, the World bundle, `reverts`."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from mbds_py.chain.client import ChainClient
from mbds_py.chain.governance import Council
from mbds_py.chain.identity import IdentityRegistryAgent
from mbds_py.errors import ContractRevert
from mbds_py.identity import Role
from mbds_py.sharing.agent import AccessPolicyAgent
from mbds_py.sharing.policy import HOUR, PolicyConfig

CONFIG = PolicyConfig(request_ttl=3 * 24 * HOUR, emergency_approval_window=1 * HOUR,
                      emergency_max_duration=24 * HOUR, emergency_quorum=2)

# label → (role, institution label)
POPULATION: dict[str, tuple[Role, str | None]] = {
    "hospital-a": (Role.HOSPITAL, None),
    "hospital-b": (Role.HOSPITAL, None),
    "platform": (Role.INTERNET_PLATFORM, None),
    "doctor-a1": (Role.DOCTOR, "hospital-a"),
    "doctor-a2": (Role.DOCTOR, "hospital-a"),
    "doctor-b1": (Role.DOCTOR, "hospital-b"),
    "online-doctor": (Role.DOCTOR, "platform"),
    "patient": (Role.PATIENT, None),
    "patient-2": (Role.PATIENT, None),
    "authority-national": (Role.AUTHORITY_NATIONAL, None),
    "authority-provincial": (Role.AUTHORITY_PROVINCIAL, None),
    "authority-municipal": (Role.AUTHORITY_MUNICIPAL, None),
    "insurer": (Role.INSURER, None),
}


def pid(label: str) -> bytes:
    """The participant ID of a population label."""
    return keccak(text=f"sharing-id/{label}")


def record(label: str) -> bytes:
    """A record (slip) ID."""
    return keccak(text=f"sharing-record/{label}")


@dataclass
class World:
    chain: ChainClient
    policy: AccessPolicyAgent
    registry: IdentityRegistryAgent
    accounts: dict[str, LocalAccount]
    proxy: LocalAccount
    kmc: LocalAccount

    def council(self, *labels: str) -> Council:
        """Authorities that together reach the governor's quorum (k = 2): national and provincial by default."""
        return Council(*(self.acct(a) for a in (labels or ("authority-national", "authority-provincial"))))

    def acct(self, label: str) -> LocalAccount:
        return self.accounts[label]

    def id(self, label: str) -> bytes:
        return pid(label)

    def now(self) -> int:
        return self.policy.now()


class reverts:  # noqa: N801 - used as a context manager like pytest.raises
    """Assert a ContractRevert with this custom error and, if given, exactly these args."""

    def __init__(self, name: str, *args):
        self.name = name
        self.args = args

    def __enter__(self):
        self._raises = pytest.raises(ContractRevert)
        self.info = self._raises.__enter__()
        return self.info

    def __exit__(self, *exc):
        handled = self._raises.__exit__(*exc)
        err = self.info.value
        assert err.error_name == self.name, str(err)
        if self.args:
            assert err.args_decoded == self.args, f"{err.error_name}{err.args_decoded!r} != {self.args!r}"
        return handled


def unkeyed_keyword_set_guesses(candidates: list[str], *, up_to: int = 3) -> set[bytes]:
    """Every value someone without the patient's key can compute from a candidate keyword list (issue 13 item
    9): the former unkeyed keyword-set hash and plain keccak / SHA-256 hashes of every subset of up to ``up_to``
    candidates, canonical and as given."""
    import hashlib
    from itertools import combinations

    from mbds_py.crypto.keywords import normalize_keyword

    out: set[bytes] = set()
    for words in (sorted({normalize_keyword(c) for c in candidates}), sorted(set(candidates))):
        for n in range(1, up_to + 1):
            for subset in combinations(words, n):
                joined = "\n".join(subset).encode()
                out |= {keccak(b"".join(sorted(keccak(text=c) for c in subset))), keccak(joined), keccak(b"".join(
                    c.encode() for c in subset)), hashlib.sha256(joined).digest(),
                    keccak(b"".join(sorted(hashlib.sha256(c.encode()).digest() for c in subset)))}
    return out

