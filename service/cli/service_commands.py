"""``tta worker``, ``tta api``, ``tta serve`` and ``tta keys``: the service's processes."""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen
from typing import Any

from service.cli.supervisor import Child, Supervisor
from service.redis_server import PrivateRedis, free_port
from service.settings import Settings, get_settings

log = logging.getLogger("tta")


def run_worker(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from adapters.engine import Engine, load_models
    from models.mllm.loading import load_scorer
    from service.cli.common import model_names
    from service.worker.main import Worker

    settings = get_settings()
    if not settings.redis_target.configured:
        print("error: neither TTA_REDIS_URL nor TTA_REDIS_SENTINELS is set (the worker needs the "
              "deployment's Redis)", file=sys.stderr)
        return 2
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    port = args.metrics_port if args.metrics_port is not None else settings.worker_metrics_port
    if port:
        try:
            start_http_server(port)
        except OSError as exc:
            print(f"error: the worker's metrics port {port} cannot be used ({exc.strerror}); set "
                  "TTA_WORKER_METRICS_PORT (or --metrics-port) to a free port, or 0 for none",
                  file=sys.stderr)
            return 2
        log.info("worker metrics on :%d/metrics", port)
    policy, reward, device = model_names(args)
    mllm = load_scorer(settings.mllm, model=settings.mllm_model, api_key=settings.mllm_api_key,
                       device=device, timeout_s=settings.mllm_timeout_s, retries=settings.mllm_retries,
                       concurrency=settings.mllm_concurrency, batch_size=settings.mllm_batch)
    engine = Engine(load_models(policy, reward, device=device, precision=settings.precision, mllm=mllm))
    worker = Worker(settings, engine, settings.redis_target.sync_client())
    worker.install_signal_handlers()
    worker.serve()
    return 0


def refuses_bind(host: str, settings: Settings) -> bool:
    """True (after saying why) if the API must not listen on ``host`` with these settings."""
    from service.api.auth import bind_check

    problem = bind_check(host, settings.api_keys_file is not None, settings.auth_disabled)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
    return problem is not None


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    if refuses_bind(args.host, get_settings()):
        return 2
    uvicorn.run("service.api.app:create_app", factory=True, host=args.host, port=args.port,
                log_level="info" if args.verbose else "warning", timeout_graceful_shutdown=5)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """One machine: a private Redis (unless TTA_REDIS_URL is set), N workers, the API, each
    restarted if it dies."""
    settings = get_settings()
    if refuses_bind(args.host, settings):
        return 2
    env = dict(os.environ)
    children: list[Child] = []
    if not settings.redis_target.configured:
        # One folder per API port: two `tta serve` on one machine keep apart (a second one on
        # the same port could not bind it anyway; the lock says so before Redis starts).
        data_dir = Path(settings.data_dir) / f"serve-{args.port}"
        if not hold_data_dir(data_dir):
            print(f"error: {data_dir} is in use by another tta serve; give this one another "
                  "--port or TTA_DATA_DIR", file=sys.stderr)
            return 2
        private = PrivateRedis(data_dir / "redis")
        env["TTA_REDIS_URL"] = private.url
        children.append(Child("redis", lambda: _started(private), stop_last=True))
        print(f"private Redis on {private.url} (data in {private.data_dir})", flush=True)
    verbose = ["-v"] if args.verbose else []

    def spawn(command: list[str], extra_env: dict[str, str] | None = None) -> Callable[[], Popen[bytes]]:
        return lambda: subprocess.Popen([sys.executable, "-m", "service.cli.main", *verbose, *command],
                                        env={**env, **(extra_env or {})})

    # Everything shares this machine's cores: leave one to the API and Redis, split the rest
    # between the workers (torch's default, all cores per worker, makes its threads spin
    # against the API's: 2x-10x slower on 2 cores, measured by `tta bench peers`).
    threads = str(settings.torch_threads or max(1, ((os.cpu_count() or 2) - 1) // args.workers))
    for index, metrics_port in enumerate(worker_metrics_ports(settings, args.workers)):
        children.append(Child(f"worker {index + 1}", spawn(
            ["worker"], {"TTA_TORCH_THREADS": threads, "TTA_WORKER_METRICS_PORT": str(metrics_port)})))
        if metrics_port:
            print(f"worker {index + 1} metrics on http://127.0.0.1:{metrics_port}/metrics", flush=True)
    children.append(Child("api", spawn(["api", "--host", args.host, "--port", str(args.port)])))
    auth = "API keys from " + str(settings.api_keys_file) if settings.api_keys_file else "no auth (loopback)"
    print(f"API on http://{args.host}:{args.port} ({auth}); docs at /docs; {args.workers} worker(s) "
          f"loading {settings.model} / {settings.reward_model}; ready when /readyz says so", flush=True)
    supervisor = Supervisor(children)
    supervisor.install_signal_handlers()
    supervisor.run()
    return 0


def worker_metrics_ports(settings: Settings, workers: int) -> list[int]:
    """Each worker's metrics port: from TTA_WORKER_METRICS_PORT when it is set (the next ones
    for more workers; 0: none), else free ports, so a second `tta serve` on this machine does
    not collide with the first on a fixed port."""
    if "TTA_WORKER_METRICS_PORT" in os.environ:
        first = settings.worker_metrics_port
        return [first + index if first else 0 for index in range(workers)]
    return [free_port() for _ in range(workers)]


_held_locks: list[Any] = []
"""Lock files held for the life of this process."""


def hold_data_dir(folder: Path) -> bool:
    """Lock ``folder`` for this process (False if another process holds it)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return False
    _held_locks.append(lock)
    return True


def _started(private: PrivateRedis) -> Popen[bytes]:
    """Start the private redis-server and wait until it answers (workers start after it)."""
    process = private.start().process
    assert process is not None
    return process


def run_keys(args: argparse.Namespace) -> int:
    from service.api.auth import append_key

    settings = get_settings()
    path = Path(args.file) if args.file else settings.api_keys_file
    if path is None:
        print("error: give --file or set TTA_API_KEYS_FILE", file=sys.stderr)
        return 2
    try:
        key = append_key(path, args.tenant)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(f"(stored hashed in {path}; this is the only time the key is shown)", file=sys.stderr)
    return 0
