"""PEKS known answers, generated with the py-arkworks-bls12381 0.5.0 implementation (the scheme's first
binding) and pinned as hex: every later binding must reproduce them byte for byte, or stored ciphertexts
and issued trapdoors stop matching.  They pin H1 (hash to G2), the GT encoding hashed by H2, H2 itself,
ciphertexts with small and full-width randomness, trapdoors, padding and the derived key of a seed."""

from __future__ import annotations

import hashlib

import pytest

from mbds_py.crypto import PatientSecrets, peks
from mbds_py.crypto.peks import PeksCiphertext, PeksSecretKey, Trapdoor

KAT_SK = bytes.fromhex("2a" * 31 + "01")

H1_VECTORS = {
    "icd10|E11.9": "b4c34832b9bcac3db52f2683037401a79c87cbaa305925e092cfec8fbb61ffb8e8e230ae84915d3c4c427ce4b5a3c704"
                   "0451ada3cf71d03aa853006ec4578a21cec9c6187b7119f4ddcf463466ae00e3d0b74be83765571a9a2f69068b1be503",
    "snomed|44054006": "840abb99fadf1f8992751802070e056479ab10c82c2e77728c0bafb29c6e3d6d83847082962ab5eb36e6c4588e2fd0ae"
                       "18b51f7dc68609d3154aaf0adc09ea3415e0390bea00363c8e38354a3bbf8706570112c7505d102a7d0a82c4cfc6a497",
    "loinc|4548-4": "a974e53711ee4b9f3bef633742612b25d9f3c94b4fc7242f1fc9e5174b269bf3949dd20f2850d1a745e63d1c8f131b6c"
                    "01a08eea76c3e9a1acf8ad877dbcad3ec2a65d5dccfbb9f127c1cf3cabc703d8f4bf6736183784a0826c8c1777fb50a9",
    "text|metformin": "8540d3b3c3efdcf525453ec0b624820f1823c17b0e2404942ad822275cab883fd7e5e5ecad1d655f929a184cf6e8e4f0"
                      "01411e21f079c63f64364476d0a6efa4b6956fd76460163535abbad62b9cec1840c37275e6b45945330855f27bfe025a",
}

#: e(g1, g2) as H2 hashes it: 12 base-field coefficients, 48 bytes little-endian each (not Montgomery form).
GT_GENERATOR = (
    "b68917caaa0543a808c53908f694d1b6e7b38de90ce9d83d505ca1ef1b442d2727d7d06831d8b2a7920afc71d8eb5012"
    "0f17a0ea982a88591d9f43503e94a8f1abaf2e4589f65aafb7923c484540a868883432a5c60e75860b11e5465b1c9a08"
    "873ec29e844c1c888cb396933057ffdd541b03a5220eda16b2b3a6728ea678034ce39c6839f20397202d7c5c44bb6813"
    "4f93193cec215031b17399577a1de5ff1f5b0666bdd8907c61a7651e4e79e0372951505a07fa73c25788db6eb8023519"
    "a5aa97b51f1cad1d43d8aabbff4dc319c79a58cafc035218747c2f75daf8f2fb7c00c44da85b129113173d4722f5b201"
    "b6b4454062e9ea8ba78c5ca3cadaf7238b47bace5ce561804ae16b8f4b63da4645b8457a93793cbd64a7254f15078101"
    "9de87ee42682940f3e70a88683d512bb2c3fb7b2434da5dedbb2d0b3fb8487c84da0d5c315bdd69c46fb05d23763f219"
    "1aabd5d5c2e12a10b8f002ff681bfd1b2ee0bf619d80d2a795eb22f2aa7b85d5ffb671a70c94809f0dafc5b73ea2fb06"
    "57bae23373b4931bc9fa321e8848ef78894e987bff150d7d671aee30b3931ac8c50e0b3b0868effc38bf48cd24b4b811"
    "a2995ac2a09122bed9fd9fa0c510a87b10290836ad06c8203397b56a78e9a0c61c77e56ccb4f1bc3d3fcaea7550f3503"
    "efe30f2d24f00891cb45620605fcfaa4292687b3a7db7c1c0554a93579e889a121fd8f72649b2402996a084d2381c504"
    "3166673b3849e4fd1e7ee4af24aa8ed443f56dfd6b68ffde4435a92cd7a4ac3bc77e1ad0cb728606cf08bf6386e5410f"
)
H2_OF_GT_GENERATOR = "2933dbb494cd9289ceacdb9ab5eebf5356b4d12957088b6c040ba18c7b9fbad2"

#: PEKS(pk(KAT_SK), "snomed|44054006") with r = q - 2 (a full-width scalar).
CT_FULL_WIDTH_R = ("8572cbea904d67468808c8eb50a9450c9721db309128012543902d0ac358a62ae28f75bb8f1c7c42c39a8c5529bf0f4e"
                   "a1a4a8e5d5c12b081e6006a1e8d533e64250a18f3ccba04a1838c19703d7f224")
PAD_OF_SEED_0_31 = ("b4a1a1b0541ec7f2abec01c553c7a34fb225bee9bca5c144291f63f6c2c533d67fa31db33e4c5cc67a31f089d8f676ad"
                    "45272b1489ce03905f8b46db5316f7710bd6c629d97825e1130332617b55fd7c")
DERIVED_PK = ("87131796319fd59baf018d466c6d02fcf072d45af599db2e5d4ffb54d5c8fd28c96de42e86f417d4db5726877631bb75")
DERIVED_TD_HBA1C = ("85bd06c3bdc69cc68ec00254c0669ea61525733d80614b2d07a54dda771f7e192c688f24b9e6a1411c72283ea78587d7"
                    "05080b7fadd84c8a004e04517692e13ff8dd5c7ca971520937f2bfcafd81a14936189de9052220dad27f87443a669f33")


@pytest.mark.parametrize("keyword", sorted(H1_VECTORS))
def test_h1_known_answer(keyword):
    assert peks.hash_keyword_bytes(keyword).hex() == H1_VECTORS[keyword]


def test_gt_encoding_and_h2_known_answer():
    assert peks.pairing_bytes(peks.G1_GENERATOR_BYTES, peks.G2_GENERATOR_BYTES).hex() == GT_GENERATOR
    assert peks.h2(bytes.fromhex(GT_GENERATOR)).hex() == H2_OF_GT_GENERATOR


def test_ciphertext_with_full_width_randomness_known_answer():
    sk = PeksSecretKey.from_bytes(KAT_SK)
    ct = peks._encrypt_with(sk.public_key(), "snomed|44054006", peks.GROUP_ORDER - 2)
    assert ct.to_bytes().hex() == CT_FULL_WIDTH_R
    assert peks.test(sk.trapdoor("snomed|44054006"), PeksCiphertext.from_bytes(bytes.fromhex(CT_FULL_WIDTH_R)))
    assert not peks.test(sk.trapdoor("icd10|E11.9"), ct)


def test_pad_known_answer():
    assert peks.peks_pad(bytes(range(32))).to_bytes().hex() == PAD_OF_SEED_0_31


def test_derived_key_and_trapdoor_known_answer():
    p = PatientSecrets.derive(hashlib.sha256(b"mbds-test/patient-1").digest())
    assert p.peks.public_key().to_bytes().hex() == DERIVED_PK
    td = p.peks.trapdoor("loinc|4548-4")
    assert td.to_bytes().hex() == DERIVED_TD_HBA1C
    assert Trapdoor.from_bytes(bytes.fromhex(DERIVED_TD_HBA1C)) == td
