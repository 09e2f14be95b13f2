"""A self-contained private chain for tests and benchmarks.

Anvil, IdentityRegistry with a hospital, two more hospitals' worth of
participants and the three health authorities, SlipLedger, a storage node and
four replica processes (hospital + national, provincial, municipal
authorities).  Participants' keys derive deterministically from labels.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from eth_account import Account
from eth_utils import keccak

from ..chain.client import ChainClient
from ..chain.governance import GovernanceParams
from ..chain.identity import IdentityRegistryAgent
from ..chain.slip_ledger import SlipLedgerAgent
from ..crypto import PatientSecrets, build_envelope, confirm_record, review_envelope
from ..devnet import DEV_DEPLOYER_KEY, Devnet, launch_chain
from ..identity import Participant, Role
from ..spec import parse_spec
from ..storage.client import KuboClient
from ..toolchain import artifact
from .client import HospitalClient
from .cluster import (ClusterHandle, bind_replica_sockets, deploy_slip_ledger, fund, node_config, replica_name,
                      start_cluster)

VALIDATOR_LABELS = ("hospital", "nha", "pha", "mha")


def secrets_for(label: str) -> PatientSecrets:
    return PatientSecrets.derive(keccak(text=f"private-test/{label}"))


def account_key(label: str) -> bytes:
    """The secp256k1 key ``secrets_for(label)`` signs with."""
    return secrets_for(label).to_bytes()[6:38]


def participant(label: str, role: Role, institution: bytes = bytes(32)) -> Participant:
    pk = secrets_for(label).public_keys
    return Participant(keccak(text=f"pid/{label}"), label, role, pk.address, pk.pre_key, pk.peks_key.to_bytes(),
                       institution)


@dataclass
class Testbed:
    url: str
    client: ChainClient
    identity: IdentityRegistryAgent
    ledger: SlipLedgerAgent
    devnet: Devnet
    cluster: ClusterHandle
    keys: list[bytes]
    storage: KuboClient
    people: dict[str, Participant]

    def api(self, *indices: int) -> HospitalClient:
        urls = self.cluster.api_urls
        return HospitalClient([urls[i] for i in (indices or range(len(urls)))])

    def record(self, n: int, *, doctor: str = "doctor", patient: str = "patient", tag: str = "", store: bool = True):
        """Doctor writes, patient confirms: (envelope, ConfirmedRecord) ready for POST /v1/slips."""
        return make_record(self.cluster.config.record_domain, n, doctor=doctor, patient=patient, tag=tag,
                           storage=self.storage if store else None)


def make_record(domain, n: int, *, doctor: str = "doctor", patient: str = "patient", tag: str = "", storage=None):
    pat = secrets_for(patient)
    doc = secrets_for(doctor)
    env = build_envelope({"resourceType": "Observation", "id": f"{tag}{n}", "valueQuantity": {"value": n}},
                         ["icd10|E11.9", "loinc|4548-4"], pat.public_keys, doc.signer,
                         timestamp=1_700_000_000 + n, record_type="lab", text=f"HbA1c #{tag}{n}", domain=domain)
    reviewed = review_envelope(env, pat, domain=domain, expected_doctor=doc.address)
    address = storage.add(reviewed.record_blob) if storage is not None else f"bench-record-{tag}{n}"
    return env, confirm_record(reviewed, pat, storage_address=address)


@contextmanager
def private_testbed(tmp: Path, chain_id: int, **node_params) -> Iterator[Testbed]:
    """Start everything; stop every process on exit."""
    proc, url = launch_chain("anvil", chain_id)
    spec = parse_spec({"storage": {"nodes": 1, "replicas": 1},
                       "chains": [{"name": "hospital", "kind": "consortium", "chain_id": chain_id, "rpc_url": url}]},
                      state_dir=tmp / "devnet")
    devnet = Devnet(spec)
    try:
        client = ChainClient(url, name="hospital")
        deployer = Account.from_key(DEV_DEPLOYER_KEY)
        kmc = Account.from_key(keccak(text="private-test/kmc"))
        fund(client, deployer, [kmc.address])
        art = artifact("IdentityRegistry")
        reg_addr, _ = client.deploy("IdentityRegistry", art.abi, art.bytecode, deployer, kmc.address,
                                    *GovernanceParams().as_args())
        identity = IdentityRegistryAgent(client, reg_addr)
        hospital = participant("hospital", Role.HOSPITAL)
        other = participant("other-hospital", Role.HOSPITAL)
        people = {p.name: p for p in [
            hospital, other,
            participant("nha", Role.AUTHORITY_NATIONAL), participant("pha", Role.AUTHORITY_PROVINCIAL),
            participant("mha", Role.AUTHORITY_MUNICIPAL),
            participant("doctor", Role.DOCTOR, hospital.id), participant("outsider", Role.DOCTOR, other.id),
            participant("patient", Role.PATIENT), participant("patient2", Role.PATIENT)]}
        for p in people.values():
            identity.register(kmc, p)
        keys = [account_key(v) for v in VALIDATOR_LABELS]
        validators = [Account.from_key(k).address for k in keys]
        fund(client, deployer, validators)
        ledger_addr = deploy_slip_ledger(client, deployer, validators)
        devnet.up_storage()
        storage_urls = devnet.storage_urls()
        params = dict(max_slips=16, max_wait=0.2, request_timeout=3.0, view_change_timeout=3.0, anchor_grace=1.0,
                      checkpoint_interval=4)
        params.update(node_params)
        sockets = bind_replica_sockets(devnet, "hospital", len(validators))
        config = node_config(chain="hospital", chain_id=chain_id, rpc_url=url, slip_ledger=ledger_addr,
                             identity_registry=reg_addr, hospital_id=hospital.id, validators=validators,
                             data_dir=tmp / "nodes", storage=storage_urls, sockets=sockets,
                             hosts=[spec.place(replica_name("hospital", i)).address for i in range(len(sockets))],
                             **params)
        cluster = start_cluster(devnet, config, keys, sockets)
        yield Testbed(url, client, identity, SlipLedgerAgent(ChainClient(url), ledger_addr), devnet, cluster, keys,
                      KuboClient(storage_urls[0]), people)
    finally:
        devnet.down()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
