"""Process settings: environment variables prefixed ``TTA_`` (pydantic-settings).

One class for the API, the worker and the CLI, so every process of a deployment reads the same
names. Torch-free (the API imports it).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.queue.connection import RedisTarget, parse_sentinels
from service.queue.drift import DriftLimits

DEFAULT_MODEL = "world-policy"
DEFAULT_REWARD_MODEL = "world-reward"
MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTA_", extra="ignore")

    # Models (worker)
    model: str = DEFAULT_MODEL
    """Policy CLIP (the one adapted), in the syntax of ``contract.names``."""
    reward_model: str | None = DEFAULT_REWARD_MODEL
    """Reward CLIP for RLCF; empty or "none" disables the reward methods."""
    device: str = "auto"
    """"auto", "cpu", "cuda" or "cuda:N"."""
    precision: str = "auto"
    """Compute precision on CUDA: "auto" (bf16 where supported, else fp16), "fp32", "bf16", "fp16"."""
    model_store: Path | None = None
    """Directory of fine-tuned model versions (``NAME@VERSION``); every worker host must read it
    (a shared volume). Unset: ``~/.local/share/tta/models``."""
    max_resident_versions_mb: float = Field(default=1024.0, ge=0)
    """Visual-encoder weights of model versions a worker keeps loaded besides its base model."""

    # MLLM (for the mllm method)
    mllm: str | None = None
    """"none", "transformers:<hub id or local dir>" or "openai:<base URL of a chat-completions API>"."""
    mllm_model: str | None = None
    """Model name sent to an OpenAI-compatible endpoint (e.g. Qwen/Qwen2.5-VL-7B-Instruct)."""
    mllm_api_key: str | None = None
    """Bearer token for the OpenAI-compatible endpoint (a secret: pass it through the environment)."""
    mllm_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds one call to the OpenAI-compatible endpoint may take."""
    mllm_retries: int = Field(default=2, ge=0)
    """Retries of a failed call (connection errors, 429 and 5xx), with backoff."""
    mllm_concurrency: int = Field(default=8, ge=1)
    """Parallel requests to an OpenAI-compatible endpoint."""
    mllm_batch: int = Field(default=16, ge=1)
    """Prompts per forward pass of an in-process MLLM."""

    # Redis and the queue
    redis_url: str | None = None
    """Redis for the queue and state. Unset: ``tta serve`` starts a private redis-server."""
    redis_sentinels: str | None = None
    """Sentinels to ask for the master, ``host:port,host:port`` (then TTA_REDIS_URL, if set,
    gives only the database and credentials)."""
    redis_sentinel_master: str = "tta"
    """The master's name in the sentinels' configuration."""
    redis_sentinel_password: str | None = None
    """Password of the sentinels themselves, if they require one."""
    redis_username: str | None = None
    """ACL user, when the URL names none (docker/redis/users.acl: tta-api, tta-worker)."""
    redis_password: str | None = None
    """Password of that user (a secret: pass it through the environment)."""
    redis_tls_ca_file: str | None = None
    """CA certificate that signed Redis's certificate; TLS is on with it or a rediss:// URL."""
    redis_tls_cert_file: str | None = None
    """Client certificate, for a Redis that authenticates clients (tls-auth-clients yes)."""
    redis_tls_key_file: str | None = None
    """The client certificate's key."""
    redis_wait_replicas: int | None = Field(default=None, ge=0)
    """Replicas that must hold a job before its submission is acknowledged (Redis WAIT).
    Unset: 1 when the master has a replica connected (read every minute), else 0."""
    redis_wait_timeout_ms: int = Field(default=500, ge=1)
    """How long a submission waits for those replicas; past it the job is withdrawn and the
    client gets 503 not_replicated (retry)."""
    redis_max_connections: int = Field(default=64, ge=4)
    """Connections per API process for short commands (waiting for events uses one more)."""
    redis_prefix: str = "tta"
    """Prefix of every key, so several deployments (or test runs) can share one Redis."""
    data_dir: Path = Path.home() / ".local" / "share" / "tta"
    """Where the private Redis of ``tta serve`` keeps its append-only file."""
    job_ttl_s: int = Field(default=3600, ge=10)
    """How long a job's images, events and result are kept."""
    job_deadline_s: int = Field(default=600, ge=1)
    """A job not started within this many seconds of submission is failed, not run."""
    lease_s: float = Field(default=30.0, gt=0)
    """A job held by a worker that stops renewing its lease for this long is reclaimed."""
    max_attempts: int = Field(default=3, ge=1)
    """Deliveries of one job before it goes to the dead-letter stream."""

    # Worker
    batch_max_images: int = Field(default=32, ge=1)
    """Largest zero-shot batch (images) the worker forms from concurrent jobs."""
    batch_wait_ms: float = Field(default=0.0, ge=0)
    """How long the worker waits for more zero-shot jobs to fill a batch. 0: it batches what is
    already queued and never waits (continuous batching: under load the queue fills while a
    batch runs); the same throughput at concurrency 32 here, and a lone request saves the wait."""
    episode_batch_max: int = Field(default=16, ge=1)
    """Largest episode set (images) of concurrent TPT/RLCF/ZERO/auto jobs with the same labels and
    options that the worker runs together, from jobs already queued (it never waits for more); 1: each
    image alone."""
    episode_batch_prompts: int = Field(default=16384, ge=1)
    """Bound on images x classes of one episode set: each step's text pass holds activations for
    that many prompts (a set is split to stay under it; one image always runs)."""
    torch_threads: int | None = Field(default=None, ge=1)
    """Intra-op threads of a worker's torch. Unset: torch's default (every core), except under
    ``tta serve``, which gives its workers the cores but one, split between them."""
    heartbeat_s: float = Field(default=2.0, gt=0)
    """Worker heartbeat period; the API calls a worker ready for 5 periods after its last."""
    worker_metrics_port: int = Field(default=9100, ge=0, le=65535)
    """Port of the worker's own /metrics (0: none)."""
    worker_id: str | None = None
    """Consumer name in the group; default host-pid."""

    # API
    api_keys_file: Path | None = None
    """File of ``tenant:sha256-hex`` lines (``tta keys create``). Unset: no auth, loopback only."""
    auth_disabled: bool = False
    """Allow binding a non-loopback address without keys (behind a trusted gateway only)."""
    max_request_bytes: int = Field(default=32 * MiB, ge=1024)
    """Largest request body (413 beyond)."""
    max_image_bytes: int = Field(default=10 * MiB, ge=1024)
    """Largest encoded image."""
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    """Per image, from its header, before decoding."""
    max_request_pixels: int = Field(default=100_000_000, ge=1)
    """Pixels actually decoded for one request, all images together (JPEGs are decoded at
    reduced scale when they are larger than what is kept, so phone photos cost little)."""
    max_images_per_request: int = Field(default=16, ge=1)
    """Images in one classify request."""
    max_labels: int = Field(default=2000, ge=2)
    """Classes in one request or label set."""
    scale_to_zero_methods: str = ""
    """Methods whose workers may be scaled to zero (KEDA): a job for one is queued even while no
    live worker serves it, and waits for one to start (up to its deadline). "*": every method.
    Empty: a job no live worker can run is refused at once (503 no_capable_worker)."""
    max_queue_depth: int = Field(default=1000, ge=1)
    """Unfinished jobs in the whole queue before new ones get 503."""
    max_inflight_per_key: int = Field(default=64, ge=1)
    """Unfinished jobs of one API key before its new ones get 429."""
    wait_timeout_s: float = Field(default=60.0, gt=0)
    """``POST /v1/classify`` waits this long for the result, then answers 202 with the job id."""
    sse_ping_s: float = Field(default=15.0, gt=0)
    """Keep-alive comment period on event streams."""

    # Quotas and lifetimes of what a tenant stores (``service.api.tenancy.RESOURCES``)
    max_label_sets_per_key: int = Field(default=100, ge=1)
    """Label sets one key may keep."""
    max_exemplars_per_label_set: int = Field(default=1000, ge=1)
    """Exemplar images in one label set (also at most 16 per class)."""
    max_exemplar_bytes_per_label_set: int = Field(default=32 * MiB, ge=1024)
    """Stored bytes of one label set's exemplars (as kept: at most 512 px on the short side)."""
    max_finetunes_per_key: int = Field(default=2, ge=1)
    """Unfinished fine-tunes of one key."""
    max_finetune_image_epochs: int = Field(default=200_000, ge=1)
    """Training images x epochs of one fine-tune (its compute budget)."""
    max_versions_per_key: int = Field(default=20, ge=1)
    """Registered fine-tuned model versions of one key."""
    max_retained_bytes_per_key: int = Field(default=1024 * MiB, ge=1024)
    """Sum of the retention bounds (max_bytes) of one key's label sets."""
    max_method_state_groups_per_key: int = Field(default=64, ge=1)
    """Label sets (or inline label lists) of one key with TDA caches; the least recently
    updated is dropped beyond."""
    method_state_ttl_s: int = Field(default=7 * 86_400, ge=60)
    """A label set's TDA caches are dropped this long after their last update."""
    max_drift_scopes_per_key: int = Field(default=64, ge=1)
    """Label sets (or inline label lists) of one key watched for input drift; answers on
    others are not observed until one is reset or expires."""
    drift_ttl_s: int = Field(default=7 * 86_400, ge=60)
    """A label set's drift lists are dropped this long after its last answer."""
    drift_reference_size: int = Field(default=200, ge=10, le=10_000)
    """Answers that make a label set's drift reference (its first, or first after a reset)."""
    drift_window_size: int = Field(default=32, ge=4, le=1000)
    """Latest answers compared with the reference."""
    rectifications_ttl_s: int = Field(default=30 * 86_400, ge=60)
    """A key's rectification log is dropped this long after its last decision."""

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_host_port(cls, value: str | None) -> str | None:
        parse_sentinels(value)  # (a ValueError names the bad entry at startup)
        return value

    @property
    def redis_target(self) -> RedisTarget:
        return RedisTarget(url=self.redis_url, sentinels=parse_sentinels(self.redis_sentinels),
                           sentinel_master=self.redis_sentinel_master, username=self.redis_username,
                           password=self.redis_password, tls_ca_file=self.redis_tls_ca_file,
                           tls_cert_file=self.redis_tls_cert_file, tls_key_file=self.redis_tls_key_file,
                           sentinel_password=self.redis_sentinel_password)

    @property
    def drift_limits(self) -> DriftLimits:
        return DriftLimits(reference_size=self.drift_reference_size, window_size=self.drift_window_size,
                           max_scopes_per_key=self.max_drift_scopes_per_key, ttl_s=self.drift_ttl_s)


def get_settings() -> Settings:
    return Settings()
