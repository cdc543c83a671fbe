"""Azurite (blob only) for checkpoint-store tests.

    with azurite_blob() as conn_str: ...          # sync
    async with azurite_blob_async() as conn_str:  # async
    conn_str = azurite_or_skip(...)               # pytest: skips when Node/Azurite is missing
    with azurite_blob(tls=files) as conn_str:     # HTTPS + ``--oauth basic`` (bearer tokens)
        account_url(conn_str)                     # https://127.0.0.1:<port>/devstoreaccount1

Azurite accepts OAuth bearer tokens only over HTTPS (``--oauth basic`` with ``--cert`` and
``--key``): it checks a token's issuer, audience and lifetime, not its signature.
Telemetry is always off (``--disableTelemetry``): tests never reach beyond loopback.

The binary is ``node_modules/.bin/azurite-blob`` under the repository root
(``npm install`` there installs it from package.json), else ``azurite-blob`` on PATH.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tls import TlsFiles

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "devstoreaccount1"
# The documented, public Azurite development key (not a secret).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
INSTALL_HINT = "install it with `cd <repo root> && npm install` (package.json lists azurite)"


class AzuriteUnavailable(RuntimeError):
    """Node or the azurite package is not installed."""


def find_binary() -> str:
    local = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        if shutil.which("node") is None:
            raise AzuriteUnavailable("azurite is installed but `node` is not on PATH")
        return str(local)
    on_path = shutil.which("azurite-blob")
    if on_path:
        return on_path
    raise AzuriteUnavailable(f"azurite-blob not found; {INSTALL_HINT}")


def blob_connection_string(host: str, port: int, scheme: str = "http") -> str:
    return (
        f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={scheme}://{host}:{port}/{ACCOUNT};"
    )


def account_url(conn_str: str) -> str:
    """The blob endpoint of an Azurite connection string (STORAGE_ACCOUNT_URL's value)."""
    parts = dict(p.split("=", 1) for p in conn_str.split(";") if "=" in p)
    return parts["BlobEndpoint"]


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def azurite_command(binary: str, host: str, port: int) -> list[str]:
    """In memory, on ``host`` only, and without telemetry: by default Azurite (3.33+) sends
    usage data to Application Insights, which a test run must never do."""
    return [binary, "--blobHost", host, "--blobPort", str(port), "--inMemoryPersistence",
            "--skipApiVersionCheck", "--disableTelemetry", "--silent"]


@contextlib.contextmanager
def azurite_blob(
    host: str = "127.0.0.1", timeout: float = 20.0, *, tls: TlsFiles | None = None
) -> Iterator[str]:
    """Start an in-memory Azurite blob service on a free port; yield its connection string.
    With ``tls``: HTTPS with that certificate and OAuth (bearer tokens) enabled."""
    binary = find_binary()
    port = _free_port(host)
    workdir = tempfile.mkdtemp(prefix="azurite-")  # cwd, so stray files never land in the repo
    cmd = azurite_command(binary, host, port)
    if tls is not None:
        cmd += ["--cert", str(tls.cert), "--key", str(tls.key), "--oauth", "basic"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=workdir,
        start_new_session=True,  # our Ctrl-C goes to pytest, not to node mid-test
    )
    try:
        deadline = time.monotonic() + timeout
        while not _listening(host, port):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise AzuriteUnavailable(
                    f"azurite-blob exited with {proc.returncode}: {err[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"azurite-blob did not listen on {host}:{port} in {timeout}s")
            time.sleep(0.05)
        yield blob_connection_string(host, port, "https" if tls is not None else "http")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def azurite_blob_async(host: str = "127.0.0.1", timeout: float = 20.0) -> AsyncIterator[str]:
    manager = azurite_blob(host, timeout)
    conn_str = await asyncio.to_thread(manager.__enter__)
    try:
        yield conn_str
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


@contextlib.contextmanager
def azurite_or_skip(host: str = "127.0.0.1", *, tls: TlsFiles | None = None) -> Iterator[str]:
    """For pytest fixtures: like azurite_blob, but skips the test when Azurite can't run."""
    import pytest

    if os.environ.get("AZURITE_REQUIRED") != "1":
        try:
            find_binary()
        except AzuriteUnavailable as exc:
            pytest.skip(f"Azurite unavailable: {exc}")
    with azurite_blob(host, tls=tls) as conn_str:
        yield conn_str
