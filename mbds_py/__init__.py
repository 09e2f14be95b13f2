"""MBDS — medical blockchain double-chain system.

Private chains (PBFT) per hospital and Internet medicine platform, one
consortium chain (credit-scored DPoS) indexing them, encrypted health records
in content-addressed storage, shared through proxy re-encryption under patient
access policies.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "connect"]


def __getattr__(name: str):
    """``mbds_py.connect`` (see :mod:`mbds_py.scripting`), imported on first use so ``import mbds_py`` stays cheap."""
    if name == "connect":
        from .scripting import connect

        return connect
    raise AttributeError(f"module 'mbds_py' has no attribute {name!r}")
