"""Binding a listener: a remembered port that is taken gives way to one the OS picks, and a port shared by worker
processes (SO_REUSEPORT) is that port or an error, never another one."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from mock_site.server import Listener


async def _app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    return None


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port held by a listening socket without SO_REUSEPORT (so nobody else can share it)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def test_a_remembered_port_that_is_taken_gives_way_to_one_the_os_picks(held_port: int,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    listener = Listener("cmg", _app, port=held_port)
    try:
        port = listener.bind()
        assert port != held_port and listener.socket is not None and listener.socket.getsockname()[1] == port
        assert f"port {held_port} for cmg is busy; letting the OS choose" in caplog.text
    finally:
        if listener.socket is not None:
            listener.socket.close()


def test_a_shared_port_that_cannot_be_shared_is_an_error_not_another_port(held_port: int) -> None:
    listener = Listener("cmg", _app, port=held_port)
    with pytest.raises(OSError):
        listener.bind_shared()
    assert (listener.socket, listener.port) == (None, held_port)


def test_two_listeners_share_a_port_with_reuseport() -> None:
    first = Listener("cmg", _app)
    first.bind_shared()
    second = Listener("cmg", _app, port=first.port)
    try:
        second.bind_shared()
        assert second.port == first.port
    finally:
        for listener in (first, second):
            if listener.socket is not None:
                listener.socket.close()
