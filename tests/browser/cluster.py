"""A throwaway lark cluster for the browser tests: Postgres, Redis and N nodes on
127.0.0.11, .12, ... (the same shape as chaos/cluster.sh), with kill -9 and owner look-ups.
Everything it starts is stopped by `stop()`; logs stay in `workdir` for the artifacts."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_json(url: str, timeout: float = 1.0):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.load(answer)


def wait_until(condition, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # not up yet
            last_error = error
        time.sleep(every)
    raise TimeoutError(f"{what} not reached within {timeout}s (last error: {last_error})")


class Cluster:
    def __init__(self, nodes: int, node_bin: Path, workdir: Path, env: dict | None = None):
        self.count = nodes
        self.node_bin = node_bin
        self.workdir = workdir
        self.extra_env = env or {}
        self.procs: dict[int, subprocess.Popen] = {}
        self.raft_ids: dict[int, int] = {}
        self.pg_ctl = None
        self.redis = None
        self.database_url = ""
        self.redis_url = ""

    def url(self, i: int) -> str:
        return f"http://127.0.0.{10 + i}:8000"

    def cluster_addr(self, i: int) -> str:
        return f"127.0.0.{10 + i}:9000"

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start_postgres()
        self._start_redis()
        for i in range(1, self.count + 1):
            self.start_node(i)
            wait_until(lambda: self._ready(i), 60, f"n{i} ready")
        wait_until(lambda: self._members_agree(self.count), 60, f"{self.count} members")
        for i in range(1, self.count + 1):
            self.raft_ids[i] = http_json(self.url(i) + "/cluster/status")["raft_node_id"]

    def _as_postgres(self, args):
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args

    def _start_postgres(self):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            raise RuntimeError("postgres is not installed (apt-get install -y postgresql)")
        pg_bin = bins[-1].parent
        data = self.workdir / "pg"
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(data, "postgres")
        subprocess.run(self._as_postgres([str(pg_bin / "initdb"), "-D", str(data), "-U", "lark", "-A", "trust", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = free_port()
        self.pg_ctl = [str(pg_bin / "pg_ctl"), "-D", str(data)]
        subprocess.run(self._as_postgres([*self.pg_ctl, "-l", str(data / "server.log"), "-w", "-t", "60", "-o",
                                          f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                                          "start"]), check=True, stdout=subprocess.DEVNULL)
        self.database_url = f"postgres://lark@127.0.0.1:{port}/postgres"

    def _start_redis(self):
        if not shutil.which("redis-server"):
            return
        port = free_port()
        self.redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(self.workdir)],
                                      stdout=open(self.workdir / "redis.log", "w"), stderr=subprocess.STDOUT)
        self.redis_url = f"redis://127.0.0.1:{port}"

    def start_node(self, i: int):
        seeds = ",".join(self.cluster_addr(j) for j in self.procs if j != i and self.alive(j))
        home = self.workdir / f"n{i}"
        home.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "BIND_ADDR": f"127.0.0.{10 + i}:8000",
            "NODE_ID": f"n{i}",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "JWT_SECRET": "browser-test-jwt-secret",
            "CLUSTER_ADDR": self.cluster_addr(i),
            "CLUSTER_SECRET": "browser-test-cluster-secret",
            "SEED_NODES": seeds,
            "DATA_DIR": str(home / "data"),
            "RAFT_HEARTBEAT_MS": "100",
            "RAFT_ELECTION_MIN_MS": "400",
            "RAFT_ELECTION_MAX_MS": "800",
            "DEAD_AFTER_MS": "1500",
            "SHUTDOWN_GRACE_MS": "1000",
            "PUBLIC_BASE_URL": self.url(1),
            # Both browsers sign in from this one machine.
            "LOGIN_RATE_PER_MIN": "100000",
            "SIGNUP_RATE_PER_HOUR": "100000",
            "RUST_LOG": "info,sqlx=warn,tower_http=warn",
            **self.extra_env,
        }
        log = open(self.workdir / f"n{i}.log", "a")
        self.procs[i] = subprocess.Popen([str(self.node_bin)], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)

    def alive(self, i: int) -> bool:
        proc = self.procs.get(i)
        return proc is not None and proc.poll() is None

    def _ready(self, i: int) -> bool:
        if not self.alive(i):
            raise RuntimeError(f"n{i} exited; see {self.workdir}/n{i}.log")
        with urllib.request.urlopen(self.url(i) + "/readyz", timeout=1) as answer:
            return answer.status == 200

    def _members_agree(self, want: int) -> bool:
        views = [http_json(self.url(i) + "/cluster/status")["membership"] for i in self.procs if self.alive(i)]
        return all(len(v["members"]) == want and v["leader"] for v in views) and len({v["epoch"] for v in views}) == 1

    def wait_members(self, want: int, timeout: float) -> float:
        started = time.monotonic()
        wait_until(lambda: self._members_agree(want), timeout, f"{want} members")
        return time.monotonic() - started

    def owner_index(self, key: str) -> int:
        live = next(i for i in self.procs if self.alive(i))
        owner = http_json(f"{self.url(live)}/cluster/owner?key={key}")["owner"]
        return next(i for i, raft_id in self.raft_ids.items() if raft_id == owner)

    def kill(self, i: int):
        proc = self.procs[i]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        if self.redis and self.redis.poll() is None:
            self.redis.kill()
            self.redis.wait(timeout=10)
        if self.pg_ctl:
            subprocess.run(self._as_postgres([*self.pg_ctl, "-m", "immediate", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
