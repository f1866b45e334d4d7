#!/usr/bin/env bash
# Install, then run the main job. Until the service lands this is local classification: a scene
# from the offline world's "sketch" domain, classified by every method on the bundled models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
mkdir -p out
.venv/bin/python -c "from world.render import render; render('sketch', 4, 1_000_000, 64).image.save('out/demo.png')"
LABELS="$(.venv/bin/python -c "from world.glyphs import CLASS_NAMES; print(','.join(CLASS_NAMES))")"
for method in zeroshot tpt rlcf rlcf-tune; do
    .venv/bin/tta classify out/demo.png --labels "$LABELS" --method "$method" --top-k 3
    echo
done
