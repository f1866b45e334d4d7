#!/usr/bin/env bash
# Install, then run the main job: for now, local classification of a generated image with every
# method on the default model pair (the service entry point arrives with the service issue).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
mkdir -p out
.venv/bin/python -c "from service.cli.bench_latency import synthetic_image; synthetic_image(0).save('out/demo.png')"
for method in zeroshot tpt rlcf rlcf-tune; do
    .venv/bin/tta classify out/demo.png --labels "red circle,blue square,green triangle,yellow star" --method "$method" --top-k 3
    echo
done
