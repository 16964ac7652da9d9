"""Real parts for the service tests: a throwaway PostgreSQL (initdb + pg_ctl on a free
loopback port) and ``faceforge serve`` subprocesses with a tiny random model."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.model_helpers import primed_model, write_checkpoint
from tests.process_helpers import free_port, kill_session

ROOT = Path(__file__).resolve().parents[2]


def _as_db_user() -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class Postgres:
    """A throwaway PostgreSQL cluster: its URL, and a restart (what a failover or an
    upgrade does to the servers' connections)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.data, self.port = folder, folder / "data", free_port()
        self.url = f"postgresql://faces@127.0.0.1:{self.port}/postgres"
        self._options = f"-p {self.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        command = [*_as_db_user(), "pg_ctl", "-D", str(self.data), *args]
        subprocess.run(command, check=check, capture_output=True)

    def start(self) -> None:
        subprocess.run(
            [*_as_db_user(), "initdb", "-D", str(self.data), "-U", "faces", "--auth=trust"],
            check=True,
            capture_output=True,
        )
        self._pg_ctl("-o", self._options, "-w", "-l", str(self.folder / "log"), "start")

    def restart(self) -> None:
        """A fast restart; the server logs to its file (on our pipes it would keep them open)."""
        self._pg_ctl(
            "-o", self._options, "-m", "fast", "-w", "-l", str(self.folder / "log"), "restart"
        )

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "stop", check=False)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster in a temporary folder (one the ``postgres`` user can reach
    when tests run as root), stopped and removed at the end."""
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    folder = Path(tempfile.mkdtemp(prefix="faceforge-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    cluster = Postgres(folder)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a cluster shared by the session's tests (never restarted)."""
    with postgres_cluster() as cluster:
        yield cluster.url


#: a calibrated model's metrics: cosine thresholds 0.4, 0.5, 0.6, 0.7 at FAR 1e-1 .. 1e-4
METRICS = {
    "synthetic": {
        "best_threshold": 1.0,
        "far_thresholds": {"0.1": 1.2, "0.01": 1.0, "0.001": 0.8, "1e-04": 0.6},
    }
}


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "tiny.pt"
    return write_checkpoint(path, primed_model(), metrics=METRICS)


def faceforge(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "faceforge", *args],
        cwd=ROOT,
        check=check,
        capture_output=True,
        text=True,
    )


class Server:
    """A ``faceforge serve`` subprocess on a free loopback port."""

    def __init__(self, checkpoint: Path, store: str, *extra: str) -> None:
        self.checkpoint, self.store, self.extra = checkpoint, store, extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "faceforge",
            "serve",
            "--checkpoint",
            str(self.checkpoint),
            "--store",
            self.store,
            "--port",
            str(self.port),
            "--fallback",
            "stretch",
            "--device",
            "cpu",
            "--sync-ms",
            "50",
            *self.extra,
        ]
        self.process = subprocess.Popen(  # its own process group: --workers are children
            command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        while True:  # ready when /ready answers (or the process died)
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.process.stderr.read()}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                _wait_briefly(self.process)

    def kill(self) -> None:
        """``kill -9`` of the server and its worker processes."""
        kill_session(self.process)


def _wait_briefly(process: subprocess.Popen) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=0.2)


def start_server(checkpoint: Path, store: str) -> tuple[Server, str]:
    """A server and an API key for its store."""
    key = faceforge("serve-key", "--store", store).stdout.strip()
    return Server(checkpoint, store), key


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, str]]:
    """A running server with an API key, on each store."""
    if request.param == "sqlite":
        store = f"sqlite:///{tmp_path_factory.mktemp('db') / 'faces.db'}"
    else:
        store = request.getfixturevalue("postgres_url")
    server, key = start_server(checkpoint, store)
    yield server, key
    server.kill()
