"""How a service process (replica, consortium node, proxy) gets its secret key (issue 13 item 12).

Never from the environment (readable in ``/proc/PID/environ``, inherited by every child) nor from the
command line (``/proc/PID/cmdline``, ``ps``). Two ways in:

* ``--key-fd N`` — the launcher (:meth:`mbds_py.devnet.Devnet.spawn_service`) writes the key, hex, into a
  pipe whose read end the child inherits as fd N; the child reads it once at start and closes it. No
  scrypt at start: tens of devnet processes start (and restart on their recorded ports) in no time.
* ``--keystore F`` — an encrypted keystore (:mod:`mbds_py.keystore`: scrypt, AES-256-GCM) for a manual
  run, or, for a replica or consortium node (whose secret is an account key), an Ethereum V3 keystore
  such as the participant's ``kmc/accounts/NAME.json``; its passphrase is read once from ``--passphrase-fd N`` (e.g. a pipe from a secrets manager), else
  from a prompt when stdin is a terminal, else as the first line of stdin.

The former variables ``MBDS_PROXY_KEY`` / ``MBDS_NODE_KEY`` / ``MBDS_NODE_PASSPHRASE`` are refused with a
message saying what to do instead, and the launcher strips them (and ``MBDS_PASSPHRASE``) from the
environment of every service it starts.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Callable

from .cli_options import KEY_FD_ARG, add_key_arguments  # re-exported: the options are declared there
from .errors import ConfigError, KeystoreError
from .keystore import (DEFAULT_SCRYPT_N, SecretBundle, decrypt_account_v3, decrypt_bundle, encrypt_bundle,
                       is_account_v3, read_keystore, write_keystore)

LEGACY_ENV = ("MBDS_PROXY_KEY", "MBDS_NODE_KEY", "MBDS_NODE_PASSPHRASE")
SECRET_ENV = LEGACY_ENV + ("MBDS_PASSPHRASE",)  # never handed down to a service process
MAX_SECRET = 64 * 1024
KIND = "mbds-service-key"


def refuse_legacy_env(environ: dict[str, str] | None = None) -> None:
    """A key or passphrase in the environment is a leak: refuse to start, and say what to do instead."""
    environ = os.environ if environ is None else environ
    found = [name for name in LEGACY_ENV if name in environ]
    if found:
        raise ConfigError(f"{', '.join(found)} is no longer read (the environment is readable in /proc/PID/environ "
                          "and inherited by children): unset it and pass --keystore FILE (passphrase from "
                          "--passphrase-fd N, a prompt or stdin), or let the launcher hand the key over --key-fd")


def read_fd_once(fd: int, what: str) -> bytes:
    """Everything on ``fd`` up to EOF (bounded), then the fd is closed."""
    chunks, size = [], 0
    try:
        with os.fdopen(fd, "rb", closefd=True) as f:
            while True:
                chunk = f.read(4096)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_SECRET:
                    raise ConfigError(f"{what}: more than {MAX_SECRET} bytes on fd {fd}")
                chunks.append(chunk)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read fd {fd} ({exc.strerror}); pass a file descriptor this process "
                          "inherited") from None
    return b"".join(chunks)


def read_passphrase(args: argparse.Namespace, source: str) -> str:
    """The keystore passphrase: first line of ``--passphrase-fd``, else a prompt, else stdin's first line."""
    if args.passphrase_fd is not None:
        raw = read_fd_once(args.passphrase_fd, "passphrase").decode("utf-8", "replace")
    elif sys.stdin is not None and sys.stdin.isatty():
        raw = getpass.getpass(f"passphrase for {source}: ")
    else:
        raw = sys.stdin.readline() if sys.stdin is not None else ""
    passphrase = raw.splitlines()[0] if raw else ""
    if not passphrase:
        raise ConfigError(f"{source}: no passphrase (give it on stdin, through --passphrase-fd N or at the prompt)")
    return passphrase


def load_service_secret(args: argparse.Namespace, what: str, from_bundle: Callable[[SecretBundle], bytes]) -> bytes:
    """The service's secret, as the launcher's pipe carries it (``from_bundle`` maps a keystore to it)."""
    refuse_legacy_env()
    key_fd = getattr(args, "key_fd", None)
    if key_fd is not None:
        if args.keystore:
            raise ConfigError(f"{what}: give --keystore or {KEY_FD_ARG}, not both")
        raw = read_fd_once(key_fd, f"{what} key").strip()
        try:
            secret = bytes.fromhex(raw.decode().removeprefix("0x"))
        except (UnicodeDecodeError, ValueError):
            raise ConfigError(f"{what} key on fd {key_fd} is not hex") from None
        if not secret:
            raise ConfigError(f"{what}: no key on fd {key_fd} (the launcher's pipe was empty)")
        return secret
    if args.keystore:
        path = Path(args.keystore)
        doc = read_keystore(path)
        if is_account_v3(doc):  # an account key alone, e.g. a participant's kmc/accounts/NAME.json or cast's
            try:
                key, _ = decrypt_account_v3(doc, read_passphrase(args, str(path)), source=str(path))
            except KeystoreError as exc:
                raise ConfigError(f"{what}: {exc}") from None
            try:
                return from_bundle(SecretBundle(key, b"", b"", what))
            except (KeystoreError, ValueError) as exc:
                raise ConfigError(f"{what}: {path} is an Ethereum V3 keystore, which holds an account key only; "
                                  f"the {what} needs a full key set: give it an MBDS service keystore") from exc
        try:
            return from_bundle(decrypt_bundle(doc, read_passphrase(args, str(path)), source=str(path)))
        except (KeystoreError, ValueError) as exc:
            raise ConfigError(f"{what}: {exc}") from None
    raise ConfigError(f"no {what} key: pass --keystore FILE (passphrase on stdin, through --passphrase-fd N or "
                      f"at the prompt) or {KEY_FD_ARG} N")


def write_service_keystore(path: Path, bundle: SecretBundle, passphrase: str, what: str, *,
                           scrypt_n: int = DEFAULT_SCRYPT_N) -> None:
    """Write a service's encrypted keystore (owner-only, atomic) for ``--keystore``."""
    write_keystore(path, encrypt_bundle(bundle, passphrase, {"kind": KIND, "service": what}, scrypt_n=scrypt_n))


def node_bundle(key: bytes, what: str) -> SecretBundle:
    """A replica's or consortium node's keystore payload: its account key only."""
    return SecretBundle(bytes(key), b"", b"", what)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a service process gets: the launcher's, without any key or passphrase."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(extra or {})
    leaked = [k for k in env if k in SECRET_ENV]
    if leaked:
        raise ConfigError(f"refusing to pass {', '.join(leaked)} to a service through its environment")
    return env


__all__ = ["KEY_FD_ARG", "LEGACY_ENV", "SECRET_ENV", "add_key_arguments", "child_env", "load_service_secret",
           "node_bundle", "read_fd_once", "read_passphrase", "refuse_legacy_env", "write_service_keystore"]
