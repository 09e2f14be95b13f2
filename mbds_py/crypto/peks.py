"""Public-key encryption with keyword search (Boneh–Di Crescenzo–Ostrovsky–Persiano 2004).

BDOP PEKS on the asymmetric pairing e: G1 × G2 → GT of BLS12-381::

    secret key   α ∈ Z_q*                 public key   h = g^α ∈ G1
    H1(w)        hash_to_curve G2 (RFC 9380, SSWU, DST below) of the canonical keyword
    PEKS(h, w)   r ∈ Z_q*;  A = g^r ∈ G1,  B = H2(e(h^r, H1(w))) = H2(E_w^r),  E_w = e(h, H1(w))
    Trapdoor     T_w = H1(w)^α ∈ G2
    Test         H2(e(A, T_w)) == B

``H1`` lands in G2 so that the ciphertexts stored on every chain are small
(A = 48 bytes, B = 32 bytes) and parse fast; the trapdoor is 96 bytes.
``H2`` is SHA-256 over a domain tag and the 576-byte GT encoding (12 base-field
coefficients, plain little-endian).  Keywords are normalised first
(:mod:`mbds_py.crypto.keywords`), so every spelling of one coded term matches.

The arithmetic runs on blst (:mod:`._bls`): every multiplication by a secret
scalar (α for keys and trapdoors, r for A = g^r) is blst's constant-time one, and
every pairing is blst's, with the GIL released.  Encryption needs no pairing:
``E_w`` is computed once per (public key, keyword) and kept in a bounded LRU
cache, so a keyword costs one G1 multiplication and one GT exponentiation.
The encodings are those of the first (arkworks) implementation, pinned by the
known-answer tests, so every stored ciphertext and issued trapdoor still matches.

A record's keyword ciphertexts share one randomness (:func:`peks_encrypt_record`: every slot, pads
included, carries the same A = g^r, and r travels inside C_M for the patient's pairing-free check), so a
search pairs A with a trapdoor once per record.  One Test costs one pairing, on the trapdoor's
precomputed Miller-loop lines.  :func:`batch_test` and :func:`match_all` spread big
batches over a thread pool (one thread per usable core) — no process start-up or
pickling.  Bytes that are not a valid key, trapdoor or ciphertext are refused
with a named :class:`~mbds_py.crypto.errors.MalformedDataError` subclass when they
are parsed, before any pairing is spent on them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TypeVar

from . import _bls
from ._bls import G1Element, G2Element
from .errors import MalformedDataError, PeksLengthError, PeksPointError, PeksVersionError, QueryError
from .keywords import Keyword, KeywordLike, to_keyword

#: The scheme version these encodings are (untagged: see :func:`_check_encoding`).
SCHEME_VERSION = 1
#: RFC 9380 domain-separation tag of H1 (suite BLS12381G2_XMD:SHA-256_SSWU_RO_).
H1_DST = b"MBDS-PEKS-V01-CS01-with-BLS12381G2_XMD:SHA-256_SSWU_RO_"
#: Domain tag of H2: GT → {0,1}^256.
H2_TAG = b"MBDS-PEKS-V01-H2"
#: Domain tag of padding ciphertexts (:func:`peks_pad`).
PAD_TAG = b"MBDS-PEKS-V01-PAD"
PAD_SEED_SIZE = 32
#: Order q of G1, G2 and GT.
GROUP_ORDER = _bls.GROUP_ORDER
G1_GENERATOR_BYTES = _bls.G1_GENERATOR_BYTES
G2_GENERATOR_BYTES = _bls.G2_GENERATOR_BYTES

PUBLIC_KEY_SIZE = 48
SECRET_KEY_SIZE = 32
CIPHERTEXT_SIZE = 80
TRAPDOOR_SIZE = 96

#: Batches smaller than this are tested on the calling thread.
PARALLEL_MIN_ITEMS = 8

_TRAPDOOR_CACHE_SIZE = 1024
#: E_w = e(h, H1(w)) kept per (public key, keyword): 4096 × ~1 KiB.
EW_CACHE_SIZE = 4096

R = TypeVar("R", bound=Hashable)


# --- hashing -----------------------------------------------------------------------------


@lru_cache(maxsize=16384)
def _canonical_str(raw: str) -> str:
    return Keyword.parse(raw).canonical


def canonical_keyword(keyword: KeywordLike) -> str:
    """The canonical ``system|code`` string PEKS hashes (cached for strings)."""
    if isinstance(keyword, str):
        return _canonical_str(keyword)
    return to_keyword(keyword).canonical


@lru_cache(maxsize=8192)
def _h1(canonical: str) -> _bls.HashedG2:
    return _bls.hash_to_g2(canonical.encode("utf-8"), H1_DST)


def hash_keyword(keyword: KeywordLike) -> G2Element:
    """H1(w): the keyword hashed to G2 (cached per canonical keyword)."""
    return _h1(canonical_keyword(keyword)).point


def hash_keyword_bytes(keyword: KeywordLike) -> bytes:
    """H1(w) compressed (96 bytes)."""
    return _h1(canonical_keyword(keyword)).compressed


def h2(gt: bytes) -> bytes:
    """H2: SHA-256 of the domain tag and the 576-byte GT encoding."""
    return hashlib.sha256(H2_TAG + gt).digest()


def pairing_bytes(g1: bytes, g2: bytes) -> bytes:
    """e(P, Q) of two compressed points (checked) as the 576-byte GT encoding H2 hashes."""
    return _bls.pair(_g1_from_bytes(g1, "G1 point", allow_identity=True),
                     _g2_from_bytes(g2, "G2 point", allow_identity=True))


def _random_scalar() -> int:
    return secrets.randbelow(GROUP_ORDER - 1) + 1  # uniform in [1, q)


_ew_cache: OrderedDict[tuple[bytes, str], _bls.GtPower] = OrderedDict()
_ew_lock = threading.Lock()


def clear_caches() -> None:
    """Forget cached keyword hashes and E_w values (they reveal which keywords this process handled)."""
    _h1.cache_clear()
    _canonical_str.cache_clear()
    with _ew_lock:
        _ew_cache.clear()


# --- parsing -------------------------------------------------------------------------------


def _check_encoding(data: object, size: int, what: str, *, versioned: bool = False) -> bytes:
    """``data`` as bytes of length ``size``, or a named error.

    Version 1 ciphertexts and trapdoors are untagged: they begin with a compressed point, whose first
    byte has the compression flag 0x80 set.  A later scheme version tags its encodings with its version
    number in a first byte 0x01–0x7f; this build refuses every tagged encoding with
    :class:`PeksVersionError` (whatever its length) instead of misreading it.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise PeksLengthError(f"{what}: expected {size} bytes, got {type(data).__name__}")
    data = bytes(data)
    if versioned and data and 0 < data[0] < 0x80:
        raise PeksVersionError(f"{what}: scheme version {data[0]} is not supported; this build reads version "
                               f"{SCHEME_VERSION} (untagged, {size} bytes)", version=data[0])
    if len(data) != size:
        raise PeksLengthError(f"{what}: expected {size} bytes, got {len(data)}")
    return data


def _g1_from_bytes(data: bytes, what: str, *, allow_identity: bool = False) -> G1Element:
    data = _check_encoding(data, PUBLIC_KEY_SIZE, what)
    try:
        point = _bls.g1_from_bytes(data)
    except _bls.PointError as exc:
        raise PeksPointError(f"{what}: not a point of the BLS12-381 G1 subgroup ({exc})") from None
    if not allow_identity and _bls.is_g1_identity(point):
        raise PeksPointError(f"{what}: the identity point is not allowed")
    return point


def _g2_from_bytes(data: bytes, what: str, *, allow_identity: bool = False) -> G2Element:
    data = _check_encoding(data, TRAPDOOR_SIZE, what)
    try:
        point = _bls.g2_from_bytes(data)
    except _bls.PointError as exc:
        raise PeksPointError(f"{what}: not a point of the BLS12-381 G2 subgroup ({exc})") from None
    if not allow_identity and _bls.is_g2_identity(point):
        raise PeksPointError(f"{what}: the identity point is not allowed")
    return point


# --- keys and ciphertexts ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PeksPublicKey:
    """h = g^α in G1 (48 bytes compressed)."""

    point: G1Element

    def __post_init__(self) -> None:
        if not isinstance(self.point, G1Element) or _bls.is_g1_identity(self.point):
            raise PeksPointError("PEKS public key: expected a non-identity G1Element")
        object.__setattr__(self, "_encoded", bytes(self.point))

    def to_bytes(self) -> bytes:
        return self._encoded  # type: ignore[attr-defined]

    @classmethod
    def from_bytes(cls, data: bytes) -> "PeksPublicKey":
        return cls(_g1_from_bytes(data, "PEKS public key"))

    @cached_property
    def _multiplier(self) -> _bls.G1Multiplier:
        return _bls.G1Multiplier(self.to_bytes())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PeksPublicKey):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"PeksPublicKey({self.to_bytes().hex()[:16]}…)"


@dataclass(frozen=True, eq=False)
class PeksCiphertext:
    """C_w = (A, B): A = g^r in G1 (48 bytes), B = H2(e(h^r, H1(w))) (32 bytes); 80 bytes encoded."""

    a: G1Element
    b: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.a, G1Element) or _bls.is_g1_identity(self.a):
            raise PeksPointError("PEKS ciphertext: A must be a non-identity G1Element")
        if not isinstance(self.b, bytes) or len(self.b) != 32:
            raise PeksLengthError("PEKS ciphertext: B must be 32 bytes")
        object.__setattr__(self, "_encoded", bytes(self.a) + self.b)

    def to_bytes(self) -> bytes:
        return self._encoded  # type: ignore[attr-defined]

    @classmethod
    def from_bytes(cls, data: bytes) -> "PeksCiphertext":
        data = _check_encoding(data, CIPHERTEXT_SIZE, "PEKS ciphertext", versioned=True)
        return cls(_g1_from_bytes(data[:48], "PEKS ciphertext A"), data[48:])

    @property
    def _prepared(self):
        """A in the form :func:`_bls.pair_lines` takes (computed once, on first Test)."""
        try:
            return self.__dict__["_a_prepared"]
        except KeyError:
            prepared = _bls.g1_prepare(self.a)
            object.__setattr__(self, "_a_prepared", prepared)
            return prepared

    @classmethod
    def _computed(cls, a: bytes, b: bytes) -> "PeksCiphertext":
        """A ciphertext this process computed (A is g^r: no subgroup check needed)."""
        return cls(_bls.g1_trusted(a), b)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PeksCiphertext):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"PeksCiphertext({self.to_bytes().hex()[:16]}…)"


@dataclass(frozen=True, eq=False)
class Trapdoor:
    """T_w = H1(w)^α in G2 (96 bytes).  Whoever holds it can search for w: ``repr`` hides it."""

    point: G2Element = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.point, G2Element) or _bls.is_g2_identity(self.point):
            raise PeksPointError("PEKS trapdoor: expected a non-identity G2Element")
        object.__setattr__(self, "_encoded", bytes(self.point))

    def to_bytes(self) -> bytes:
        return self._encoded  # type: ignore[attr-defined]

    @classmethod
    def from_bytes(cls, data: bytes) -> "Trapdoor":
        data = _check_encoding(data, TRAPDOOR_SIZE, "PEKS trapdoor", versioned=True)
        return cls(_g2_from_bytes(data, "PEKS trapdoor"))

    @property
    def _lines(self) -> _bls.G2Lines:
        """The trapdoor's precomputed Miller-loop lines (computed once, on first Test; 19.5 KiB)."""
        try:
            return self.__dict__["_g2_lines"]
        except KeyError:
            lines = _bls.G2Lines(self.point)
            object.__setattr__(self, "_g2_lines", lines)
            return lines

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trapdoor):
            return NotImplemented
        return hmac.compare_digest(self.to_bytes(), other.to_bytes())

    def __hash__(self) -> int:
        return hash(self.to_bytes())


class PeksSecretKey:
    """α ∈ Z_q* (an ``int`` in [1, q)).  ``repr`` shows only the public key; trapdoors are cached per keyword."""

    __slots__ = ("_alpha", "_public", "_trapdoors", "_lock")

    def __init__(self, alpha: int):
        if isinstance(alpha, bool) or not isinstance(alpha, int) or not 0 < alpha < GROUP_ORDER:
            raise MalformedDataError("PEKS secret key: expected an int scalar in [1, q)")
        self._alpha = alpha
        self._public = PeksPublicKey(_bls.g1_trusted(_bls.g1_mul_generator(alpha)))
        self._trapdoors: dict[str, Trapdoor] = {}
        self._lock = threading.Lock()

    @classmethod
    def generate(cls) -> "PeksSecretKey":
        return cls(_random_scalar())

    @classmethod
    def from_bytes(cls, data: bytes) -> "PeksSecretKey":
        """From the 32-byte big-endian scalar (must be in [1, q))."""
        alpha = int.from_bytes(_check_encoding(data, SECRET_KEY_SIZE, "PEKS secret key"), "big")
        if alpha >= GROUP_ORDER:
            raise MalformedDataError("PEKS secret key: the scalar is not below the group order")
        if alpha == 0:
            raise MalformedDataError("PEKS secret key: the scalar must not be zero")
        return cls(alpha)

    def to_bytes(self) -> bytes:
        return self._alpha.to_bytes(SECRET_KEY_SIZE, "big")

    def public_key(self) -> PeksPublicKey:
        return self._public

    def trapdoor(self, keyword: KeywordLike) -> Trapdoor:
        """T_w = H1(w)^α (constant-time multiplication), cached per canonical keyword (bounded)."""
        canonical = canonical_keyword(keyword)
        cached = self._trapdoors.get(canonical)
        if cached is not None:
            return cached
        td = Trapdoor(_bls.g2_trusted(_h1(canonical).mul(self._alpha)))
        with self._lock:
            if len(self._trapdoors) >= _TRAPDOOR_CACHE_SIZE:
                del self._trapdoors[next(iter(self._trapdoors))]
            self._trapdoors[canonical] = td
        return td

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PeksSecretKey):
            return NotImplemented
        return hmac.compare_digest(self.to_bytes(), other.to_bytes())

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"PeksSecretKey(public={self._public.to_bytes().hex()[:16]}…)"

    def __reduce__(self):  # never pickle a secret by accident
        raise TypeError("PeksSecretKey is not picklable: serialise it explicitly with to_bytes()")


# --- the four algorithms -------------------------------------------------------------------


def _e_w(pk: PeksPublicKey, canonical: str) -> _bls.GtPower:
    """E_w = e(h, H1(w)), cached per (public key, canonical keyword) in a bounded LRU."""
    key = (pk.to_bytes(), canonical)
    with _ew_lock:
        hit = _ew_cache.get(key)
        if hit is not None:
            _ew_cache.move_to_end(key)
            return hit
    power = _bls.GtPower(_bls.pair(pk.point, _h1(canonical).point))
    with _ew_lock:
        _ew_cache[key] = power
        while len(_ew_cache) > EW_CACHE_SIZE:
            _ew_cache.popitem(last=False)
    return power


def _encrypt_with(pk: PeksPublicKey, keyword: KeywordLike, r: int) -> PeksCiphertext:
    """PEKS(pk, w) with randomness ``r``, without a pairing: A = g^r, B = H2(E_w^r)."""
    power = _e_w(pk, canonical_keyword(keyword))
    return PeksCiphertext._computed(_bls.g1_mul_generator(r), h2(power.pow(r)))


def _encrypt_pairing(pk: PeksPublicKey, keyword: KeywordLike, r: int) -> PeksCiphertext:
    """The same ciphertext by the textbook path, B = H2(e(h^r, H1(w))): the baseline and a cross-check."""
    hr = _bls.g1_trusted(pk._multiplier.mul(r))
    return PeksCiphertext._computed(_bls.g1_mul_generator(r),
                                    h2(_bls.pair(hr, _h1(canonical_keyword(keyword)).point)))


def peks_encrypt(pk: PeksPublicKey, keyword: KeywordLike, *, constant_time: bool = False) -> PeksCiphertext:
    """PEKS(pk, w) with fresh randomness.

    By default without a pairing (E_w cached, E_w^r by mcl: variable-time in the one-use r, see
    ``docs/crypto-notes.md``); ``constant_time=True`` takes the pairing path, constant-time throughout
    (blst), for about 0.5 ms more.  Both give the same ciphertext for the same r.
    """
    if not isinstance(pk, PeksPublicKey):
        raise TypeError(f"peks_encrypt needs a PeksPublicKey, got {type(pk).__name__}")
    return (_encrypt_pairing if constant_time else _encrypt_with)(pk, keyword, _random_scalar())


#: Size of a record's PEKS randomness r as it travels inside C_M (big-endian scalar in [1, q)).
RANDOMNESS_SIZE = 32


def peks_encrypt_record(pk: PeksPublicKey, keywords: Sequence[KeywordLike], *,
                        constant_time: bool = False) -> tuple[list[PeksCiphertext], bytes, bytes]:
    """One record's keyword ciphertexts with **one** fresh r for all of them (multi-keyword PEKS, as in
    Baek, Safavi-Naini and Susilo's mPEKS): ``C_i = (A, H2(E_{w_i}^r))`` with the same ``A = g^r``.

    Returns the ciphertexts (in ``keywords`` order), A (48 bytes) and r (32 bytes, big-endian): the doctor
    puts r inside C_M, pads take the same A (:func:`peks_pad` with ``a``), and the patient checks every
    ciphertext by recomputing it from r (:func:`record_b`) — no pairing once E_w is cached — while a proxy
    pairs A with a trapdoor once per record, not once per ciphertext.  Each ciphertext is an ordinary PEKS
    ciphertext: Test is unchanged.  The keywords must be distinct (the envelope de-duplicates them).
    ``constant_time`` takes the pairing path (h^r once, one pairing per keyword), constant-time throughout.
    """
    if not isinstance(pk, PeksPublicKey):
        raise TypeError(f"peks_encrypt_record needs a PeksPublicKey, got {type(pk).__name__}")
    words = [canonical_keyword(w) for w in keywords]
    if len(set(words)) != len(words):  # equal keywords would give equal ciphertexts: that would show
        raise QueryError("peks_encrypt_record needs distinct keywords (one record's ciphertexts share r)")
    r = _random_scalar()
    a = _bls.g1_mul_generator(r)
    if constant_time:
        hr = _bls.g1_trusted(pk._multiplier.mul(r))
        bs = [h2(_bls.pair(hr, _h1(w).point)) for w in words]
    else:
        bs = [h2(_e_w(pk, w).pow(r)) for w in words]
    point = _bls.g1_trusted(a)
    return [PeksCiphertext(point, b) for b in bs], a, r.to_bytes(RANDOMNESS_SIZE, "big")


def randomness_point(r: bytes) -> bytes | None:
    """A = g^r (48 bytes, constant-time) for r as it travels inside C_M; None if r is not 32 bytes of a
    scalar in [1, q) (refused, never reduced)."""
    if not isinstance(r, (bytes, bytearray)) or len(r) != RANDOMNESS_SIZE:
        return None
    k = int.from_bytes(r, "big")
    return _bls.g1_mul_generator(k) if 0 < k < GROUP_ORDER else None


def record_b(pk: PeksPublicKey, keyword: KeywordLike, r: bytes) -> bytes:
    """B = H2(E_w^r): what a ciphertext of ``keyword`` with randomness ``r`` carries (no pairing once E_w is
    cached).  ``r`` must be valid (see :func:`randomness_point`)."""
    return h2(_e_w(pk, canonical_keyword(keyword)).pow(int.from_bytes(r, "big")))


def check_opening(pk: PeksPublicKey, keyword: KeywordLike, r: bytes, ciphertext: PeksCiphertext) -> bool:
    """True iff ``ciphertext`` is exactly PEKS(pk, w; r): A = g^r and B = H2(E_w^r).

    The same predicate as ``test(trapdoor(sk, w), ciphertext)`` (both say B = H2(e(g, H1(w))^{αr}) with
    g^r = A), decided without a pairing once E_w is cached: one constant-time G1 multiplication and one GT
    exponentiation.  An r outside [1, q) or of another length is refused (False), never reduced.
    """
    if not isinstance(pk, PeksPublicKey) or not isinstance(ciphertext, PeksCiphertext):
        raise TypeError(f"check_opening needs (PeksPublicKey, keyword, bytes, PeksCiphertext), got "
                        f"({type(pk).__name__}, …, {type(ciphertext).__name__})")
    a = randomness_point(r)
    if a is None or not hmac.compare_digest(a, ciphertext.to_bytes()[:48]):
        return False
    return hmac.compare_digest(record_b(pk, keyword, r), ciphertext.b)


def peks_pad(seed: bytes, a: bytes | None = None) -> PeksCiphertext:
    """A padding ciphertext that no trapdoor matches, derived from a secret 32-byte ``seed``.

    ``B = SHA-256(PAD_TAG‖"b"‖seed)``; ``A`` is the record's shared ``A = g^r`` when given (a record encrypted
    with :func:`peks_encrypt_record`: every slot carries the same A, so A tells no pad from a keyword),
    else ``g^{r'}`` with ``r' = H(PAD_TAG‖"r"‖seed) mod q`` (records with one r per keyword).  Without the
    seed a pad is indistinguishable from a real ciphertext (B is a hash output like H2(e(h^r, H1(w)))), so
    padding every record to the same number of ciphertexts hides how many keywords it has.  No trapdoor
    matches it: H2(e(A, T_w)) = B would be a SHA-256 collision between two domain-separated inputs.
    Whoever holds the seed (it travels inside C_M) recomputes it and so checks that a pad hides no keyword.
    ``a`` must be a point this process computed (it is not checked again).
    """
    seed = _check_encoding(seed, PAD_SEED_SIZE, "PEKS pad seed")
    b = hashlib.sha256(PAD_TAG + b"b" + seed).digest()
    if a is not None:
        return PeksCiphertext._computed(a, b)
    r = int.from_bytes(hashlib.sha512(PAD_TAG + b"r" + seed).digest(), "big") % GROUP_ORDER
    if r == 0:  # pragma: no cover - probability 2^-255
        raise MalformedDataError("PEKS pad seed derives a zero scalar; use another seed")
    return PeksCiphertext._computed(_bls.g1_mul_generator(r), b)


def parse_ciphertexts(blobs: Iterable[bytes], *, prepare: bool = True) -> tuple[PeksCiphertext, ...]:
    """Several encoded ciphertexts (one record's), each A parsed and subgroup-checked once however many
    ciphertexts share it, and (``prepare``, for a search) prepared for :func:`_bls.pair_lines` once.
    Errors as :meth:`PeksCiphertext.from_bytes`."""
    points: dict[bytes, tuple[G1Element, object]] = {}
    out = []
    for data in blobs:
        data = _check_encoding(data, CIPHERTEXT_SIZE, "PEKS ciphertext", versioned=True)
        a = data[:48]
        known = points.get(a)
        if known is None:
            point = _g1_from_bytes(a, "PEKS ciphertext A")
            known = points[a] = (point, _bls.g1_prepare(point) if prepare else None)
        ct = PeksCiphertext(known[0], data[48:])
        if known[1] is not None:
            object.__setattr__(ct, "_a_prepared", known[1])
        out.append(ct)
    return tuple(out)


def new_pad_seed() -> bytes:
    return secrets.token_bytes(PAD_SEED_SIZE)


def trapdoor(sk: PeksSecretKey, keyword: KeywordLike) -> Trapdoor:
    """Trapdoor(sk, w) = H1(w)^α."""
    return sk.trapdoor(keyword)


def _test(lines: _bls.G2Lines, ct: PeksCiphertext, memo: dict[bytes, bytes] | None = None) -> bool:
    """H2(e(A, T_w)) == B, with T_w's Miller-loop lines precomputed; ``memo`` keeps H2(e(A, T_w)) per A, so
    the ciphertexts of one record (one shared A) cost one pairing."""
    if memo is None:
        return hmac.compare_digest(h2(_bls.pair_lines(lines, ct._prepared)), ct.b)
    a = ct.to_bytes()[:48]
    k = memo.get(a)
    if k is None:
        k = memo[a] = h2(_bls.pair_lines(lines, ct._prepared))
    return hmac.compare_digest(k, ct.b)


def test(trapdoor: Trapdoor, ciphertext: PeksCiphertext) -> bool:
    """Test(T_w, C): True iff C encrypts the trapdoor's keyword under the trapdoor's key."""
    if not isinstance(trapdoor, Trapdoor) or not isinstance(ciphertext, PeksCiphertext):
        raise TypeError(f"test needs (Trapdoor, PeksCiphertext), got ({type(trapdoor).__name__}, "
                        f"{type(ciphertext).__name__})")
    return _test(trapdoor._lines, ciphertext)


test.__test__ = False  # type: ignore[attr-defined]  # not a pytest test function
peks_test = test


# --- batches on all cores ------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _reset_pool_after_fork() -> None:
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_reset_pool_after_fork)


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mbds-peks")
            _pool_size = workers
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _plan(items: int, workers: int | None) -> int:
    if workers is None:
        workers = usable_cores() if items >= PARALLEL_MIN_ITEMS else 1
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    return max(1, min(workers, items))


T = TypeVar("T")
U = TypeVar("U")


def _map_chunks(fn: Callable[[Sequence[T]], list[U]], items: Sequence[T], workers: int) -> list[U]:
    if workers <= 1:
        return fn(items)
    size = -(-len(items) // workers)
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    out: list[U] = []
    for part in _executor(workers).map(fn, chunks):
        out.extend(part)
    return out


def batch_test(trapdoor: Trapdoor, ciphertexts: Iterable[PeksCiphertext], *,
               workers: int | None = None) -> list[bool]:
    """``[test(trapdoor, c) for c in ciphertexts]``, on all cores when the batch is big enough.

    ``workers=None`` uses one thread per usable core for ≥ PARALLEL_MIN_ITEMS items;
    ``workers=1`` forces the calling thread.
    """
    if not isinstance(trapdoor, Trapdoor):
        raise TypeError(f"batch_test needs a Trapdoor, got {type(trapdoor).__name__}")
    cts = list(ciphertexts)
    for c in cts:
        if not isinstance(c, PeksCiphertext):
            raise TypeError(f"batch_test needs PeksCiphertext items, got {type(c).__name__}")
    if not cts:
        return []
    lines = trapdoor._lines

    def run(chunk: Sequence[PeksCiphertext]) -> list[bool]:
        memo: dict[bytes, bytes] = {}  # ciphertexts sharing an A (one record's) cost one pairing
        return [_test(lines, c, memo) for c in chunk]

    return _map_chunks(run, cts, _plan(len(cts), workers))


def _matches_all(points: Sequence[_bls.G2Lines], cts: Sequence[PeksCiphertext]) -> bool:
    remaining = list(cts)
    for point in points:
        memo: dict[bytes, bytes] = {}  # one pairing per distinct A: a record's ciphertexts share theirs
        for i, c in enumerate(remaining):
            if _test(point, c, memo):
                # distinct trapdoors are distinct keywords: a matched ciphertext cannot match another
                del remaining[i]
                break
        else:
            return False
    return True


def match_all(trapdoors: Iterable[Trapdoor], records: Mapping[R, Sequence[PeksCiphertext]], *,
              workers: int | None = None) -> list[R]:
    """Conjunctive search: the record ids (in mapping order) whose ciphertexts match every trapdoor."""
    tds: list[Trapdoor] = []
    seen: set[bytes] = set()
    for td in trapdoors:
        if not isinstance(td, Trapdoor):
            raise TypeError(f"match_all needs Trapdoor items, got {type(td).__name__}")
        key = td.to_bytes()
        if key not in seen:
            seen.add(key)
            tds.append(td)
    if not tds:
        raise QueryError("match_all needs at least one trapdoor: an empty conjunction would match every record")
    items = list(records.items())
    for rid, cts in items:
        if isinstance(cts, (bytes, str)) or not all(isinstance(c, PeksCiphertext) for c in cts):
            raise TypeError(f"record {rid!r}: expected a sequence of PeksCiphertext")
    if not items:
        return []
    points = [td._lines for td in tds]  # each trapdoor's Miller-loop lines, once per search
    flags = _map_chunks(lambda chunk: [_matches_all(points, cts) for _, cts in chunk], items,
                        _plan(len(items) * len(points), workers))
    return [rid for (rid, _), ok in zip(items, flags) if ok]


__all__ = [
    "CIPHERTEXT_SIZE", "EW_CACHE_SIZE", "G1_GENERATOR_BYTES", "G2_GENERATOR_BYTES", "GROUP_ORDER", "H1_DST", "H2_TAG",
    "PAD_SEED_SIZE", "PAD_TAG", "PARALLEL_MIN_ITEMS", "PUBLIC_KEY_SIZE", "SCHEME_VERSION", "SECRET_KEY_SIZE",
    "TRAPDOOR_SIZE",
    "PeksCiphertext", "PeksPublicKey", "PeksSecretKey", "Trapdoor",
    "batch_test", "canonical_keyword", "clear_caches", "h2", "hash_keyword", "hash_keyword_bytes", "match_all",
    "RANDOMNESS_SIZE", "check_opening", "new_pad_seed", "pairing_bytes", "parse_ciphertexts", "peks_encrypt",
    "peks_encrypt_record", "peks_pad", "randomness_point", "record_b", "peks_test", "test", "trapdoor", "usable_cores",
]
