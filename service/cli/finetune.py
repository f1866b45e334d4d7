"""``tta finetune``: fine-tune the policy on rectified labels, on a server or locally.

    tta finetune start --server URL --label-set pets [--source rlcf-tune] [--param lr=1e-4] [--activate]
    tta finetune start --data labelled.jsonl [--labels a,b,c] [--model world-policy] [--store DIR]
    tta finetune cancel ID --server URL
    tta finetune retention pets --enable [--max-bytes N] [--max-days D] --server URL
    tta finetune point pets world-policy@ft-...|base|rollback --server URL

Locally, ``--data`` is JSON lines ``{"image": "path", "label": "name"}`` (e.g. the rectification
log joined with the image files); the version goes to the model store (``--store`` or
``TTA_MODEL_STORE``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from contract.errors import InvalidInputError, InvalidOptionsError
from service.cli.common import parse_option_flags

EXIT_FAILED = 1


class Bar:
    """One updating line on stderr: epoch, step, loss, held-out agreement."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.agreement: float | None = None

    def update(self, epoch: int, epochs: int, step: int, total: int, loss: float | None,
               agreement: float | None) -> None:
        if agreement is not None:
            self.agreement = agreement
        if not self.enabled:
            return
        width = 30
        filled = int(width * step / max(1, total))
        text = (f"\r[{'#' * filled}{'.' * (width - filled)}] epoch {epoch}/{epochs} step {step}/{total}"
                + (f"  loss {loss:.3f}" if loss is not None else "")
                + (f"  held-out agreement {100 * self.agreement:.1f}%" if self.agreement is not None else ""))
        sys.stderr.write(text + " ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return parse_option_flags(args.param)


def _client(args: argparse.Namespace) -> Any:
    from service.client import TTAClient

    if not args.server:
        raise InvalidInputError(f"`tta finetune {args.finetune}` needs --server", field="server")
    return TTAClient(args.server, api_key=args.api_key or os.environ.get("TTA_API_KEY"))


def start_remote(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"source": args.source, "changed_only": args.changed_only,
                            "hyperparameters": _params(args)}
    for key in ("min_score", "since_ms", "until_ms", "max_images", "from_model"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    bar = Bar(not args.no_progress)
    with _client(args) as client:
        started = client.finetune(args.label_set, **body)
        print(f"fine-tune {started['finetune_id']}: {started['matching_images']} images", file=sys.stderr)
        final: dict[str, Any] = {}
        for event in client.events(started["finetune_id"]):
            data = event.data
            if event.event == "progress":
                bar.update(data["epoch"], data["epochs"], data["step"], data["total_steps"],
                           data["loss"], data["value"])
            elif event.event in ("result", "error"):
                final = {"event": event.event, **data}
        bar.done()
        if final.get("event") == "error":
            raise InvalidInputError(f"fine-tune failed: {final.get('code')}: {final.get('message')}",
                                    field=final.get("field"))
        if args.activate:
            client.point_label_set(args.label_set, final["model"])
    return {"model": final["model"], "activated": args.activate, "metrics": final["metrics"]}


def start_local(args: argparse.Namespace) -> dict[str, Any]:
    from adapters.engine import load_models
    from adapters.finetune import finetune_visual
    from contract.finetune_params import params_from
    from contract.images import decode_image
    from contract.names import split_version
    from models.store import Manifest, ModelStore, new_version_id
    from service.cli.common import model_names

    rows = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines()
            if line.strip()]
    labels = ([x.strip() for x in args.labels.split(",") if x.strip()] if args.labels
              else sorted({str(r["label"]) for r in rows}))
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({str(r["label"]) for r in rows} - set(index))
    if unknown:
        raise InvalidInputError(f"labels in --data not in --labels: {', '.join(unknown[:5])}", field="data")
    images = [decode_image(Path(r["image"]).read_bytes(), field=str(r["image"])) for r in rows]
    try:
        params = params_from(_params(args))
    except ValueError as exc:
        raise InvalidOptionsError(str(exc), field="param") from exc
    policy_name, _, device = model_names(args)
    policy = load_models(policy_name, None, device=device).policy
    bar = Bar(not args.no_progress)
    outcome = finetune_visual(
        policy, images, [index[str(r["label"])] for r in rows], labels, ("a photo of a {}.",), params,
        on_progress=lambda p: bar.update(p.epoch, p.epochs, p.step, p.total_steps, p.loss,
                                         p.holdout_agreement))
    bar.done()
    manifest = Manifest(base=split_version(policy_name)[0], version=new_version_id(),
                        created_ms=int(time.time() * 1000), label_source=str(args.data),
                        n_images=len(images), hyperparameters=params.to_dict(), metrics=outcome.metrics)
    folder = ModelStore(args.store).save(manifest, outcome.visual_state)
    return {"model": manifest.name, "store": str(folder), "metrics": outcome.metrics}


def run_finetune(args: argparse.Namespace) -> int:
    from service.client import TTAClientError

    try:
        if args.finetune == "start":
            if bool(args.server) == bool(args.data):
                raise InvalidInputError("give --server with --label-set, or --data (local)", field="server")
            if args.server and not args.label_set:
                raise InvalidInputError("--label-set is required with --server", field="label-set")
            out = start_remote(args) if args.server else start_local(args)
        elif args.finetune == "cancel":
            with _client(args) as client:
                out = client.cancel_finetune(args.finetune_id)
        elif args.finetune == "retention":
            bounds = {k: getattr(args, k) for k in ("max_bytes", "max_days") if getattr(args, k) is not None}
            with _client(args) as client:
                out = client.set_retention(args.label_set, args.enable, **bounds)
        else:
            model = None if args.model == "base" else args.model
            with _client(args) as client:
                out = client.point_label_set(args.label_set, model)
    except TTAClientError as exc:
        print(f"error: server said {exc.status} {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(out, indent=2))
    return 0
