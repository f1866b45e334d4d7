"""Process settings: environment variables prefixed ``TTA_`` (pydantic-settings)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "world-policy"
DEFAULT_REWARD_MODEL = "world-reward"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTA_", extra="ignore")

    model: str = DEFAULT_MODEL
    """Policy CLIP (the one adapted), in the syntax of ``models.names``."""
    reward_model: str | None = DEFAULT_REWARD_MODEL
    """Reward CLIP for RLCF; empty disables the reward methods."""
    device: str = "auto"
    """"auto", "cpu", "cuda" or "cuda:N"."""
    precision: str = "auto"
    """Compute precision on CUDA: "auto" (bf16 where supported, else fp16), "fp32", "bf16", "fp16"."""


def get_settings() -> Settings:
    return Settings()
