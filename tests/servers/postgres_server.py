"""A private PostgreSQL for the archive's tests: Debian's `postgresql` binaries (initdb, pg_ctl), a
cluster in a temporary folder on a free loopback port, trust authentication, stopped at the end.
PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user."""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tokentail.redis_server import free_port


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/<n>/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (the archive's tests need it)")
        self.bin = bin_dir
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="tokentail-pg-")
        self.data = os.path.join(self.root, "data")
        self.as_root = os.getuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> "PostgresServer":
        if self.as_root:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-w", "-t", "60", "-l", f"{self.root}/log", "start")
        return self

    def stop(self) -> None:
        self.thaw()  # a frozen server would not see the signal that stops it
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped (a test may stop it to see the archive down)
        shutil.rmtree(self.root, ignore_errors=True)

    def pause(self) -> None:
        """Stop the server, keeping its data: the archive is down until `resume`."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-w", "-t", "60", "-l", f"{self.root}/log", "start")

    def freeze(self) -> None:
        """SIGSTOP the server and every process of it, as a hung disk or a stuck failover would: the
        kernel still accepts connections, and nothing answers them until `thaw`."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, number: signal.Signals) -> None:
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as file:
                postmaster = int(file.readline())
        except (OSError, ValueError):
            return  # not running
        for pid in [postmaster, *_children(postmaster)]:
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                pass


def _children(parent: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as file:
                # pid (name) state ppid ...: the name may hold spaces and parentheses
                if entry.isdigit() and int(file.read().rsplit(")", 1)[1].split()[1]) == parent:
                    children.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return children
