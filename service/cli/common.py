"""Pieces shared by CLI subcommands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from contract.errors import InvalidLabelsError, InvalidOptionsError
from contract.labels import parse_label_text
from service.settings import get_settings


def model_names(args: argparse.Namespace) -> tuple[str, str | None, str]:
    """(policy, reward or None, device) from flags, then TTA_ settings."""
    settings = get_settings()
    policy = args.model or settings.model
    reward = args.reward_model if args.reward_model is not None else settings.reward_model
    if reward is not None and reward.strip().lower() in ("", "none"):
        reward = None
    return policy, reward, args.device or settings.device


def read_labels(args: argparse.Namespace) -> list[str]:
    if args.labels is not None:
        return parse_label_text(args.labels)
    try:
        with open(args.labels_file, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    except OSError as exc:
        raise InvalidLabelsError(f"cannot read labels file {args.labels_file}: {exc.strerror}",
                                 field="labels-file") from exc


def parse_option_flags(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is JSON when it parses as JSON, else a string."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidOptionsError(f"--option {pair!r} is not KEY=VALUE", field="option")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
