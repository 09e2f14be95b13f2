"""MBDS cryptography: PEKS search, Umbral proxy re-encryption, HMI envelopes (paper Algorithms 1–2).

Modules:

* :mod:`.keywords` — coded keywords (``system|code``) and their normalisation;
* :mod:`.peks` — BDOP PEKS on BLS12-381, batch and conjunctive search;
* :mod:`.keys` — a participant's key set (account, Umbral, PEKS) and per-record keys;
* :mod:`.pre` — Umbral ciphertexts, per-record kfrags, proxy and delegatee helpers;
* :mod:`.signing` — EIP-712 hashing and secp256k1 signatures;
* :mod:`.envelope` — Algorithm 1 (doctor);
* :mod:`.confirmation` — Algorithm 2 (patient) and opening confirmed records;
* :mod:`.errors` — the narrow exceptions.
"""

from .confirmation import (CONFIRMATION_STRUCT, ConfirmedRecord, ReviewedRecord, confirm_record,
                           decrypt_storage_address, open_record, open_shared_address, open_shared_record,
                           review_envelope)
from .envelope import (KEYWORD_SLOTS, RECORD_STRUCT, HmiEnvelope, HmiPayload, RecordHeader, build_envelope,
                       canonical_hmi, hmi_hash)
from .keys import PatientKeyring, PatientPublicKeys, PatientSecrets, as_keyring
from .keywords import Keyword, normalize_keyword
from .peks import (PeksCiphertext, PeksPublicKey, PeksSecretKey, Trapdoor, batch_test, match_all, peks_encrypt,
                   peks_test, trapdoor)
from .pre import (UmbralCiphertext, decrypt_reencrypted, load_cfrag, load_kfrag, make_record_kfrags, pre_decrypt,
                  pre_encrypt, reencrypt)
from .signing import Eip712Domain, EthSigner, recover_address

__all__ = [
    "CONFIRMATION_STRUCT", "KEYWORD_SLOTS", "RECORD_STRUCT",
    "ConfirmedRecord", "Eip712Domain", "EthSigner", "HmiEnvelope", "HmiPayload", "Keyword", "PatientKeyring",
    "PatientPublicKeys", "PatientSecrets", "PeksCiphertext", "PeksPublicKey", "PeksSecretKey", "RecordHeader",
    "ReviewedRecord",
    "Trapdoor", "UmbralCiphertext",
    "as_keyring", "batch_test", "build_envelope", "canonical_hmi", "confirm_record", "decrypt_reencrypted",
    "decrypt_storage_address", "hmi_hash", "load_cfrag", "load_kfrag", "make_record_kfrags", "match_all",
    "normalize_keyword", "open_record", "open_shared_address", "open_shared_record", "peks_encrypt", "peks_test",
    "pre_decrypt", "pre_encrypt", "recover_address", "reencrypt", "review_envelope", "trapdoor",
]
