"""Agent for SlipLedger: commit PBFT-certified headers, prove slips against them."""

from __future__ import annotations

from typing import Any, Sequence

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ..pbft.types import BlockHeader, QuorumCertificate, SlipEnvelope
from ..toolchain import artifact
from .client import ChainClient, receipt_events

CONTRACT = "SlipLedger"


def header_tuple(h: BlockHeader) -> tuple:
    """ABI tuple of ISlipLedger.BlockHeader."""
    return (h.height, h.seq, h.prev_hash, h.timestamp, to_checksum_address(h.creator), h.merkle_root, h.body_cid)


def pack_signatures(signed: Sequence[tuple[int, bytes]]) -> tuple[bytes, bytes]:
    """(signer indexes, concatenated 65-byte signatures), ascending by validator index as the contract requires."""
    ordered = sorted(signed, key=lambda p: p[0])
    return bytes(i for i, _ in ordered), b"".join(sig for _, sig in ordered)


def set_of(validators: Sequence[bytes | str]) -> list[str]:
    return [to_checksum_address(v) for v in validators]


VALIDATOR_SET_CHANGE_TYPES = {"ValidatorSetChange": [{"name": "epoch", "type": "uint64"},
                                                     {"name": "fromHeight", "type": "uint64"},
                                                     {"name": "validators", "type": "address[]"}]}


def validator_set_change_digest(chain_id: int, ledger: str, epoch: int, from_height: int,
                                validators: Sequence[bytes | str]) -> bytes:
    """The EIP-712 digest a validator-set change is signed over (by a quorum of the latest set and of the new
    set): ``ValidatorSetChange(uint64 epoch,uint64 fromHeight,address[] validators)`` in the SlipLedger domain."""
    from eth_account.messages import encode_typed_data
    from eth_utils import keccak

    domain = {"name": "MBDS SlipLedger", "version": "1", "chainId": chain_id,
              "verifyingContract": to_checksum_address(ledger)}
    message = {"epoch": epoch, "fromHeight": from_height, "validators": set_of(validators)}
    signable = encode_typed_data(domain, VALIDATOR_SET_CHANGE_TYPES, message)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


class SlipLedgerAgent:
    """Thin adapter over one SlipLedger deployment."""

    def __init__(self, client: ChainClient, address: str):
        self.client = client
        self.address = address
        self.contract = client.contract(CONTRACT, address, artifact(CONTRACT).abi)

    def commit_function(self, qc: QuorumCertificate, validators: Sequence[bytes]) -> Any:
        indexes, sigs = pack_signatures([(s.signer, s.signature) for s in qc.signatures])
        return self.contract.functions.commitBlock(header_tuple(qc.header), qc.view, set_of(validators), indexes, sigs)

    def commit(self, sender: LocalAccount, qc: QuorumCertificate, validators: Sequence[bytes], *,
               gas: int | None = None) -> dict[str, Any]:
        """Submit a certified header (idempotent: an already committed header is a no-op).  A fixed ``gas``
        skips the estimation round trip (a revert then shows on the receipt, raised the same way)."""
        return self.client.transact(self.commit_function(qc, validators), sender, contract=CONTRACT, gas=gas)

    def commit_many_function(self, qcs: Sequence[QuorumCertificate], validators: Sequence[bytes]) -> Any:
        """``commitBlocks``: consecutive certified headers (the first at head + 1), one certificate each."""
        certificates = [(qc.view, *pack_signatures([(s.signer, s.signature) for s in qc.signatures])) for qc in qcs]
        return self.contract.functions.commitBlocks([header_tuple(qc.header) for qc in qcs], certificates,
                                                    set_of(validators))

    def commit_many(self, sender: LocalAccount, qcs: Sequence[QuorumCertificate], validators: Sequence[bytes], *,
                    gas: int | None = None) -> dict[str, Any]:
        """Anchor consecutive certified headers in one transaction, all or nothing (each still checked against
        its own certificate; the batch must start at head + 1 and stay within one validator set)."""
        return self.client.transact(self.commit_many_function(qcs, validators), sender, contract=CONTRACT, gas=gas)

    def change_digest(self, epoch: int, from_height: int, new_validators: Sequence[bytes | str]) -> bytes:
        """What both quorums sign for :meth:`change_validators`."""
        return validator_set_change_digest(self.client.chain_id, self.address, epoch, from_height, new_validators)

    def change_validators(self, sender: LocalAccount, new_validators: Sequence[bytes | str], from_height: int,
                          current: Sequence[bytes | str], by_current: Sequence[tuple[int, bytes]],
                          by_new: Sequence[tuple[int, bytes]], *, epoch: int | None = None) -> dict[str, Any]:
        """Schedule ``new_validators`` from ``from_height`` on (heights below keep the old set).  ``by_current`` and
        ``by_new`` are (index in that set, signature over :meth:`change_digest`) of a quorum of the latest
        scheduled set ``current`` and of the new set; ``epoch`` defaults to the latest scheduled epoch + 1."""
        if epoch is None:
            epoch = self.latest_epoch()[0] + 1
        change = (epoch, from_height, set_of(new_validators))
        fn = self.contract.functions.changeValidators(change, set_of(current), pack_signatures(by_current),
                                                      pack_signatures(by_new))
        return self.client.transact(fn, sender, contract=CONTRACT)

    # -- views ------------------------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        height, h = self.client.call(self.contract.functions.head(), contract=CONTRACT)
        return height, bytes(h)

    def header_hash_at(self, height: int) -> bytes:
        return bytes(self.client.call(self.contract.functions.headerHashAt(height), contract=CONTRACT))

    def hash_header(self, header: BlockHeader) -> bytes:
        return bytes(self.client.call(self.contract.functions.hashHeader(header_tuple(header)), contract=CONTRACT))

    def domain_separator(self) -> bytes:
        return bytes(self.client.call(self.contract.functions.domainSeparator(), contract=CONTRACT))

    def validators(self) -> list[str]:
        return list(self.client.call(self.contract.functions.validators(), contract=CONTRACT))

    def epoch(self) -> int:
        return self.client.call(self.contract.functions.epoch(), contract=CONTRACT)

    def quorum(self) -> int:
        return self.client.call(self.contract.functions.quorum(), contract=CONTRACT)

    def validator_set_at(self, height: int) -> tuple[int, int, list[str]]:
        """(epoch, first height, members) of the set that certifies headers at ``height``."""
        epoch, from_height, members = self.client.call(self.contract.functions.validatorSetAt(height),
                                                       contract=CONTRACT)
        return epoch, from_height, list(members)

    def latest_epoch(self) -> tuple[int, int]:
        """(epoch, first height) of the latest scheduled set: the next change must start above both it and the head."""
        epoch, from_height = self.client.call(self.contract.functions.latestEpoch(), contract=CONTRACT)
        return epoch, from_height

    def verify_slip(self, header: BlockHeader, proof: Sequence[bytes], slip: SlipEnvelope) -> bool:
        fn = self.contract.functions.verifySlip(header_tuple(header), list(proof), slip.slip_id, slip.payload)
        return self.client.call(fn, contract=CONTRACT)

    def events(self, receipt: dict[str, Any], name: str) -> list[dict[str, Any]]:
        return receipt_events(self.contract, receipt, name)
