"""Keyword normalisation: coded terms ``system|code`` that PEKS encrypts.

A keyword is a FHIR coding written ``system|code`` (the FHIR search token
syntax), e.g. ``http://hl7.org/fhir/sid/icd-10|E11.9`` or
``http://snomed.info/sct|44054006``, or free text ``text|Type 2 Diabetes``.
Two spellings of the same term normalise to the same canonical string, and
only the canonical string is hashed, so a trapdoor for ``icd10|e11.9`` finds a
ciphertext made for ``http://hl7.org/fhir/sid/icd-10|E11.9``.

Rules, applied in this order:

* the whole input is NFKC-normalised (full-width digits become ASCII), then
  split at the first ``|``; system and code are stripped of whitespace;
* the system is matched case-insensitively against the canonical URIs and
  their short aliases (``icd10``, ``icd10cm``, ``snomed``/``sct``, ``loinc``,
  ``rxnorm``, ``text``); a trailing ``/`` on a URI is ignored;
* ICD-10 / ICD-10-CM codes are upper-cased and a missing dot is inserted after
  the category (``e119`` → ``E11.9``); SNOMED CT identifiers must be 6–18
  digits with a valid partition and Verhoeff check digit; LOINC codes are
  ``NNNNN-C`` with a valid mod-10 check digit; RxNorm codes are digits;
* free text is NFKC-casefolded and runs of whitespace collapse to one space.

Anything else raises :class:`~mbds_py.crypto.errors.KeywordError` saying what
was expected.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Union

from .errors import KeywordError

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED_CT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TEXT = "text"

MAX_CODE_LENGTH = 64
MAX_TEXT_LENGTH = 256

_ALIASES: dict[str, str] = {
    "icd10": ICD10, "icd-10": ICD10, ICD10: ICD10,
    "icd10cm": ICD10_CM, "icd-10-cm": ICD10_CM, ICD10_CM: ICD10_CM,
    "snomed": SNOMED_CT, "snomedct": SNOMED_CT, "snomed-ct": SNOMED_CT, "sct": SNOMED_CT, SNOMED_CT: SNOMED_CT,
    "loinc": LOINC, LOINC: LOINC,
    "rxnorm": RXNORM, RXNORM: RXNORM,
    "text": TEXT,
}

_ICD10 = re.compile(r"[A-Z][0-9]{2}(?:\.[0-9A-Z]{1,4})?", re.ASCII)
_ICD10_CM = re.compile(r"[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_LOINC = re.compile(r"([1-9][0-9]{0,6})-([0-9])", re.ASCII)
_SNOMED_PARTITIONS = frozenset({"00", "01", "02", "10", "11", "12"})

# Verhoeff dihedral-group tables (SNOMED CT check digit).
_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6), (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4), (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2), (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def verhoeff_valid(digits: str) -> bool:
    """True if the last digit of ``digits`` is its Verhoeff check digit."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


def luhn_check_digit(digits: str) -> int:
    """The mod-10 (Luhn) check digit LOINC appends to its code number."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def _icd(code: str, system: str, pattern: re.Pattern[str], category: str, example: str) -> str:
    code = code.upper()
    if "." not in code and len(code) > 3:
        code = code[:3] + "." + code[3:]
    if not pattern.fullmatch(code):
        raise KeywordError(f"malformed {system} code {code!r}: expected {category}, optionally followed by "
                           f"'.' and 1-4 letters or digits, e.g. {example!r}")
    return code


def _icd10(code: str) -> str:
    return _icd(code, "ICD-10", _ICD10, "a letter and two digits", "E11.9")


def _icd10_cm(code: str) -> str:
    return _icd(code, "ICD-10-CM", _ICD10_CM, "a letter, a digit and a letter or digit", "E11.65")


def _snomed(code: str) -> str:
    if not _DIGITS.fullmatch(code) or not 6 <= len(code) <= 18 or code[0] == "0":
        raise KeywordError(f"malformed SNOMED CT identifier {code!r}: expected 6-18 digits without a leading "
                           "zero, e.g. '44054006'")
    if code[-3:-1] not in _SNOMED_PARTITIONS:
        raise KeywordError(f"malformed SNOMED CT identifier {code!r}: partition '{code[-3:-1]}' is not one of "
                           f"{sorted(_SNOMED_PARTITIONS)}")
    if not verhoeff_valid(code):
        raise KeywordError(f"malformed SNOMED CT identifier {code!r}: the Verhoeff check digit is wrong "
                           "(typo in the code?)")
    return code


def _loinc(code: str) -> str:
    m = _LOINC.fullmatch(code)
    if not m:
        raise KeywordError(f"malformed LOINC code {code!r}: expected digits, '-', and a check digit, e.g. '4548-4'")
    if luhn_check_digit(m.group(1)) != int(m.group(2)):
        raise KeywordError(f"malformed LOINC code {code!r}: the check digit should be "
                           f"{luhn_check_digit(m.group(1))} (typo in the code?)")
    return code


def _rxnorm(code: str) -> str:
    if not _DIGITS.fullmatch(code) or len(code) > 12 or code[0] == "0":
        raise KeywordError(f"malformed RxNorm code {code!r}: expected 1-12 digits without a leading zero, "
                           "e.g. '860975'")
    return code


def _text(code: str) -> str:
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", code).casefold())
    text = " ".join(folded.split())
    if not text:
        raise KeywordError("empty free-text keyword: expected 'text|<words>', e.g. 'text|type 2 diabetes'")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text):
        raise KeywordError(f"free-text keyword {text!r} contains control or unassigned characters")
    if len(text) > MAX_TEXT_LENGTH:
        raise KeywordError(f"free-text keyword of {len(text)} characters exceeds the limit of {MAX_TEXT_LENGTH}")
    return text


_CODE_NORMALISERS: dict[str, Callable[[str], str]] = {
    ICD10: _icd10,
    ICD10_CM: _icd10_cm,
    SNOMED_CT: _snomed,
    LOINC: _loinc,
    RXNORM: _rxnorm,
    TEXT: _text,
}


def canonical_system(system: str) -> str:
    """The canonical system URI for a URI or alias (case-insensitive)."""
    key = unicodedata.normalize("NFKC", system).strip().lower()
    if key != "text":
        key = key.rstrip("/")
    try:
        return _ALIASES[key]
    except KeyError:
        known = ", ".join(f"{alias} ({uri})" for alias, uri in (
            ("icd10", ICD10), ("icd10cm", ICD10_CM), ("snomed", SNOMED_CT), ("loinc", LOINC),
            ("rxnorm", RXNORM)))
        raise KeywordError(f"unknown coding system {system.strip()!r}: expected one of {known}, "
                           "or 'text' for free text") from None


def _normalise(system: str, code: str) -> tuple[str, str]:
    if not isinstance(system, str) or not isinstance(code, str):
        raise KeywordError(f"keyword system and code must be strings, got {type(system).__name__} and "
                           f"{type(code).__name__}")
    canonical = canonical_system(system)
    if canonical == TEXT:
        return canonical, _text(code)
    code = unicodedata.normalize("NFKC", code).strip()
    if not code:
        raise KeywordError(f"empty code for coding system {canonical}: expected 'system|code'")
    if len(code) > MAX_CODE_LENGTH or any(ch.isspace() for ch in code):
        raise KeywordError(f"malformed code {code[:MAX_CODE_LENGTH]!r} for {canonical}: codes are at most "
                           f"{MAX_CODE_LENGTH} characters without spaces")
    return canonical, _CODE_NORMALISERS[canonical](code)


@dataclass(frozen=True, order=True)
class Keyword:
    """One normalised coded term; construction normalises (``Keyword("icd10", "e119")``)."""

    system: str
    code: str

    def __post_init__(self) -> None:
        system, code = _normalise(self.system, self.code)
        object.__setattr__(self, "system", system)
        object.__setattr__(self, "code", code)

    @classmethod
    def parse(cls, raw: str) -> "Keyword":
        """Parse ``system|code`` (aliases and free text included)."""
        if not isinstance(raw, str):
            raise KeywordError(f"a keyword must be a 'system|code' string, got {type(raw).__name__}")
        text = unicodedata.normalize("NFKC", raw)
        system, sep, code = text.partition("|")
        if not sep:
            raise KeywordError(f"keyword {raw.strip()[:80]!r} has no '|': expected 'system|code', e.g. "
                               "'icd10|E11.9', 'snomed|44054006' or 'text|type 2 diabetes'")
        return cls(system, code)

    @classmethod
    def from_coding(cls, coding: Mapping[str, object]) -> "Keyword":
        """From a FHIR ``Coding`` (a mapping with ``system`` and ``code``)."""
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            raise KeywordError("a FHIR Coding needs string 'system' and 'code' fields")
        return cls(system, code)

    @property
    def canonical(self) -> str:
        """``system|code`` — the exact string PEKS hashes."""
        return f"{self.system}|{self.code}"

    def __str__(self) -> str:
        return self.canonical


KeywordLike = Union[str, Keyword, Mapping[str, object]]


def to_keyword(value: KeywordLike) -> Keyword:
    """Accept a ``system|code`` string, a :class:`Keyword` or a FHIR Coding mapping."""
    if isinstance(value, Keyword):
        return value
    if isinstance(value, str):
        return Keyword.parse(value)
    if isinstance(value, Mapping):
        return Keyword.from_coding(value)
    raise KeywordError(f"a keyword must be a 'system|code' string, a Keyword or a FHIR Coding, "
                       f"got {type(value).__name__}")


def normalize_keyword(value: KeywordLike) -> str:
    """The canonical ``system|code`` string of a keyword."""
    return to_keyword(value).canonical


#: Domain tag of :func:`keyword_set_tag`.
KEYWORD_SET_TAG_DOMAIN = b"MBDS-KEYWORD-SET-TAG-V1"
KEYWORD_SET_TAG_KEY_SIZE = 32


def keyword_set_tag(key: bytes, keywords: Iterable[object], *, normalize: bool = True) -> bytes:
    """The value a ``KeywordSet`` permission names (``keywordSetHash`` on chain): a keyed PRF of the set.

    ``HMAC-SHA256(key, domain ‖ sorted SHA-256 of each distinct canonical keyword)`` — order- and
    spelling-insensitive like the search, but only the holder of ``key`` (the patient:
    ``PatientSecrets.keyword_set_tag``, one key per key version) can compute it.  An unkeyed hash would let
    anyone reading ``recordAccess`` calldata, grants or requests test keyword guesses, one hash per
    candidate, and so link records to their keywords in public — what PEKS hides.
    Pass ``normalize=False`` for strings that already are canonical.
    """
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEYWORD_SET_TAG_KEY_SIZE:
        raise ValueError(f"a keyword-set tag key is {KEYWORD_SET_TAG_KEY_SIZE} bytes (the patient's, per key version)")
    if normalize:
        canon = {normalize_keyword(k) for k in keywords}  # type: ignore[arg-type]
    else:
        canon = {str(k) for k in keywords}
    if not canon:
        raise ValueError("a keyword set needs at least one keyword")
    message = KEYWORD_SET_TAG_DOMAIN + b"".join(sorted(hashlib.sha256(c.encode("utf-8")).digest() for c in canon))
    return hmac.new(bytes(key), message, hashlib.sha256).digest()


__all__ = [
    "ICD10", "ICD10_CM", "KEYWORD_SET_TAG_DOMAIN", "KEYWORD_SET_TAG_KEY_SIZE", "LOINC", "RXNORM", "SNOMED_CT", "TEXT",
    "Keyword", "KeywordLike", "canonical_system", "keyword_set_tag", "luhn_check_digit", "normalize_keyword",
    "to_keyword", "verhoeff_valid",
]
