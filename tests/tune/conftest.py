"""A throw-away PostgreSQL server for the multi-worker study tests."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = "PostgreSQL server binaries not found; install them with `apt-get install postgresql`."


def _version_key(bindir: str) -> list[int]:
    """Sort key of /usr/lib/postgresql/<version>/bin: its version number."""
    return [int(part) if part.isdigit() else 0 for part in Path(bindir).parent.name.split(".")]


def _server_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: pg_config's bindir, Debian's versioned dirs, else PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versioned, key=_version_key, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _create_database(port: int, user: str, name: str) -> None:
    """CREATE DATABASE `name` on the local server (over TCP, so no socket permissions are involved)."""
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname="postgres")
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Start a private PostgreSQL cluster on a free local port (trust auth) and yield a URL to a fresh database."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed; pip install psycopg2-binary")
    bindir = _server_bindir()
    if bindir is None:
        pytest.skip(INSTALL_HINT)
    as_root = os.getuid() == 0
    if as_root:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("Running as root but there is no `postgres` user to run the server as; apt-get install postgresql.")
        prefix = ["runuser", "-u", "postgres", "--"]
    else:
        prefix = []
    # Under /tmp: short enough for the server's Unix socket path, and reachable by the postgres user.
    root = Path(tempfile.mkdtemp(prefix="genlab-pg-", dir="/tmp" if Path("/tmp").is_dir() else None))
    if as_root:
        os.chown(root, account.pw_uid, account.pw_gid)
    data, log_file, user, port = root / "data", root / "server.log", "genlab", _free_port()

    def run(*command: str) -> None:
        result = subprocess.run([*prefix, *command], cwd=root, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            server_log = log_file.read_text() if log_file.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}\n{server_log}")

    started = False
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        started = True
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log_file), "-o", options, "-w", "-t", "30", "start")
        _create_database(port, user, "studies")
        yield f"postgresql://{user}@127.0.0.1:{port}/studies"
    finally:
        if started:
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                cwd=root, capture_output=True, check=False,
            )
        shutil.rmtree(root, ignore_errors=True)
