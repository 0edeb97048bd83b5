"""A throwaway PostgreSQL (Debian's package) for tests and benchmarks, in a directory of its own.

PostgreSQL refuses to run as root, and the suite may run as root: then the server runs as an
unprivileged user (C{nobody} by default), in a temporary directory of its own (a test's
tmp_path sits under root's private directory, which that user could not enter). It listens on
127.0.0.1 by default, with passwords required (scram-sha-256), so a wrong one can be tested. It can
be stopped and started again on the same data, as an outage; it is stopped by the PID in its
postmaster.pid, and its directory removed, by L{PostgresServer.destroy}.

The fault harness runs it in a network namespace of its own: a command C{prefix} (``ip netns exec
NS``, which needs root, so the server's user is taken inside it) and C{listen} on 0.0.0.0 there.
Its own administration (the test's role, databases) goes through its unix socket, whose
directory is a path, reachable from any network namespace.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import psycopg

BIN = Path(os.environ.get("TXCHAT_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "txchat"  # the test's own role and database
PASSWORD = "txchat-secret"
SUPERUSER = "postgres"


def _binaries() -> Path:
    if (BIN / "postgres").exists():
        return BIN
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return found[-1].parent


class PostgresServer:
    def __init__(self, runAs: str = "nobody", fsync: bool = False, prefix: Sequence[str] = (),
                 listen: str = "127.0.0.1") -> None:
        """
        @param runAs: the user the server runs as when this process is root.
        @param fsync: off for tests (what a crash of the machine would lose is not tested
            here), on for benchmarks.
        @param prefix: a command that the server is started under, run as root (``ip netns
            exec NS``); the server then becomes C{runAs} inside it (C{setpriv}).
        @param listen: the address it listens on (``listen_addresses``).
        """
        self.bin = _binaries()
        self.port = 0
        self.fsync = fsync
        self.prefix = tuple(prefix)
        self.listen = listen
        self.directory = Path(tempfile.mkdtemp(prefix="txchat-pg-"))
        self.data = self.directory / "data"
        self._su: dict[str, Any] = {}
        self._become: tuple[str, ...] = ()
        if os.getuid() == 0:
            user = pwd.getpwnam(runAs)
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self._su = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            self._become = ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups")
        elif self.prefix:
            raise RuntimeError("a prefix (such as ip netns exec) needs root")
        self._initdb()

    def url(self, user: str = USER, password: str = PASSWORD, database: str = USER,
            host: str = "127.0.0.1") -> str:
        return f"postgresql://{user}:{password}@{host}:{self.port}/{database}"

    def admin(self, database: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        """A connection (psycopg, autocommit) as the superuser, through the unix socket."""
        import psycopg

        return psycopg.connect(host=str(self.directory), port=self.port, user=SUPERUSER, password=PASSWORD,
                               dbname=database, autocommit=True, connect_timeout=10)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=self.directory, capture_output=True, text=True, **self._su)

    def _runInside(self, *args: str) -> subprocess.CompletedProcess[str]:
        """C{args} under the prefix: started as root, then as the server's user."""
        if not self.prefix:
            return self._run(*args)
        return subprocess.run([*self.prefix, *self._become, *args], cwd=self.directory, capture_output=True,
                              text=True)

    def _initdb(self) -> None:
        pwfile = self.directory / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._su:
            os.chown(pwfile, self._su["user"], self._su["group"])
        done = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8",
                         "--locale=C", "--auth=scram-sha-256", f"--pwfile={pwfile}")
        pwfile.unlink()
        if done.returncode:
            raise RuntimeError("initdb failed:\n" + done.stdout + done.stderr)
        if self.listen not in ("127.0.0.1", "localhost"):
            # initdb lets in the loopback only; the namespace's links come from elsewhere.
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write("host all all 0.0.0.0/0 scram-sha-256\n")

    def start(self) -> PostgresServer:
        """Start on this server's port, or on the first free one found by trying (the bind
        decides, so there is no race with other programs); the first start creates the
        test's role and database."""
        first = not self.port
        candidates = [self.port] if self.port else random.sample(range(20000, 32768), 20)
        for port in candidates:
            if self._tryPort(port):
                self.port = port
                if first:
                    self._createUser()
                return self
        raise RuntimeError(f"postgres would not start on any of {candidates}")

    def _tryPort(self, port: int) -> bool:
        logfile = self.directory / "postgres.log"
        options = (f"-p {port} -c listen_addresses={self.listen} -c unix_socket_directories={self.directory}"
                   f" -c fsync={'on' if self.fsync else 'off'} -c max_connections=50")
        done = self._runInside(str(self.bin / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                         "-l", str(logfile), "-o", options)
        if done.returncode == 0:
            return True
        log = logfile.read_text(errors="replace") if logfile.exists() else ""
        if "could not bind" in log or "Address already in use" in log:
            logfile.unlink()
            return False
        raise RuntimeError("postgres failed:\n" + done.stdout + done.stderr + log)

    def _createUser(self) -> None:
        with self.admin() as connection:
            connection.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            connection.execute(f"CREATE DATABASE {USER} OWNER {USER}")

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """A fast shutdown: clients are disconnected, the data is kept for the next start.
        (pg_ctl signals the PID in postmaster.pid, and waits until it has gone.)"""
        self._pgctlStop("fast")

    def kill(self) -> None:
        """An immediate shutdown, as a crash: recovered from at the next start."""
        self._pgctlStop("immediate")

    def _pgctlStop(self, mode: str) -> None:
        if self.pid is None:
            return
        done = self._run(str(self.bin / "pg_ctl"), "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data))
        if done.returncode and self.pid is not None:
            raise RuntimeError("pg_ctl stop failed:\n" + done.stdout + done.stderr)

    def _processes(self) -> list[int]:
        """The postmaster and its children (the backends, the background workers)."""
        pid = self.pid
        if pid is None:
            return []
        found = [pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
        return found

    def pause(self) -> None:
        """SIGSTOP to every process of the server: silent, its connections open, as a server
        that hangs (the kernel still acknowledges what is sent to it)."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        """Stop it and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def database(self, name: str) -> str:
        """A new, empty database C{name} owned by the test's role; its URL."""
        with self.admin() as connection:
            connection.execute(f'CREATE DATABASE "{name}" OWNER {USER}')
        return self.url(database=name)
