"""``tta models`` and ``tta methods``."""

from __future__ import annotations

import argparse
import json


def run_models(args: argparse.Namespace) -> int:
    import open_clip

    from models.bundled import list_bundled
    from models.loading import known_model_names  # noqa: F401  (registers project configs)

    bundled = [{"name": m.name, "arch": m.arch, "description": m.description}
               for m in list_bundled()]
    archs = sorted(open_clip.list_models()) if args.all else []
    if args.json:
        print(json.dumps({"bundled": bundled, "architectures": archs}, indent=2))
        return 0
    print("bundled models:")
    for model in bundled:
        print(f"  {model['name']:<24} {model['description']}")
    if not bundled:
        print("  (none)")
    if args.all:
        print("open_clip architectures (use as ARCH:TAG, ARCH:PATH or ARCH:random):")
        for arch in archs:
            print(f"  {arch}")
    return 0


def run_methods(args: argparse.Namespace) -> int:
    from contract.catalog import method_specs

    infos = [spec.describe() for spec in method_specs()]
    if args.json:
        print(json.dumps(infos, indent=2, default=str))
        return 0
    for info in infos:
        reward = " (needs a reward model)" if info["needs_reward_model"] else ""
        print(f"{info['name']}{reward}: {info['description']}")
        for opt in info["options"]:
            print(f"    {opt['name']} = {opt['default']!r}  [{opt['type']}]  {opt['doc']}")
    return 0
