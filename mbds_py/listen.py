"""Listening sockets: bound once, then handed down — never a port probed and bound later.

The launcher binds every service's listening socket itself (the spec's port, or
port 0 for any free one), learns the bound port from the socket, writes it into
the configurations that name it, and passes the open socket to the child
process (``--listen NAME=FD``, the fd inherited through ``pass_fds``).  A port
is therefore never free between the moment it is chosen and the moment it is
served.  A service started by hand binds its own socket the same way and
reports the address it got.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import socket
import threading
from pathlib import Path
from typing import Callable, TypeVar

from .cli_options import add_listen_argument  # re-exported: the option is declared there
from .errors import DevnetError, PortInUseError

BACKLOG = 512
STABLE_PORTS_FROM = 20000  # services bound to "any port" get one from here up to the ephemeral range
T = TypeVar("T")
NETNS_DIR = Path("/run/netns")  # where `ip netns add` puts its named network namespaces
CLONE_NEWNET = 0x40000000


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections and to ``bind(0)`` (Linux; else the IANA range)."""
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 49152, 65535
    return low, high


def stable_port_candidates(count: int = 64) -> list[int]:
    """Random ports below the ephemeral range for a service that may be restarted on its port: a port from
    the ephemeral range, once released, is soon some outgoing connection's local port (thousands a minute
    on a busy devnet), so a restart would find it taken."""
    low = ephemeral_range()[0]
    if low - 1 - STABLE_PORTS_FROM < 1024:
        return []
    rng = random.SystemRandom()
    return [rng.randint(STABLE_PORTS_FROM, low - 1) for _ in range(count)]


def in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """``fn()`` run on a thread that entered the Linux network namespace ``netns`` (None: run here).

    A socket keeps the namespace it was created in, whichever process later holds it, so a launcher
    can bind a service's socket inside the namespace the service will run in.  Needs CAP_SYS_ADMIN.
    """
    if netns is None:
        return fn()
    path = NETNS_DIR / netns
    if not path.exists():
        raise DevnetError(f"network namespace {netns!r} does not exist ({path}); create it with "
                          f"`ip netns add {netns}` or drop `netns` from the spec's [[hosts]]")
    out: dict[str, object] = {}

    def enter_and_run() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:  # this thread only
                err = ctypes.get_errno()
                raise DevnetError(f"cannot enter network namespace {netns!r}: {os.strerror(err)} "
                                  "(it needs root or CAP_SYS_ADMIN)")
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            out["error"] = exc
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter_and_run, name=f"netns:{netns}")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]  # type: ignore[return-value]


def bind_listener(host: str, port: int = 0, *, what: str = "service", netns: str | None = None) -> socket.socket:
    """A listening TCP socket on ``host:port`` (inside the network namespace ``netns``), inheritable by a child.

    Port 0 means any free port: one below the kernel's ephemeral range when one is free (bound at once and
    kept, never probed), else whatever the kernel gives.  A busy fixed port raises :class:`PortInUseError`.
    """
    return in_netns(netns, lambda: _bind_any(host, port, what))


def _bind_any(host: str, port: int, what: str) -> socket.socket:
    if port == 0:
        for candidate in stable_port_candidates():
            try:
                return _bind(host, candidate, what)
            except PortInUseError:
                continue
    return _bind(host, port, what)


def _bind(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(f"{what}: port {port} on {host} is busy; free it or choose another port "
                                 f"(0 = any free port)") from None
        raise PortInUseError(f"{what}: cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


def bound_port(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def inherited_sockets(specs: list[str]) -> dict[str, socket.socket]:
    """Parse ``--listen NAME=FD`` arguments into the listening sockets they name."""
    out: dict[str, socket.socket] = {}
    for spec in specs:
        name, sep, fd = spec.partition("=")
        if not sep or not fd.isdigit():
            raise PortInUseError(f"--listen {spec!r}: expected NAME=FD, e.g. http=3")
        try:
            sock = socket.socket(fileno=int(fd))
        except OSError as exc:
            raise PortInUseError(f"--listen {spec!r}: fd {fd} is not an open socket ({exc.strerror})") from None
        out[name] = sock
    return out


def listener(inherited: dict[str, socket.socket], name: str, host: str, port: int, *,
             what: str = "service") -> socket.socket:
    """The inherited socket named ``name``, else a socket this process binds itself."""
    sock = inherited.pop(name, None)
    return sock if sock is not None else bind_listener(host, port, what=what)


__all__ = ["add_listen_argument", "bind_listener", "in_netns", "bound_port", "inherited_sockets", "listener"]
