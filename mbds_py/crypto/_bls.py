"""BLS12-381 for PEKS: the few operations it needs, each on the binding measured best for it.

* **blst through blspy** — parsing with the subgroup check and the pairing (0.62 ms on this machine,
  the GIL released, so a thread pool uses every core).  blspy returns GT in blst's internal form:
  12 base-field coefficients, little-endian, in **Montgomery form**; :func:`pair` converts them to the
  plain little-endian encoding that H2 has hashed since the first version (the arkworks encoding).
* **blst through pyblst** — scalar multiplication in G1 and G2 (``blst_p1_mult``/``blst_p2_mult``:
  fixed 256-bit scalars take the constant-time GLV/window path, no branch or table index depends on the
  scalar) and RFC 9380 hash to G2.  Every multiplication by a secret (α, r) goes through here.
* **blst's precomputed lines** (``blst_precompute_lines``/``blst_miller_loop_lines``/``blst_final_exp``,
  exported by blspy's extension, called through ctypes, which releases the GIL) — every PEKS Test: a
  trapdoor's Miller-loop lines are computed once per search, so each Test is a Miller loop evaluated at A
  and a final exponentiation (measured 0.54 ms against blspy's ``pair`` 1.28 ms side by side on a busy
  machine).  Same GT element as :func:`pair` (tested); falls back to it if a blspy build hides the symbols.
* **mcl through pymcl** — exponentiation in GT (0.20 ms).  Used only by the pairing-free encryption
  ``E_w^r`` (see ``docs/crypto-notes.md`` for why a variable-time exponentiation by the one-use
  randomness r is acceptable there and by α would not be).

Everything crosses between bindings as bytes in the common encodings (compressed points as in the
zcash/IETF format, GT as 576 plain little-endian bytes), so each binding can be swapped on its own.
"""

from __future__ import annotations

import ctypes

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


# --- many pairings with one fixed G2 point (a trapdoor): blst's precomputed Miller-loop lines ------

def _blst_lines_api():
    """blst's ``precompute_lines`` / ``miller_loop_lines`` / ``final_exp`` as blspy's extension exports them
    (ctypes releases the GIL around each call).  None if this blspy build does not export them."""
    try:
        lib = ctypes.CDLL(blspy.__file__)
        fns = (lib.blst_p1_uncompress, lib.blst_p2_uncompress, lib.blst_precompute_lines,
               lib.blst_miller_loop_lines, lib.blst_final_exp)
    except (OSError, AttributeError):  # pragma: no cover - another blspy build
        return None
    p1_uncompress, p2_uncompress, precompute, miller, final_exp = fns
    ptr = ctypes.c_void_p
    p1_uncompress.argtypes = p2_uncompress.argtypes = [ptr, ctypes.c_char_p]  # (affine out, compressed in)
    p1_uncompress.restype = p2_uncompress.restype = ctypes.c_int  # BLST_ERROR, 0 = success
    precompute.argtypes = [ptr, ptr]  # (blst_fp6 lines[68] out, const blst_p2_affine *Q)
    miller.argtypes = [ptr, ptr, ptr]  # (blst_fp12 *out, const blst_fp6 lines[68], const blst_p1_affine *P)
    final_exp.argtypes = [ptr, ptr]  # (blst_fp12 *out, const blst_fp12 *f)
    precompute.restype = miller.restype = final_exp.restype = None
    return fns


_LINES_API = _blst_lines_api()
#: Whether the fixed-G2 pairing runs on precomputed lines (else it falls back to :func:`pair`).
HAVE_PRECOMPUTED_LINES = _LINES_API is not None
_P1_AFFINE_SIZE, _P2_AFFINE_SIZE, _LINES_SIZE = 96, 192, 68 * 288  # blst_p1_affine, blst_p2_affine, 68 × blst_fp6


class G2Lines:
    """A fixed G2 point Q (already checked) prepared for many pairings e(P, Q): blst precomputes the 68 line
    functions of Q's Miller loop once (19.5 KiB), so each pairing is a Miller loop evaluated at P plus the
    final exponentiation — the same GT element as :func:`pair`, without redoing Q's arithmetic."""

    __slots__ = ("point", "_lines")

    def __init__(self, point: G2Element):
        self.point = point
        self._lines = None
        if _LINES_API is not None:
            affine = ctypes.create_string_buffer(_P2_AFFINE_SIZE)
            if _LINES_API[1](affine, bytes(point)) != 0:  # pragma: no cover - the point was checked
                raise PointError("G2 point does not decompress")
            self._lines = ctypes.create_string_buffer(_LINES_SIZE)
            _LINES_API[2](self._lines, affine)


def g1_prepare(point: G1Element):
    """A G1 point (already checked) in the form :func:`pair_lines` takes: blst's affine coordinates."""
    if _LINES_API is None:  # pragma: no cover
        return point
    affine = ctypes.create_string_buffer(_P1_AFFINE_SIZE)
    if _LINES_API[0](affine, bytes(point)) != 0:  # pragma: no cover - the point was checked
        raise PointError("G1 point does not decompress")
    return affine


def pair_lines(q: G2Lines, p_prepared) -> bytes:
    """e(P, Q) as 576 plain little-endian bytes, for Q prepared once (:class:`G2Lines`) and P prepared by
    :func:`g1_prepare` (blst; the GIL is released during the Miller loop and the final exponentiation)."""
    if q._lines is None:  # pragma: no cover
        return pair(p_prepared, q.point)
    f = ctypes.create_string_buffer(GT_SIZE)
    out = ctypes.create_string_buffer(GT_SIZE)
    _LINES_API[3](f, q._lines, p_prepared)
    _LINES_API[4](out, f)
    return _from_montgomery(out.raw)


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
    "G1Element", "G1Multiplier", "G2Element", "G2Lines", "GtPower", "HAVE_PRECOMPUTED_LINES", "HashedG2",
    "PointError", "g1_from_bytes", "g1_mul_generator", "g1_prepare", "g1_trusted", "g2_from_bytes", "g2_trusted",
    "hash_to_g2", "pair_lines",
    "is_g1_identity", "is_g2_identity", "pair",
]
