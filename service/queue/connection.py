"""How every process reaches Redis: one URL, or Sentinel; with TLS and an ACL user if set.

The API, the workers and the CLI build their clients here and nowhere else, so a deployment
that moves to Sentinel, TLS or restricted users changes settings, not code. With Sentinel, a
client asks the sentinels for the current master before each new connection and drops its
connections when the master moves (redis-py's ``SentinelConnectionPool``): after a failover,
the next command reaches the new master. A blocked read on the old master fails with a
connection error, which the worker's outage loop turns into a retry; scripts missing on the
new master are loaded again (``scripts.PersistentScript``, ``Consumer._scripts_in_one_trip``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as async_sentinel
import redis.sentinel as sync_sentinel

CONNECT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class RedisTarget:
    url: str | None = None
    """``redis://`` or ``rediss://`` (TLS) URL; with Sentinel, only its database and
    credentials are read (the master's address comes from the sentinels)."""
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = "tta"
    username: str | None = None
    """ACL user, when the URL names none (a URL's own user and password win)."""
    password: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    """Client certificate, for a Redis with ``tls-auth-clients yes``."""
    tls_key_file: str | None = None
    sentinel_password: str | None = None
    """Password of the sentinels themselves, if they require one (``requirepass`` in sentinel.conf)."""

    @property
    def configured(self) -> bool:
        return bool(self.url or self.sentinels)

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca_file or self.tls_cert_file or (self.url or "").startswith("rediss://"))

    def describe(self) -> str:
        """Where it points, without credentials (for logs and errors)."""
        if self.sentinels:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel master {self.sentinel_master!r} via {hosts}" + (" (TLS)" if self.tls else "")
        url = self.url or ""
        return url.split("@")[-1] if "@" in url else url

    def options(self) -> dict[str, Any]:
        """Connection keyword arguments beyond the URL: credentials and TLS files."""
        options: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S}
        if self.username is not None:
            options["username"] = self.username
        if self.password is not None:
            options["password"] = self.password
        if self.tls:
            if self.tls_ca_file:
                options["ssl_ca_certs"] = self.tls_ca_file
            if self.tls_cert_file:
                options["ssl_certfile"] = self.tls_cert_file
            if self.tls_key_file:
                options["ssl_keyfile"] = self.tls_key_file
        return options

    def _url_options(self) -> dict[str, Any]:
        """Database and credentials a URL carries, for the sentinel-managed connections."""
        if not self.url:
            return {}
        parsed = redis.connection.parse_url(self.url)
        return {key: value for key, value in parsed.items() if key in ("db", "username", "password")}

    def _sentinel_options(self) -> dict[str, Any]:
        options = {**self._url_options(), **self.options()}
        if self.tls:
            options["ssl"] = True  # (SentinelConnectionPool picks its TLS connection class)
        return options

    def _sentinel_kwargs(self) -> dict[str, Any]:
        """How to reach the sentinels: TLS like the data nodes, their own password if any."""
        kwargs: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S}
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password
        if self.tls:
            kwargs.update({key: value for key, value in self.options().items() if key.startswith("ssl_")},
                          ssl=True)
        return kwargs

    def sync_client(self, **extra: Any) -> redis.Redis:
        """A client for a worker or the CLI."""
        if self.sentinels:
            manager = sync_sentinel.Sentinel(list(self.sentinels), sentinel_kwargs=self._sentinel_kwargs(),
                                             **self._sentinel_options())
            return manager.master_for(self.sentinel_master, **extra)
        return redis.Redis.from_url(self._url(), **self.options(), **extra)

    def async_client(self, *, max_connections: int | None = None, blocking_s: float | None = None,
                     **extra: Any) -> aioredis.Redis:
        """A client for the API. ``blocking_s``: a bounded pool whose callers wait that long for
        a free connection rather than fail (Sentinel's pool does not block: it is bounded)."""
        limit: dict[str, Any] = {} if max_connections is None else {"max_connections": max_connections}
        if self.sentinels:
            manager = async_sentinel.Sentinel(list(self.sentinels), sentinel_kwargs=self._sentinel_kwargs(),
                                              **self._sentinel_options())
            return manager.master_for(self.sentinel_master, **limit, **extra)
        if blocking_s is not None:
            pool = aioredis.BlockingConnectionPool.from_url(
                self._url(), timeout=blocking_s, **limit, **self.options(), **extra)
            return aioredis.Redis(connection_pool=pool)
        return aioredis.Redis.from_url(self._url(), **self.options(), **limit, **extra)

    def _url(self) -> str:
        if not self.url:
            raise ValueError("no Redis URL (set TTA_REDIS_URL, or TTA_REDIS_SENTINELS)")
        return self.url


def parse_sentinels(text: str | None) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` -> ((host, port), ...); ValueError naming the bad entry."""
    sentinels = []
    for entry in filter(None, (e.strip() for e in (text or "").split(","))):
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"TTA_REDIS_SENTINELS: {entry!r} is not host:port")
        sentinels.append((host.strip("[]"), int(port)))
    return tuple(sentinels)
