"""Narrow exceptions of the crypto package, under the families of :mod:`mbds_py.errors`.

Every class names one failure so callers (and tests) can tell a wrong key from
a tampered ciphertext from a record signed by someone else.
"""

from __future__ import annotations

from ..errors import CryptoError, IntegrityError, SignatureError


class KeywordError(CryptoError):
    """A keyword is outside the supported coding systems or its code is malformed."""


class MalformedDataError(CryptoError):
    """Bytes do not decode as the expected type (wrong length, bad point, trailing data)."""


class PeksLengthError(MalformedDataError):
    """A PEKS key, trapdoor or ciphertext has the wrong number of bytes (or is not bytes at all)."""


class PeksPointError(MalformedDataError):
    """Bytes meant as a PEKS point are not a point of the BLS12-381 subgroup: a bad encoding, a point off
    the curve or off the order-q subgroup, or the identity.  Refused when parsed, before any pairing."""


class PeksVersionError(MalformedDataError):
    """A PEKS ciphertext or trapdoor of another scheme version than this build reads (version 1)."""

    def __init__(self, message: str, *, version: int):
        self.version = version
        super().__init__(message)


class EnvelopeError(CryptoError):
    """An HMI envelope cannot be built from the given fields (bad timestamp, empty type, ...)."""


class QueryError(CryptoError):
    """A PEKS query is ill-formed (e.g. a conjunctive query with no trapdoor)."""


class DecryptionError(CryptoError):
    """A ciphertext does not open under the given key: wrong key, wrong record or tampered."""


class WrongRecipientError(CryptoError):
    """An envelope or record is addressed to another patient than the key holder."""


class KeyVersionError(WrongRecipientError, LookupError):
    """A record was made under a key version this keyring does not hold (or holds with other keys)."""


class UnverifiedFragError(CryptoError, TypeError):
    """A key or capsule fragment was passed onward without being verified first."""


class FragVerificationError(CryptoError):
    """A key or capsule fragment does not verify against the keys it claims."""


class KeyFragVerificationError(FragVerificationError):
    """A kfrag was not made by the claimed signer for the claimed delegating/receiving keys."""


class CapsuleFragVerificationError(FragVerificationError):
    """A cfrag was not produced from the given capsule with a kfrag for the given keys."""


class InvalidSignatureError(SignatureError):
    """A signature is malformed or does not recover to the signer named in the signed data."""


class UnexpectedSignerError(SignatureError):
    """A signature is valid but was made by another account than the one expected."""

    def __init__(self, message: str, *, expected: str, actual: str):
        self.expected = expected
        self.actual = actual
        super().__init__(message)


class HmiHashMismatchError(IntegrityError):
    """The decrypted HMI does not hash to the signed H(M)."""


class CiphertextMismatchError(IntegrityError):
    """A ciphertext does not match the hash it was signed under (tampered in transit or storage)."""


class KeywordMismatchError(IntegrityError):
    """The encrypted keywords do not match the keywords inside the encrypted record."""


class KeywordCiphertextMismatchError(KeywordMismatchError):
    """A keyword ciphertext is not PEKS(h, w; r) for the keyword w and the randomness r that C_M lists for it."""


__all__ = [
    "CapsuleFragVerificationError",
    "CiphertextMismatchError",
    "DecryptionError",
    "EnvelopeError",
    "FragVerificationError",
    "HmiHashMismatchError",
    "InvalidSignatureError",
    "KeyFragVerificationError",
    "KeyVersionError",
    "KeywordError",
    "KeywordCiphertextMismatchError",
    "KeywordMismatchError",
    "MalformedDataError",
    "PeksLengthError",
    "PeksPointError",
    "PeksVersionError",
    "QueryError",
    "UnexpectedSignerError",
    "UnverifiedFragError",
    "WrongRecipientError",
]
