"""A real replicated Redis on loopback for ``tta bench failover`` and the failover tests: a
master, a replica and three sentinels (redis-server run with --sentinel; no package beyond
redis-server)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from service.redis_server import PrivateRedis, find_redis_server, free_port

MASTER_NAME = "tta"
DOWN_AFTER_MS = 1000
"""How long the sentinels wait before they call the master down (the failover's first part)."""


def _wait_for(check: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class ReplicatedRedis:
    root: Path
    master: PrivateRedis = field(init=False)
    replica: PrivateRedis = field(init=False)
    sentinel_ports: list[int] = field(default_factory=list)
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> ReplicatedRedis:
        self.master = PrivateRedis(self.root / "master", persist=False).start()
        self.replica = PrivateRedis(self.root / "replica", persist=False).start()
        with redis.Redis(port=self.replica.port) as replica:
            replica.replicaof("127.0.0.1", self.master.port)
        _wait_for(lambda: self.replicas_in_sync(self.master.port) == 1, 15, "the replica to sync")
        for index in range(3):
            self.sentinel_ports.append(self._start_sentinel(index))
        _wait_for(lambda: all(self.sentinel_sees_replica(port) for port in self.sentinel_ports), 15,
                  "the sentinels to find the replica")
        return self

    def _start_sentinel(self, index: int) -> int:
        port = free_port()
        directory = self.root / f"sentinel-{index}"
        directory.mkdir(parents=True)
        conf = directory / "sentinel.conf"
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                        f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                        f"sentinel parallel-syncs {MASTER_NAME} 1\n")
        log = open(directory / "sentinel.log", "wb")  # noqa: SIM115 (closed with the process)
        self.sentinels.append(subprocess.Popen([find_redis_server(), str(conf), "--sentinel"],
                                               stdout=log, stderr=subprocess.STDOUT))
        _wait_for(lambda: redis.Redis(port=port, socket_connect_timeout=0.5).ping(), 10, f"sentinel {port}")
        return port

    @property
    def sentinel_setting(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    @staticmethod
    def replicas_in_sync(port: int) -> int:
        with redis.Redis(port=port, socket_connect_timeout=0.5) as client:
            info = client.info("replication")
        return sum(1 for key, value in info.items()
                   if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online")

    def sentinel_sees_replica(self, port: int) -> bool:
        with redis.Redis(port=port, socket_connect_timeout=0.5) as client:
            return len(client.sentinel_slaves(MASTER_NAME)) >= 1

    def master_port(self) -> int:
        """The master the sentinels name now."""
        with redis.Redis(port=self.sentinel_ports[0], socket_connect_timeout=0.5) as client:
            return int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1])

    def kill_master(self) -> float:
        """SIGKILL the master (no shutdown, no last write); returns when it was killed."""
        assert self.master.process is not None
        self.master.process.kill()
        self.master.process.wait()
        return time.monotonic()

    def wait_promoted(self, timeout_s: float = 30) -> float:
        """Until the sentinels name the replica as master and it accepts writes."""
        def promoted() -> bool:
            if self.master_port() != self.replica.port:
                return False
            with redis.Redis(port=self.replica.port, socket_connect_timeout=0.5) as client:
                return client.info("replication")["role"] == "master"

        _wait_for(promoted, timeout_s, "the sentinels to promote the replica")
        return time.monotonic()

    def stop(self) -> None:
        for process in self.sentinels:
            process.kill()
            process.wait()
        for node in (self.master, self.replica):
            node.stop()
