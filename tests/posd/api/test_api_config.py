"""LocalApi.from_config: the socket, the loopback TCP port and its token come from the config."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest

from posd.api import LocalApi
from posd.config import ConfigError, load_config
from posd.logs import redact
from tests.helpers.configs import API_TOKEN, write_config
from tests.helpers.payment_service import MemoryPaymentService, RunningApi, start_api


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_from_config_serves_socket_and_token_guarded_tcp(tmp_path: Path) -> None:
    port = _free_port()
    config = load_config(write_config(tmp_path, api={"tcp_port": port}))
    service = MemoryPaymentService()
    api = LocalApi.from_config(config, service, service.status)
    assert api.socket_path == config.api.socket
    running = RunningApi(api, service, config.api.socket, await start_api(api))
    try:
        assert api.tcp_bound_port == port
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/v1/status"
            async with session.get(url) as response:
                assert response.status == 401
            headers = {"Authorization": f"Bearer {API_TOKEN}"}
            async with session.get(url, headers=headers) as response:
                assert response.status == 200
        async with running.session() as session, session.get("/v1/status") as response:
            assert response.status == 200
    finally:
        await running.stop()
    # The token is a secret from the moment it is read: no log line can show it.
    assert API_TOKEN not in redact(f"token was {API_TOKEN}")


async def test_from_config_without_tcp_port_opens_no_tcp(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    service = MemoryPaymentService()
    api = LocalApi.from_config(config, service, service.status)
    running = RunningApi(api, service, config.api.socket, await start_api(api))
    try:
        assert api.tcp_bound_port is None
    finally:
        await running.stop()


def test_from_config_with_unreadable_token_is_a_config_error(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, api={"tcp_port": _free_port()}))
    (tmp_path / "api.token").write_text("short\n")
    with pytest.raises(ConfigError, match=r"api\.token_file"):
        LocalApi.from_config(config, MemoryPaymentService(), MemoryPaymentService().status)
