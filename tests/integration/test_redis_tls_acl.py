"""The service end to end over TLS (rediss://, client certificates) with the two restricted users
of docker/redis/users.acl, live: a Redis that accepts only TLS, authenticates clients by
certificate, and knows no default user. The API's user cannot consume the job streams (so not
run the worker's scripts built on them) nor reach keys outside the service's prefix."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from service.queue import scripts
from service.queue.keys import Keys
from service.queue.routing import route
from service.redis_server import find_redis_server, free_port
from tests.integration.conftest import LABELS, Service, make_service, png_bytes, sse_events

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"tta-api": "api-secret-1", "tta-worker": "worker-secret-2"}


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    d = directory
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "ca.key"), "-out",
            str(d / "ca.pem"), "-days", "1", "-subj", "/CN=tta-test-ca")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / f"{name}.key"), "-out",
                str(d / f"{name}.csr"), "-subj", f"/CN=tta-{name}")
        (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey",
                str(d / "ca.key"), "-CAcreateserial", "-out", str(d / f"{name}.pem"), "-days", "1",
                "-extfile", str(d / f"{name}.ext"))
    return {name: d / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def shipped_acl(prefix: str) -> str:
    """docker/redis/users.acl with this test's passwords and key prefix."""
    text = (ROOT / "docker/redis/users.acl").read_text()
    for user, password in PASSWORDS.items():
        text = text.replace(f">CHANGE-ME-{user.split('-')[1]}", f">{password}")
    return text.replace("~tta:*", f"~{prefix}:*").replace("&tta:*", f"&{prefix}:*")


@dataclass
class TLSRedis:
    port: int
    certs: dict[str, Path]
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def client(self, user: str | None, password: str | None = None, **extra: object) -> redis.Redis:
        certs = self.certs
        return redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=str(certs["ca.pem"]),
                           ssl_certfile=str(certs["client.pem"]), ssl_keyfile=str(certs["client.key"]),
                           username=user, password=password or PASSWORDS.get(user or ""),
                           socket_connect_timeout=1, **extra)  # type: ignore[arg-type]


@pytest.fixture
def service_over_tls(tmp_path) -> Iterator[tuple[Service, TLSRedis]]:  # type: ignore[no-untyped-def]
    certs = make_certificates(tmp_path)
    service = make_service("", tmp_path)
    prefix = service.env["TTA_REDIS_PREFIX"]
    (tmp_path / "users.acl").write_text(shipped_acl(prefix))
    port = free_port()
    process = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certs["server.pem"]), "--tls-key-file", str(certs["server.key"]),
         "--tls-ca-cert-file", str(certs["ca.pem"]), "--tls-auth-clients", "yes",
         "--aclfile", str(tmp_path / "users.acl"), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--logfile", str(tmp_path / "redis.log")])
    tls = TLSRedis(port, certs, process)
    deadline = time.monotonic() + 10
    while True:
        try:
            tls.client("tta-worker").ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError((tmp_path / "redis.log").read_text()[-2000:]) from None
            time.sleep(0.05)
    service.env.update(TTA_REDIS_URL=tls.url, TTA_REDIS_TLS_CA_FILE=str(certs["ca.pem"]),
                       TTA_REDIS_TLS_CERT_FILE=str(certs["client.pem"]),
                       TTA_REDIS_TLS_KEY_FILE=str(certs["client.key"]))
    yield service, tls
    service.stop()
    process.terminate()
    process.wait(timeout=10)


def test_the_service_runs_over_tls_with_the_two_restricted_users(service_over_tls):
    service, _ = service_over_tls
    service.start_api(TTA_REDIS_USERNAME="tta-api", TTA_REDIS_PASSWORD=PASSWORDS["tta-api"])
    service.start_worker("w1", TTA_REDIS_USERNAME="tta-worker", TTA_REDIS_PASSWORD=PASSWORDS["tta-worker"])
    service.wait_workers({"w1"})
    image = [("image", ("a.png", png_bytes(3)))]
    with service.client() as client:
        answered = client.post("/v1/classify", files=image, data={"labels": LABELS, "method": "zeroshot"})
        assert answered.status_code == 200, answered.text
        assert answered.json()["results"][0]["label"] in LABELS
        queued = client.post("/v1/jobs", files=image, data={"labels": LABELS, "method": "tpt",
                                                             "options": '{"n_views": 8, "steps": 2}'})
        assert queued.status_code == 202, queued.text
        with client.stream("GET", f"/v1/jobs/{queued.json()['job_id']}/events") as response:
            names = [event for _, event, _ in sse_events(response)]
        assert names[-1] == "result" and names.count("progress") == 2
        made = client.post("/v1/label-sets", json={"name": "pets", "labels": LABELS})
        assert made.status_code in (200, 201), made.text
        assert client.get("/v1/drift").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_the_api_user_cannot_consume_jobs_nor_leave_its_key_space(service_over_tls):
    service, tls = service_over_tls
    keys = Keys(service.env["TTA_REDIS_PREFIX"])
    stream = keys.jobs(route("zeroshot", None))
    api, worker = tls.client("tta-api"), tls.client("tta-worker")
    worker.xgroup_create(stream, "workers", id="0", mkstream=True)
    take = worker.script_load(scripts.TAKE)  # the worker's script that takes jobs
    with pytest.raises(redis.exceptions.ResponseError, match="can't run this command"):
        api.evalsha(take, 1, stream, "workers", "api", 1)
    for command in (("XREADGROUP", "GROUP", "workers", "api", "STREAMS", stream, ">"),
                    ("XACK", stream, "workers", "0-1"), ("XAUTOCLAIM", stream, "workers", "api", 0, "0-0"),
                    ("GET", "other-deployment:secret"), ("CONFIG", "GET", "*"), ("FLUSHALL",), ("KEYS", "*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            api.execute_command(*command)
    assert worker.evalsha(take, 1, stream, "workers", "w", 1) is None  # (allowed; nothing queued)
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.execute_command("GET", "other-deployment:secret")
    with pytest.raises(redis.exceptions.AuthenticationError):
        tls.client(None).ping()  # no default user
    with pytest.raises(redis.exceptions.AuthenticationError):
        tls.client("tta-api", password="wrong").ping()
