"""The one exception root of MBDS and its direct families.

Every error raised by MBDS code derives from :class:`MBDSError`.  Where an
error replaces a builtin, it also inherits that builtin, so callers may catch
either (``except PermissionError`` still works).  Messages say what failed and
what to do about it.  Subpackages add narrower subclasses of these families.
"""

from __future__ import annotations


class MBDSError(Exception):
    """Root of every MBDS error."""


# --- configuration and environment -------------------------------------------------


class ConfigError(MBDSError, ValueError):
    """A configuration or network-spec file is malformed.

    ``path`` is the file and ``field`` the dotted field that is wrong.
    """

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None):
        self.path = path
        self.field = field
        where = ""
        if path:
            where += f"{path}: "
        if field:
            where += f"field '{field}': "
        super().__init__(where + message)


class ToolchainError(MBDSError, RuntimeError):
    """A required external tool (solc, anvil, ganache, npm) is missing or failed."""


class CompilationError(ToolchainError):
    """The Solidity compiler reported errors."""


class DevnetError(MBDSError, RuntimeError):
    """A devnet chain or service could not be started, reached or stopped."""


class PortInUseError(DevnetError, OSError):
    """A port named in the spec is already taken by another process."""


# --- chain interaction -------------------------------------------------------------


class ChainError(MBDSError, RuntimeError):
    """A chain call or transaction failed for a reason other than a contract revert."""


class ContractRevert(ChainError):
    """A contract call reverted with a decoded custom error.

    ``error_name`` is the Solidity custom error (e.g. ``IdentityRegistryUnauthorized``)
    and ``args`` its decoded arguments.
    """

    def __init__(self, contract: str, error_name: str, args: tuple = (), message: str | None = None):
        self.contract = contract
        self.error_name = error_name
        self.args_decoded = tuple(args)
        text = message or f"{contract} reverted with {error_name}{self.args_decoded!r}"
        super().__init__(text)


class DeploymentError(ChainError):
    """A deployment is missing, inconsistent with the spec, or its code changed."""


# --- identity and access --------------------------------------------------------------


class IdentityError(MBDSError, LookupError):
    """A participant is unknown, already registered, or suspended."""


class KeystoreError(MBDSError, ValueError):
    """A keystore could not be read or unlocked (wrong passphrase, corrupt file)."""


class KeystorePassphraseError(KeystoreError):
    """A keystore does not open with the passphrase given: wrong passphrase, or its ciphertext or MAC was
    modified (the two look the same by design).  Nothing was changed."""


class KeystoreTamperedError(KeystoreError):
    """A keystore was modified: the passphrase is proven right by its other half (the account keystore
    opens) but this file fails authentication or does not match the keys."""


class KeystoreFormatError(KeystoreError):
    """A keystore file is missing, truncated, not JSON, or of a format this MBDS does not read."""


class GovernanceError(MBDSError, PermissionError):
    """A governance operation cannot go through: fewer authority keys than the quorum, or not ready yet.
    Have more authorities approve (``GovernorAgent.approve``) or execute after the operation's delay."""


class PolicyDenied(MBDSError, PermissionError):
    """An access policy refused the request; the message names the rule."""


# --- cryptography and data -------------------------------------------------------------


class CryptoError(MBDSError, ValueError):
    """A cryptographic operation failed: bad key, bad signature, bad ciphertext."""


class SignatureError(CryptoError):
    """A signature does not verify or was made by someone other than expected."""


class IntegrityError(MBDSError, ValueError):
    """Data does not match the hash or CID it was recorded under."""


class StorageError(MBDSError, OSError):
    """A storage node could not store or serve a blob."""


class NotFoundError(StorageError, LookupError):
    """A CID (or other object) is not known to any reachable node."""


# --- consensus -------------------------------------------------------------------------


class ConsensusError(MBDSError, RuntimeError):
    """A consensus message or certificate is invalid."""


class InvalidSlip(MBDSError, ValueError):
    """A transaction slip failed validation; the message says which check."""


class Overloaded(ConsensusError):
    """A replica holds as many unordered slips as it may: retry after ``retry_after`` seconds (HTTP 429)."""

    def __init__(self, message: str, *, retry_after: float):
        self.retry_after = retry_after
        super().__init__(message)
