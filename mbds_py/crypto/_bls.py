"""BLS12-381 for PEKS: the few operations it needs, each on the binding measured best for it.

* **blst through blspy** — parsing with the subgroup check and the pairing (0.62 ms on this machine,
  the GIL released, so a thread pool uses every core).  blspy returns GT in blst's internal form:
  12 base-field coefficients, little-endian, in **Montgomery form**; :func:`pair` converts them to the
  plain little-endian encoding that H2 has hashed since the first version (the arkworks encoding).
* **blst through pyblst** — scalar multiplication in G1 and G2 (``blst_p1_mult``/``blst_p2_mult``:
  fixed 256-bit scalars take the constant-time GLV/window path, no branch or table index depends on the
  scalar) and RFC 9380 hash to G2.  Every multiplication by a secret (α, r) goes through here.
* **mcl through pymcl** — exponentiation in GT (0.20 ms).  Used only by the pairing-free encryption
  ``E_w^r`` (see ``docs/crypto-notes.md`` for why a variable-time exponentiation by the one-use
  randomness r is acceptable there and by α would not be).

Everything crosses between bindings as bytes in the common encodings (compressed points as in the
zcash/IETF format, GT as 576 plain little-endian bytes), so each binding can be swapped on its own.
"""

from __future__ import annotations

import blspy
import pyblst
import pymcl

#: Order q of G1, G2 and GT.
GROUP_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
#: The base-field modulus p.
FIELD_MODULUS = 0x1A0111EA397FE69A4B1BA7B6434BACD764774B84F38512BF6730D2A0F6B0F6241EABFFFEB153FFFFB9FEFFFFFFFFAAAB
_MONT_INV = pow(1 << 384, -1, FIELD_MODULUS)  # R^-1 mod p, R = 2^384

G1_SIZE = 48
G2_SIZE = 96
GT_SIZE = 576

G1Element = blspy.G1Element
G2Element = blspy.G2Element

G1_GENERATOR_BYTES = bytes(blspy.G1Element.generator())
G2_GENERATOR_BYTES = bytes(blspy.G2Element.generator())
_G1_IDENTITY_BYTES = bytes(blspy.G1Element())
_G2_IDENTITY_BYTES = bytes(blspy.G2Element())
_P1_GENERATOR = pyblst.BlstP1Element.uncompress(G1_GENERATOR_BYTES)


class PointError(ValueError):
    """Bytes that are not a point of the subgroup (bad encoding, off the curve, off the subgroup)."""


# --- points ------------------------------------------------------------------------------------


def g1_from_bytes(data: bytes) -> G1Element:
    """A G1 point from 48 compressed bytes, on the curve and in the order-q subgroup (blst checks both)."""
    try:
        return blspy.G1Element.from_bytes(data)
    except (ValueError, RuntimeError) as exc:
        raise PointError(str(exc)) from None


def g2_from_bytes(data: bytes) -> G2Element:
    """A G2 point from 96 compressed bytes, on the curve and in the order-q subgroup."""
    try:
        return blspy.G2Element.from_bytes(data)
    except (ValueError, RuntimeError) as exc:
        raise PointError(str(exc)) from None


def g1_trusted(data: bytes) -> G1Element:
    """A G1 point this process computed itself: decompressed without the subgroup check."""
    return blspy.G1Element.from_bytes_unchecked(data)


def g2_trusted(data: bytes) -> G2Element:
    """A G2 point this process computed itself: decompressed without the subgroup check."""
    return blspy.G2Element.from_bytes_unchecked(data)


def is_g1_identity(point: G1Element) -> bool:
    return bytes(point) == _G1_IDENTITY_BYTES


def is_g2_identity(point: G2Element) -> bool:
    return bytes(point) == _G2_IDENTITY_BYTES


def _check_scalar(k: int) -> None:
    if not 0 < k < GROUP_ORDER:  # pragma: no cover - callers pass scalars of [1, q)
        raise ValueError("scalar outside [1, q)")


def g1_mul_generator(k: int) -> bytes:
    """g^k compressed, in constant time (blst)."""
    _check_scalar(k)
    return _P1_GENERATOR.scalar_mul(k).compress()


class G1Multiplier:
    """A fixed G1 point P (compressed, already checked) to multiply by secret scalars."""

    __slots__ = ("_p1",)

    def __init__(self, compressed: bytes):
        self._p1 = pyblst.BlstP1Element.uncompress(compressed)

    def mul(self, k: int) -> bytes:
        """P^k compressed, in constant time (blst)."""
        _check_scalar(k)
        return self._p1.scalar_mul(k).compress()


class HashedG2:
    """H1(w): the hashed point in both forms PEKS uses (pyblst to multiply, blspy to pair)."""

    __slots__ = ("compressed", "_p2", "point")

    def __init__(self, p2: pyblst.BlstP2Element):
        self._p2 = p2
        self.compressed = p2.compress()
        self.point = blspy.G2Element.from_bytes_unchecked(self.compressed)

    def mul(self, k: int) -> bytes:
        """H1(w)^k compressed, in constant time (blst)."""
        _check_scalar(k)
        return self._p2.scalar_mul(k).compress()


def hash_to_g2(message: bytes, dst: bytes) -> HashedG2:
    """RFC 9380 hash_to_curve, suite BLS12381G2_XMD:SHA-256_SSWU_RO_ with the given tag (blst)."""
    return HashedG2(pyblst.BlstP2Element.hash_to_group(message, dst))


# --- GT ----------------------------------------------------------------------------------------


def _from_montgomery(raw: bytes) -> bytes:
    p, inv = FIELD_MODULUS, _MONT_INV
    return b"".join((int.from_bytes(raw[i:i + 48], "little") * inv % p).to_bytes(48, "little")
                    for i in range(0, GT_SIZE, 48))


def pair(a: G1Element, b: G2Element) -> bytes:
    """e(a, b) as 576 plain little-endian bytes (blst; the GIL is released while pairing)."""
    return _from_montgomery(bytes(a.pair(b)))


class GtPower:
    """A fixed GT element E, raised to many exponents: ``E.pow(r)`` is E^r as 576 bytes (mcl)."""

    __slots__ = ("_gt",)

    def __init__(self, encoded: bytes):
        self._gt = pymcl.GT.deserialize(encoded)

    def pow(self, k: int) -> bytes:
        _check_scalar(k)
        return (self._gt ** pymcl.Fr.deserialize(k.to_bytes(32, "little"))).serialize()


__all__ = [
    "FIELD_MODULUS", "G1_GENERATOR_BYTES", "G1_SIZE", "G2_GENERATOR_BYTES", "G2_SIZE", "GROUP_ORDER", "GT_SIZE",
    "G1Element", "G1Multiplier", "G2Element", "GtPower", "HashedG2", "PointError",
    "g1_from_bytes", "g1_mul_generator", "g1_trusted", "g2_from_bytes", "g2_trusted", "hash_to_g2",
    "is_g1_identity", "is_g2_identity", "pair",
]
