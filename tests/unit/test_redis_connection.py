"""How processes reach Redis (``service.queue.connection``): the settings that choose Sentinel,
TLS and an ACL user, checked at startup; and the compose file's Sentinel override."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from service.queue.connection import RedisTarget, parse_sentinels
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_sentinels_are_host_port_pairs_and_a_bad_one_is_named_at_startup():
    assert parse_sentinels("a:26379, 10.0.0.2:26380,") == (("a", 26379), ("10.0.0.2", 26380))
    assert parse_sentinels("[::1]:26379") == (("::1", 26379),)
    assert parse_sentinels(None) == ()
    for bad in ("a", "a:", ":26379", "a:port", "a:70000"):
        with pytest.raises(ValueError, match="TTA_REDIS_SENTINELS"):
            parse_sentinels(bad)
    with pytest.raises(ValidationError, match="not host:port"):
        Settings(redis_sentinels="sentinel-1:26379,sentinel-2")


def test_the_settings_make_one_target_for_every_process():
    target = Settings(redis_url=None, redis_sentinels="s1:1,s2:2", redis_sentinel_master="m",
                      redis_username="tta-api", redis_password="pw", redis_tls_ca_file="/ca.pem").redis_target
    assert target.configured and target.tls
    assert target.sentinels == (("s1", 1), ("s2", 2)) and target.sentinel_master == "m"
    assert target.options() == {"socket_connect_timeout": 2.0, "username": "tta-api", "password": "pw",
                                "ssl_ca_certs": "/ca.pem"}
    assert "pw" not in target.describe() and "s1:1" in target.describe()
    assert not Settings(redis_url=None).redis_target.configured
    plain = Settings(redis_url="redis://user:secret@h:6379/2").redis_target
    assert plain.describe() == "h:6379/2" and not plain.tls
    assert RedisTarget(url="rediss://h:6380/0").tls


def test_the_sentinel_override_writes_a_sentinel_config_and_points_the_service_at_it():
    override = yaml.safe_load((ROOT / "docker-compose.sentinel.yml").read_text())
    services = override["services"]
    command = services["sentinel-1"]["command"]
    assert command.startswith("sh -c '") and command.endswith("--sentinel'")
    write_config = command[len("sh -c '"):].split("&&")[0].replace("/tmp/sentinel.conf", "/dev/stdout")
    config = subprocess.run(["sh", "-c", write_config], capture_output=True, text=True, check=True).stdout
    assert "sentinel monitor tta redis 6379 2" in config.splitlines()
    assert all(line == line.strip() for line in config.splitlines())
    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "redis" in base and {"sentinel-1", "sentinel-2", "sentinel-3", "redis-replica"} <= set(services)
    for name in ("api", "worker"):
        environment = services[name]["environment"]
        assert environment["TTA_REDIS_URL"] == "" and environment["TTA_REDIS_SENTINEL_MASTER"] == "tta"
        assert parse_sentinels(environment["TTA_REDIS_SENTINELS"]) == tuple(
            (f"sentinel-{i}", 26379) for i in (1, 2, 3))
