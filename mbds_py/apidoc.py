"""The services' OpenAPI documents: data files shipped with the package, served as they are.

``mbds_py/data/api/<service>.json`` is the single source (``docs/api`` links to it); a service answers
``GET /openapi.json`` with the file's bytes, so what it serves is what is committed.
"""

from __future__ import annotations

import functools
from pathlib import Path

API_DIR = Path(__file__).parent / "data" / "api"
SERVICES = ("replica", "proxy", "consortium", "portal")
PATH = "/openapi.json"


@functools.cache
def openapi_bytes(service: str) -> bytes:
    """The committed OpenAPI document of ``service`` (one of :data:`SERVICES`), byte for byte."""
    if service not in SERVICES:
        raise ValueError(f"no OpenAPI document for {service!r}; one of {', '.join(SERVICES)}")
    return (API_DIR / f"{service}.json").read_bytes()


__all__ = ["API_DIR", "PATH", "SERVICES", "openapi_bytes"]
