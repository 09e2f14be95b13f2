"""The options of the long-running commands, kept apart from the services themselves.

``mbds node run --help`` (or any parse of a service's command line) imports only this module and the
standard library's :mod:`argparse`: the services (web3, the crypto bindings, HTTP servers) are imported
when the command runs.  Each service module re-exports its ``add_arguments`` from here, so
``python -m mbds_py.private.node`` and the tests see the same options.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
KEY_FD_ARG = "--key-fd"
STORAGE_DEFAULT_PORT = 5001
"""Kubo's RPC API port."""
STORAGE_DEFAULT_MAX_BLOB_SIZE = 64 * 1024 * 1024
"""Largest file accepted by ``add`` unless configured otherwise."""


def add_log_level(parser: argparse.ArgumentParser, default: str | None = "INFO") -> argparse.ArgumentParser:
    """``--log-level LEVEL`` (default ``default``) and ``-v/--verbose`` (= ``--log-level DEBUG``).

    ``default=None`` (the commands that drive the network from the CLI's own process): logging is left as
    Python has it, warnings and errors only, until one of the two options is given."""
    parser.add_argument("--log-level", default=default, type=str.upper, choices=LOG_LEVELS, metavar="LEVEL",
                        help=f"log verbosity: {', '.join(LOG_LEVELS)} "
                             f"({f'default {default}' if default else 'default: warnings and errors only'})")
    parser.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="DEBUG",
                        help="log everything (the same as --log-level DEBUG)")
    return parser


def add_listen_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", action="append", default=[], metavar="NAME=FD",
                        help="serve on an already-listening socket inherited from the launcher "
                             "(overrides --host/--port for that endpoint)")


def add_key_arguments(parser: argparse.ArgumentParser, what: str) -> argparse.ArgumentParser:
    """``--keystore F`` (+ ``--passphrase-fd N``) for manual runs, ``--key-fd N`` for the launcher."""
    parser.add_argument("--keystore", metavar="FILE",
                        help=f"encrypted keystore of the {what}; the passphrase is read once from --passphrase-fd, "
                             "else prompted (terminal) or read as the first line of stdin")
    parser.add_argument("--passphrase-fd", type=int, metavar="N",
                        help="read the keystore passphrase (first line) from this file descriptor, e.g. 0 for stdin")
    parser.add_argument(KEY_FD_ARG, type=int, metavar="N",
                        help="read the key (hex) once from this inherited file descriptor (the devnet launcher's "
                             "pipe)")
    return parser


# --- storage node --------------------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """Parse ``67108864``, ``64MiB``, ``64M`` or ``512KiB`` (binary units) into bytes."""
    match = _SIZE_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}; use bytes or a unit such as 64MiB")
    number, unit = match.groups()
    value = int(number) * _SIZE_UNITS[(unit or "")[:1].lower()]
    if value <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return value


def storage_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The storage node's options (``mbds storage run``)."""
    parser.add_argument("--data-dir", required=True, type=Path, help="directory holding blocks and pins")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=STORAGE_DEFAULT_PORT,
                        help=f"port to listen on; 0 picks a free one (default {STORAGE_DEFAULT_PORT})")
    parser.add_argument("--max-blob-size", type=parse_size, default=STORAGE_DEFAULT_MAX_BLOB_SIZE,
                        help="largest file accepted by add, e.g. 64MiB (default)")
    parser.add_argument("--no-verify-on-read", dest="verify_on_read", action="store_false",
                        help="serve blocks without re-hashing them (clients still verify)")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="write {\"url\", \"pid\"} as JSON here once listening")
    add_listen_argument(parser)
    return add_log_level(parser)


# --- chain services --------------------------------------------------------------------------------------------


def node_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A PBFT replica's options (``mbds node run``)."""
    parser.add_argument("--config", required=True, help="node configuration JSON (written by `mbds devnet up`)")
    parser.add_argument("--index", type=int, required=True, help="this replica's index in the validator set")
    add_key_arguments(parser, "validator")
    add_listen_argument(parser)
    return add_log_level(parser)


def _service_arguments(parser: argparse.ArgumentParser, config_help: str, key_role: str) -> argparse.ArgumentParser:
    parser.add_argument("--config", required=True, help=config_help)
    parser.add_argument("--port", type=int, help="HTTP port (overrides the configuration)")
    add_key_arguments(parser, key_role)
    add_listen_argument(parser)
    return add_log_level(parser)


def consortium_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A consortium node's options (``mbds consortium run``)."""
    return _service_arguments(parser, "consortium node configuration JSON", "institution")


def proxy_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A re-encryption proxy's options (``mbds proxy run``)."""
    return _service_arguments(parser, "proxy configuration JSON (no secrets)", "proxy")


# --- portal ----------------------------------------------------------------------------------------------------


def portal_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The web portal's options (``mbds portal``)."""
    p.add_argument("--as", dest="name", required=True, metavar="PARTICIPANT",
                   help="the enrolled patient or doctor this portal serves (e.g. alice, dr-li)")
    p.add_argument("--spec", help="network spec TOML (default: the embedded devnet)")
    p.add_argument("--state-dir", help="the running network's state folder (default: the spec's)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1); an address beyond loopback needs --allow-remote")
    p.add_argument("--allow-remote", action="store_true",
                   help="accept a --host beyond loopback (e.g. 0.0.0.0): the portal speaks plain HTTP, so put a "
                        "TLS-terminating proxy in front")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one, printed at start)")
    p.add_argument("--passphrase-stdin", action="store_true",
                   help="read the keystore passphrase from the first line of stdin and unlock at start "
                        "(otherwise the page asks for it)")
    return add_log_level(p)


# --- bench -----------------------------------------------------------------------------------------------------


def _key_list(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise argparse.ArgumentTypeError("--only needs at least one key")
    return keys


def bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``mbds bench``."""
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repetitions: finishes in under two minutes (for tests)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="write every key's median and spread as JSON")
    parser.add_argument("--markdown", metavar="FILE", type=Path,
                        help="write the results as a Markdown table with targets and ratios to baselines")
    parser.add_argument("--plot", metavar="FILE.png", type=Path,
                        help="also sweep the load axes and write a PNG chart (matplotlib)")
    parser.add_argument("--only", metavar="KEY,...", type=_key_list, default=None,
                        help="run only the measurements of these keys (a baseline runs with its key); "
                             "curve or panel names select plot series")
    parser.add_argument("--compare", metavar="OLD.json", type=Path, default=None,
                        help="after the run, print each key's median beside OLD.json's (a previous --json report): "
                             "the ratio new/old and whether it got better or worse")
    parser.add_argument("--against", metavar="NEW.json", type=Path, default=None,
                        help="with --compare: compare OLD.json with this report instead of running anything")
    parser.add_argument("--tolerance", metavar="PCT", type=_percent, default=None,
                        help="with --compare: a change within ±PCT %% is reported as unchanged (default 5)")
    return add_log_level(parser, default=None)


def _percent(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tolerance {text!r}: give a percentage such as 5") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"--tolerance {text!r}: give a percentage from 0 to below 100")
    return value
