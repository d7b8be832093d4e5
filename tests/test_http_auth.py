"""Nobody else gets in: ``agent19 serve --http`` beyond loopback needs a credential, checked on every request.

The non-loopback test is real: a network namespace joined to this one by a veth pair (made here, removed
after), the server bound to the veth address, the real MCP client run inside the namespace — from
another host's point of view. Skipped outside CI where namespaces cannot be made (not root)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from agent19.http_auth import configure, is_loopback
from tests.conftest import need
from tests.mcp_client import listening
from tools.throwaway import free_port

ROOT = Path(__file__).parent.parent
CLIENT = Path(__file__).parent / "http_auth_client.py"


def test_every_loopback_address_is_loopback_and_nothing_else():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "192.168.1.10", "db.example.com",
                                            "::ffff:10.0.0.1"))


def _serve(host: str, port: int, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "agent19", "serve", "--http", "--host", host, "--port", str(port),
                             *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT19_HTTP_TOKEN", "AGENT19_OAUTH"))}
    return {**env, **extra}


@contextmanager
def _running(host: str, *args: str, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    with listening(_serve(host, port, *args, env=env), host, port) as url:
        yield url


def _probe(url: str, token: str, netns: str | None = None) -> dict[str, dict[str, object]]:
    cmd = [sys.executable, str(CLIENT), url]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    done = subprocess.run(cmd, env={**os.environ, "AGENT19_TEST_TOKEN": token, "PYTHONPATH": str(ROOT)},
                          cwd=ROOT, capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def _assert_only_right_token(results: dict[str, dict[str, object]]) -> None:
    for bad in ("none", "wrong"):
        assert results[bad]["status"] == 401, results
        assert str(results[bad]["www_authenticate"]).lower().startswith("bearer"), results
        assert str(results[bad]["mcp"]).startswith("failed"), results
    assert results["right"]["status"] == 200, results
    assert results["right"]["mcp"] == "ok" and results["right"]["mode"] == "read-only", results


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "10.1.2.3"])
def test_beyond_loopback_without_a_credential_refuses_to_start_and_says_how(bind):
    proc = _serve(bind, free_port(), env=_clean_env())
    out, _ = proc.communicate(timeout=60)
    text = out.decode()
    assert proc.returncode == 2, text
    assert "refusing to serve MCP over HTTP" in text and "AGENT19_HTTP_TOKEN" in text and "--token-file" in text


def test_unusable_credentials_are_refused(tmp_path):
    with pytest.raises(Exception, match="shorter than 32"):
        configure("0.0.0.0", 8019, env={"AGENT19_HTTP_TOKEN": "too-short"})
    loose = tmp_path / "token"
    loose.write_text(secrets.token_urlsafe(32) + "\n")
    loose.chmod(0o644)
    with pytest.raises(Exception, match="readable by other users"):
        configure("0.0.0.0", 8019, token_file=str(loose))
    loose.chmod(0o600)
    assert configure("0.0.0.0", 8019, token_file=str(loose)) is not None
    with pytest.raises(Exception, match="both AGENT19_OAUTH_ISSUER"):
        configure("0.0.0.0", 8019, env={"AGENT19_OAUTH_ISSUER": "https://auth.example.com"})
    assert configure("127.0.0.1", 8019, env={}) is None  # loopback stays open without a credential


@contextmanager
def _netns() -> Iterator[tuple[str, str]]:
    """A network namespace and a veth pair to it: yields (namespace, this side's address)."""
    if os.geteuid() != 0:
        need(False, "creating a network namespace needs root")
    tag = uuid.uuid4().hex[:6]
    ns, host_if, peer_if = f"a19{tag}", f"a19h{tag}", f"a19p{tag}"
    octet = int(tag[:2], 16) % 250 + 2
    host_ip, peer_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"
    made = subprocess.run(["ip", "netns", "add", ns], capture_output=True)
    if made.returncode != 0:
        need(False, f"cannot create a network namespace here: {made.stderr.decode().strip()}")
    try:
        for cmd in (["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if],
                    ["ip", "link", "set", peer_if, "netns", ns],
                    ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
                    ["ip", "link", "set", host_if, "up"],
                    ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{peer_ip}/30", "dev", peer_if],
                    ["ip", "netns", "exec", ns, "ip", "link", "set", peer_if, "up"],
                    ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]):
            subprocess.run(cmd, check=True, capture_output=True)
        yield ns, host_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_from_another_network_only_the_right_token_gets_in(dsn, tmp_path):
    token = secrets.token_urlsafe(32)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    with _netns() as (ns, host_ip):
        with _running(host_ip, "--dsn", dsn, "--token-file", str(token_file), env=_clean_env()) as url:
            results = _probe(url, token, netns=ns)
    _assert_only_right_token(results)


def test_environment_token_also_protects_loopback(dsn):
    token = secrets.token_urlsafe(32)
    with _running("127.0.0.1", "--dsn", dsn, env=_clean_env(AGENT19_HTTP_TOKEN=token)) as url:
        _assert_only_right_token(_probe(url, token))


# --- OAuth resource server: JWT access tokens signed by an authorization server's published key ----------

class _Jwks(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def test_oauth_access_tokens_are_verified_against_the_issuers_keys(dsn):
    jwt = pytest.importorskip("jwt")
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key, other = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    _Jwks.body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()
    jwks_server = HTTPServer(("127.0.0.1", 0), _Jwks)
    threading.Thread(target=jwks_server.serve_forever, daemon=True).start()
    issuer = "https://auth.example.test"
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    env = _clean_env(AGENT19_OAUTH_ISSUER=issuer, AGENT19_OAUTH_JWKS_URL=f"http://127.0.0.1:{jwks_server.server_port}/",
                     AGENT19_OAUTH_SCOPES="agent19")

    def mint(signer=key, **claims: object) -> str:
        body = {"iss": issuer, "aud": resource, "sub": "alice", "scope": "agent19", "exp": int(time.time()) + 600,
                **claims}
        return jwt.encode(body, signer, algorithm="RS256", headers={"kid": "k1"})

    proc = _serve("127.0.0.1", port, "--dsn", dsn, env=env)
    try:
        url = resource
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        _assert_only_right_token(_probe(url, mint()))
        for bad in (mint(aud="http://elsewhere/mcp"), mint(exp=int(time.time()) - 60), mint(signer=other),
                    mint(iss="https://evil.example"), mint(scope="other")):
            assert _probe(url, bad)["right"]["status"] == 401
        import httpx2

        meta = httpx2.get(f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp", timeout=10).json()
        assert meta["resource"] == resource and meta["authorization_servers"] == [issuer]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        jwks_server.shutdown()


def test_every_loopback_address_is_protected_from_dns_rebinding(dsn):
    """A page in the user's browser must not reach a loopback server through a name that resolves to it:
    a foreign Host header is refused on 127.0.0.2 too, not only on the SDK's default 127.0.0.1."""
    import httpx2

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    with _running("127.0.0.2", "--dsn", dsn, env=_clean_env()) as url:
        port = url.split(":")[2].split("/")[0]
        foreign = httpx2.post(url, json=init, headers={**headers, "Host": f"attacker.example:{port}"}, timeout=10)
        assert foreign.status_code in (400, 403, 421), foreign.status_code
        page = httpx2.post(url, json=init, headers={**headers, "Origin": "http://attacker.example"}, timeout=10)
        assert page.status_code in (400, 403), page.status_code
        own = httpx2.post(url, json=init, headers=headers, timeout=10)
        assert own.status_code == 200, own.text
