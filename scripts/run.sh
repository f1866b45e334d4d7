#!/usr/bin/env bash
# Install, then run the main job: the service on the bundled default models (world-policy,
# world-reward) with a private Redis, one worker and the API on http://127.0.0.1:8000.
# Ctrl-C stops everything. Settings come from TTA_* variables (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
mkdir -p out
.venv/bin/python -c "from world.render import render; render('sketch', 4, 1_000_000, 64).image.save('out/demo.png')"
LABELS="$(.venv/bin/python -c "from world.glyphs import CLASS_NAMES; print(','.join(CLASS_NAMES))")"
cat <<EOT
Once /readyz answers 200, try (from another shell):
  curl -s -F image=@out/demo.png -F labels="$LABELS" -F method=rlcf http://127.0.0.1:8000/v1/classify
  curl -N -H 'Accept: text/event-stream' -F image=@out/demo.png -F labels="$LABELS" -F method=rlcf http://127.0.0.1:8000/v1/classify
  .venv/bin/tta classify out/demo.png --labels "$LABELS" --method rlcf --server http://127.0.0.1:8000
EOT
exec .venv/bin/tta serve "$@"
