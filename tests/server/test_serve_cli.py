"""``hashret serve`` as a real process: it answers on 127.0.0.1, warns when bound elsewhere
without a token, and exits 0 within seconds of SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from workflows.test_query import make_fake_run


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HASHRET_WORKDIR", str(tmp_path / "runs"))
    return make_fake_run(tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serves_and_stops_on_sigterm(fake):
    port = _free_port()
    env = {**os.environ, "HASHRET_WORKDIR": str(fake.workdir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hashcli", "serve", "--port", str(port), "--engine", "torch"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        assert health.json()["status"] == "ok" and health.json()["n_database"] == 18
        path = fake.photos[0]
        files = {"image": (path.name, path.read_bytes(), "image/png")}
        found = httpx.post(f"{base}/api/search?top=3", files=files, timeout=30)
        assert found.status_code == 200 and len(found.json()["results"]) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}/" in stderr


def test_another_address_without_a_token_is_warned_about(fake, monkeypatch):
    from typer.testing import CliRunner

    import hashcli.cli.serve as serve_module
    from hashcli.cli.app import app

    started = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: started.update(kw))
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--engine", "torch"])
    assert result.exit_code == 0, result.output
    assert "without a token" in result.stderr and started["host"] == "0.0.0.0"
    assert serve_module.TOKEN_ENV == "HASHRET_TOKEN"
