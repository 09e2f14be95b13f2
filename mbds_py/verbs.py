"""CLI verbs on a running network, each as a named participant (filled in by the scripting work)."""

from __future__ import annotations

import argparse
from typing import Callable


def add_verbs(sub: argparse._SubParsersAction, common: Callable[..., None]) -> None:
    """Add the participant verbs to the ``mbds`` parser (``common`` adds --spec/--state-dir/...)."""
