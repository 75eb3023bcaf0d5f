"""Shared end-to-end fixtures: one `crm up` (real processes, real broker) for the whole session."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crm_cli.infra import free_port
from crm_cli.stack import METRICS_PORTS


def _free_run(count: int) -> int:
    """A first port such that it and the next count-1 ports are all free (the stack uses base+n)."""
    for _ in range(200):
        base = free_port()
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no run of {count} free ports found")


class Stack:
    """A `crm up` process and what it wrote to CRM_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "CRM_HOME": str(home),
            "CRM_PG_PORT": str(free_port()),
            "CRM_KAFKA_PORT": str(free_port()),
            "CRM_METRICS_PORT_BASE": str(_free_run(len(METRICS_PORTS))),
            **{f"CRM_{n}_PORT": str(free_port()) for n in ("PROJECTIONS", "CONTACTS", "DEALS", "SUPPORT")},
        }
        for name in ("CRM_DATABASE_URL", "CRM_KAFKA_BOOTSTRAP_SERVERS"):
            self.env.pop(name, None)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.home / "endpoints.json").unlink(missing_ok=True)
        log = (self.home / "up.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "crm_cli.main", "up"], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 180
        while not (self.home / "endpoints.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.home / "up.log").read_text()[-4000:])
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @property
    def endpoints(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.home / "endpoints.json").read_text())
        return loaded

    @property
    def token(self) -> str:
        return (self.home / "dev-token").read_text().strip()

    def crm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "crm_cli.main", *args], env=self.env, capture_output=True, text=True, timeout=120
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("crm-home"))
    s.start()
    yield s
    s.stop()
