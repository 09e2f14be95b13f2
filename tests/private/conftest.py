"""A real private chain for node tests: Anvil, IdentityRegistry, SlipLedger, a storage node
and four replica processes (hospital + national, provincial, municipal authorities)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_utils import keccak

from mbds_py.chain.client import ChainClient
from mbds_py.chain.identity import IdentityRegistryAgent
from mbds_py.chain.slip_ledger import SlipLedgerAgent
from mbds_py.crypto import PatientSecrets, build_envelope, confirm_record, review_envelope
from mbds_py.devnet import DEV_DEPLOYER_KEY, Devnet, launch_chain
from mbds_py.identity import Participant, Role
from mbds_py.private.client import HospitalClient
from mbds_py.private.cluster import ClusterHandle, deploy_slip_ledger, fund, node_config, start_cluster
from mbds_py.spec import parse_spec
from mbds_py.storage.client import KuboClient
from mbds_py.toolchain import artifact

CHAIN_ID = 43150


def secrets_for(label: str) -> PatientSecrets:
    return PatientSecrets.derive(keccak(text=f"private-test/{label}"))


def participant(label: str, role: Role, institution: bytes = bytes(32)) -> Participant:
    s = secrets_for(label)
    pk = s.public_keys
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

    def record(self, n: int, *, doctor: str = "doctor", patient: str = "patient", tag: str = ""):
        """Doctor writes, patient confirms: a ConfirmedRecord ready for POST /v1/slips."""
        domain = self.cluster.config.record_domain
        pat = secrets_for(patient)
        doc = secrets_for(doctor)
        env = build_envelope({"resourceType": "Observation", "id": f"{tag}{n}", "valueQuantity": {"value": n}},
                             ["icd10|E11.9", "loinc|4548-4"], pat.public_keys, doc.signer,
                             timestamp=1_700_000_000 + n, record_type="lab", text=f"HbA1c #{tag}{n}",
                             domain=domain)
        reviewed = review_envelope(env, pat, domain=domain, expected_doctor=doc.address)
        cid = self.storage.add(reviewed.record_blob)
        return env, confirm_record(reviewed, pat, storage_address=cid)


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("private-chain")
    proc, url = launch_chain("anvil", CHAIN_ID)
    spec = parse_spec({"storage": {"nodes": 1, "replicas": 1},
                       "chains": [{"name": "hospital", "kind": "consortium", "chain_id": CHAIN_ID, "rpc_url": url}]},
                      state_dir=tmp / "devnet")
    devnet = Devnet(spec)
    try:
        client = ChainClient(url, name="hospital")
        deployer = Account.from_key(DEV_DEPLOYER_KEY)
        kmc = Account.from_key(keccak(text="private-test/kmc"))
        fund(client, deployer, [kmc.address])
        art = artifact("IdentityRegistry")
        reg_addr, _ = client.deploy("IdentityRegistry", art.abi, art.bytecode, deployer, kmc.address)
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
        validator_labels = ["hospital", "nha", "pha", "mha"]
        keys = [_account_key(v) for v in validator_labels]
        validators = [Account.from_key(k).address for k in keys]
        fund(client, deployer, validators)
        ledger_addr = deploy_slip_ledger(client, deployer, validators)
        devnet.up_storage()
        storage_urls = devnet.storage_urls()
        config = node_config(chain="hospital", chain_id=CHAIN_ID, rpc_url=url, slip_ledger=ledger_addr,
                             identity_registry=reg_addr, hospital_id=hospital.id, validators=validators,
                             data_dir=tmp / "nodes", storage=storage_urls, max_slips=16, max_wait=0.2,
                             request_timeout=3.0, view_change_timeout=3.0, anchor_grace=1.0, checkpoint_interval=4)
        cluster = start_cluster(devnet, config, keys)
        yield Testbed(url, client, identity, SlipLedgerAgent(ChainClient(url), ledger_addr), devnet, cluster, keys,
                      KuboClient(storage_urls[0]), people)
    finally:
        devnet.down()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _account_key(label: str) -> bytes:
    """The secp256k1 key PatientSecrets.derive gives this label (validators sign with it)."""
    from mbds_py.crypto.keys import PatientSecrets as _PS

    return _PS.derive(keccak(text=f"private-test/{label}")).to_bytes()[6:38]
