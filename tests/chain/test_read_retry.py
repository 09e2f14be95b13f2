"""A chain read survives a connection the node resets; a test method is never sent twice.

A loaded Ganache resets a pooled keep-alive connection now and then: a proxy's ``eth_chainId`` failed with
``ConnectionResetError`` beside a concurrent suite, and with it a whole grant.  The fault is injected in
front of a real Anvil by a TCP relay that resets the first connections it accepts.
"""

from __future__ import annotations

import socket
import struct
import threading
from urllib.parse import urlparse

import pytest
import requests

from mbds_py.chain.client import ChainClient
from tests.conftest import TEST_CHAIN_ID


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class ResettingRelay:
    """Relays TCP to a node, but resets (RST) each of the first ``resets`` connections once it has read the
    request on it."""

    def __init__(self, target_url: str, resets: int):
        target = urlparse(target_url)
        self.target = (target.hostname, target.port)
        self.resets = resets
        self.accepted = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            if self.accepted <= self.resets:
                conn.recv(65536)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def relay(anvil_url, request):
    r = ResettingRelay(anvil_url, resets=request.param)
    yield r
    r.close()


@pytest.mark.parametrize("relay", [1, 3], indirect=True)
def test_a_read_is_asked_again_after_the_node_resets_the_connection(relay):
    client = ChainClient(relay.url, name="reset-relay")
    assert client.w3.eth.chain_id == TEST_CHAIN_ID
    assert client.w3.eth.get_balance("0x" + "00" * 19 + "01") >= 0
    assert relay.accepted == relay.resets + 1  # every reset connection, then one that answered


@pytest.mark.parametrize("relay", [1], indirect=True)
def test_a_test_method_is_not_sent_again_after_a_reset(relay):
    """``evm_mine`` may have run before the reset: asking again could mine twice, so the error surfaces."""
    client = ChainClient(relay.url, name="reset-relay")
    with pytest.raises(requests.ConnectionError, match="reset by peer|aborted"):
        client.w3.provider.make_request("evm_mine", [])
    assert relay.accepted == 1


@pytest.mark.parametrize("relay", [100], indirect=True)
def test_a_node_that_keeps_resetting_is_given_up_on_with_the_error(relay):
    client = ChainClient(relay.url, name="reset-relay")
    with pytest.raises(requests.ConnectionError, match="reset by peer|aborted"):
        client.w3.eth.block_number
    assert relay.accepted == 6  # READ_RETRY.retries attempts, no more
