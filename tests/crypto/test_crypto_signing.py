"""EIP-712 hashing and signatures: agreement with eth_account, malformed and foreign signatures."""

from __future__ import annotations

import re

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from mbds_py.crypto.errors import InvalidSignatureError, MalformedDataError, UnexpectedSignerError
from mbds_py.crypto.signing import Eip712Domain, EthSigner, as_signer, recover_address, struct, verify_signer
from mbds_py.errors import SignatureError

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
DEMO = struct("Demo", [("when", "uint64"), ("what", "string"), ("who", "address"), ("h", "bytes32")])


@pytest.fixture(scope="module")
def account():
    return Account.from_key(bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"))


@pytest.fixture(scope="module")
def values(account):
    return {"when": 1_700_000_000, "what": "Diagnose \u00fc \U0001f489", "who": account.address, "h": bytes(range(32))}


def test_digest_equals_eth_account_encode_typed_data(domain, values):
    signable = encode_typed_data(full_message=DEMO.typed_data(domain, values))
    assert signable.header == domain.separator
    assert signable.body == DEMO.hash_struct(values)


def test_signature_equals_eth_account_and_recovers(domain, values, account):
    digest = domain.digest(DEMO.hash_struct(values))
    signer = as_signer(account)
    sig = signer.sign_digest(digest)
    signable = encode_typed_data(full_message=DEMO.typed_data(domain, values))
    assert sig == bytes(account.sign_message(signable).signature)  # RFC 6979: deterministic
    assert Account.recover_message(signable, signature=sig) == account.address
    assert recover_address(digest, sig) == account.address == signer.address


def test_domain_separator_depends_on_chain_and_contract(domain):
    assert Eip712Domain(31338, domain.verifying_contract).separator != domain.separator
    assert Eip712Domain(31337, "0x" + "dd" * 20).separator != domain.separator
    assert Eip712Domain(31337, "0x" + "CC" * 20) == domain  # address is checksummed on construction


@pytest.mark.parametrize("chain_id", [0, -1, True, "1"])
def test_domain_rejects_bad_chain_id(chain_id):
    with pytest.raises(ValueError, match=re.escape(f"EIP-712 chainId must be a positive integer, got {chain_id!r}")):
        Eip712Domain(chain_id, "0x" + "cc" * 20)


def test_domain_rejects_bad_contract_address():
    with pytest.raises(MalformedDataError, match="verifyingContract"):
        Eip712Domain(1, "0x1234")


def _sig(domain, values, account) -> tuple[bytes, bytes]:
    digest = domain.digest(DEMO.hash_struct(values))
    return digest, as_signer(account).sign_digest(digest)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda s: s[:64], "must be 65 bytes"),
    (lambda s: s[:64] + bytes([29]), "v must be 27 or 28"),
    (lambda s: bytes(32) + s[32:], "out of range"),
    (lambda s: s[:32] + (_N - int.from_bytes(s[32:64], "big")).to_bytes(32, "big") + bytes([55 - s[64]]),
     "high-s"),
])
def test_malformed_signature_raises_invalid_signature(domain, values, account, mutate, fragment):
    digest, sig = _sig(domain, values, account)
    with pytest.raises(InvalidSignatureError, match=fragment):
        recover_address(digest, mutate(sig))


def test_tampered_signature_does_not_verify(domain, values, account):
    digest, sig = _sig(domain, values, account)
    tampered = bytes([sig[0] ^ 0x01]) + sig[1:]
    with pytest.raises(InvalidSignatureError, match="does not verify"):
        verify_signer(digest, tampered, claimed=account.address, expected=None, role="doctor")


def test_signature_by_unexpected_account_raises_unexpected_signer(domain, values, account):
    digest, sig = _sig(domain, values, account)
    other = EthSigner(b"\x07" * 32).address
    with pytest.raises(UnexpectedSignerError) as info:
        verify_signer(digest, sig, claimed=account.address, expected=other, role="doctor")
    assert info.value.expected == other and info.value.actual == account.address
    assert isinstance(info.value, SignatureError)


def test_signer_hides_its_key(account):
    signer = EthSigner.from_account(account)
    assert repr(signer) == f"EthSigner({account.address})"
    assert account.key.hex()[2:18] not in repr(signer)
    with pytest.raises(MalformedDataError, match="private key"):
        EthSigner(bytes(32))
    with pytest.raises(TypeError, match="expected an EthSigner or eth_account LocalAccount, got str"):
        as_signer("0x" + "11" * 32)


def test_fast_keccak_and_checksum_agree_with_eth_utils():
    from eth_utils import keccak, to_checksum_address

    from mbds_py.crypto._hash import keccak256
    from mbds_py.crypto.signing import checksum_address

    for i in range(64):
        raw = keccak(i.to_bytes(2, "big"))[-20:]
        assert keccak256(raw * i) == keccak(raw * i)
        assert checksum_address(raw) == checksum_address("0x" + raw.hex().upper()) == to_checksum_address(raw)


@pytest.mark.parametrize("bad", ["0x1234", "cc" * 21, "0x" + "zz" * 20, "0x" + "cc" * 19 + "  ", b"\x01" * 19, 7])
def test_malformed_address_raises_malformed_data_error(bad):
    from mbds_py.crypto.signing import checksum_address

    with pytest.raises(MalformedDataError, match="address"):
        checksum_address(bad)
