"""MBDS — medical blockchain double-chain system.

Private chains (PBFT) per hospital and Internet medicine platform, one
consortium chain (credit-scored DPoS) indexing them, encrypted health records
in content-addressed storage, shared through proxy re-encryption under patient
access policies.
"""

__version__ = "0.1.0"
