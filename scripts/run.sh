#!/usr/bin/env bash
# Install, then run the main job: the service on the bundled default models (world-policy,
# world-reward) with a private Redis, one worker and the API on http://127.0.0.1:8000.
# Ctrl-C stops everything. Settings come from TTA_* variables (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
mkdir -p out
# The demo scene was picked by measurement (python -m world.playground_assets): a shifted-domain
# test scene that zero-shot gets wrong ("flower") and rlcf with its defaults gets right ("sun").
cp service/api/static/samples/demo.png out/demo.png
HOST=127.0.0.1 PORT=8000
ARGS=("$@")
for i in "${!ARGS[@]}"; do
    case "${ARGS[$i]}" in
        --host) HOST="${ARGS[$((i + 1))]:-$HOST}" ;; --host=*) HOST="${ARGS[$i]#--host=}" ;;
        --port) PORT="${ARGS[$((i + 1))]:-$PORT}" ;; --port=*) PORT="${ARGS[$i]#--port=}" ;;
    esac
done
URL="http://$HOST:$PORT"
# Every method, mllm included: the bundled world MLLM, with the bundled label set world-25.
export TTA_MLLM="${TTA_MLLM:-world-mllm}"
LABELS="$(.venv/bin/python -c "from world.glyphs import CLASS_NAMES; print(','.join(CLASS_NAMES))")"
cat <<EOT
Playground: open $URL/ in a browser (once /readyz answers 200).
Or try (from another shell):
  curl -s -F image=@out/demo.png -F labels="$LABELS" -F method=rlcf $URL/v1/classify
  curl -N -H 'Accept: text/event-stream' -F image=@out/demo.png -F labels="$LABELS" -F method=rlcf $URL/v1/classify
  curl -s -F image=@out/demo.png -F label_set=world-25 -F method=mllm $URL/v1/classify
  .venv/bin/tta classify out/demo.png --labels "$LABELS" --method rlcf --server $URL
EOT
exec .venv/bin/tta serve "$@"
