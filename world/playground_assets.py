"""Build the playground's static data once: sample scenes from each test domain (PNG), the demo
image, and the label presets. ``python -m world.playground_assets`` rewrites them all.

Why pre-rendered files: the API must run with its base dependencies only (no numpy, no torch),
and rendering needs numpy; 25 small PNGs (about 80 KB) ship in the package instead.

The demo image is picked by measurement, not by eye: scan the benchmark's test scenes of the
shifted domains in a fixed order (domain, seed, class) and take the first that zero-shot gets wrong
and ``rlcf`` (defaults, seed 0: what the page and the README's curl send) gets right, with the
bundled models. Every sample's measured zero-shot and rlcf answers are written to the manifest.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
from pathlib import Path
from typing import Any

from world.glyphs import CLASS_NAMES
from world.render import SHIFTED_DOMAINS, TEST_DOMAINS, render

STATIC = Path(__file__).resolve().parents[1] / "service" / "api" / "static"
SHARED_LABEL_SETS = STATIC.parent / "shared_label_sets"
TEST_SEED_BASE = 1_000_000  # the benchmark's test seeds (see README, "The offline world")
SAMPLES_PER_DOMAIN = 4
SIZE = 64


def measure(engine: Any, domain: str, label: int, seed: int) -> dict[str, Any]:
    """The scene's true class and what zeroshot and rlcf (defaults, seed 0) answer."""
    image = render(domain, label, seed, SIZE).image
    zeroshot = engine.classify("zeroshot", image, CLASS_NAMES, top_k=1).label
    rlcf = engine.classify("rlcf", image, CLASS_NAMES, top_k=1, seed=0).label
    return {"domain": domain, "seed": seed, "truth": CLASS_NAMES[label],
            "zeroshot": zeroshot, "rlcf": rlcf}


def pick_demo(engine: Any, max_seeds: int) -> dict[str, Any]:
    """The first shifted-domain test scene that zero-shot gets wrong and rlcf gets right."""
    tried = 0
    for offset in range(max_seeds):
        for domain in SHIFTED_DOMAINS:
            for label in range(len(CLASS_NAMES)):
                tried += 1
                image = render(domain, label, TEST_SEED_BASE + offset, SIZE).image
                if engine.classify("zeroshot", image, CLASS_NAMES, top_k=1).label == CLASS_NAMES[label]:
                    continue
                found = measure(engine, domain, label, TEST_SEED_BASE + offset)
                if found["rlcf"] == found["truth"]:
                    return {**found, "scenes_tried": tried}
    raise SystemExit(f"no scene in {tried} that zero-shot gets wrong and rlcf right")


def write_png(domain: str, label: int, seed: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    render(domain, label, seed, SIZE).image.convert("RGB").save(path, format="PNG", optimize=True)


# open_clip's list names two pairs of ImageNet classes alike, and the API refuses duplicate labels:
# the second of each pair gets its other WordNet synonym (n04008634 "projectile, missile";
# n04356056 "sunglasses, dark glasses, shades").
IMAGENET_RENAMES = {744: "projectile", 837: "dark glasses"}


def imagenet_names() -> list[str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return [IMAGENET_RENAMES.get(index, name) for index, name in enumerate(IMAGENET_CLASSNAMES)]


def write_presets(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    presets = {"world-25": ("The offline world's 25 classes", list(CLASS_NAMES)),
               "imagenet-1k": ("ImageNet's 1000 class names (open_clip's list)", imagenet_names())}
    for name, (title, labels) in presets.items():
        (out / f"{name}.json").write_text(json.dumps({"name": name, "title": title, "labels": labels}) + "\n")


def write_shared_label_sets(out: Path) -> None:
    """The bundled label set every tenant may use (``service.api.shared_label_sets``): the
    world's 25 classes with the benchmark's exemplars (``world.data.exemplar_bank``:
    train scenes no model was trained or tested on), as a POST /v1/label-sets JSON body."""
    from world.data import exemplar_bank

    out.mkdir(parents=True, exist_ok=True)
    exemplars = {}
    for index, images in exemplar_bank().items():
        encoded = []
        for image in images:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG", optimize=True)
            encoded.append(base64.b64encode(buffer.getvalue()).decode())
        exemplars[CLASS_NAMES[index]] = encoded
    body = {"name": "world-25", "labels": list(CLASS_NAMES), "templates": "single", "exemplars": exemplars}
    (out / "world-25.json").write_text(json.dumps(body) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=STATIC)
    parser.add_argument("--max-seeds", type=int, default=20)
    parser.add_argument("--presets-only", action="store_true", help="rewrite only the label presets")
    args = parser.parse_args(argv)
    write_presets(args.out / "presets")
    write_shared_label_sets(SHARED_LABEL_SETS)
    if args.presets_only:
        return
    from adapters.engine import Engine, load_models

    engine = Engine(load_models("world-policy", "world-reward", device="cpu"))
    samples_dir = args.out / "samples"
    demo = pick_demo(engine, args.max_seeds)
    demo_label = CLASS_NAMES.index(demo["truth"])
    write_png(demo["domain"], demo_label, demo["seed"], samples_dir / "demo.png")
    samples = [{"id": "demo", "url": "/static/samples/demo.png", **demo}]
    for domain in TEST_DOMAINS:
        for index in range(SAMPLES_PER_DOMAIN):
            # Spread over the classes: sample i of a domain shows class 6i + domain index.
            label = (6 * index + TEST_DOMAINS.index(domain)) % len(CLASS_NAMES)
            seed = TEST_SEED_BASE + index
            name = f"{domain}-{index}"
            write_png(domain, label, seed, samples_dir / f"{name}.png")
            samples.append({"id": name, "url": f"/static/samples/{name}.png",
                            **measure(engine, domain, label, seed)})
    manifest = {"models": {"policy": "world-policy", "reward": "world-reward"},
                "how": "python -m world.playground_assets", "samples": samples}
    (samples_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(demo))


if __name__ == "__main__":
    main()
