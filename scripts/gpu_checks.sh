#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script: the CUDA tests (tests/gpu), then the GPU
# benchmarks of the README's Speed section (tta bench reference / episodes with ViT-B-16:random
# policy and ViT-L-14:random reward). Writes logs and JSON to OUTDIR (default gpu-out).
#
#   bash scripts/gpu_checks.sh OUTDIR [quick]
#
# With GPU_ARCHIVE=FILE.tar.gz, OUTDIR is packed into that one file after every step (for the
# device tool, which brings back at most 8 files).
# Runs with whatever python3 has torch + open_clip (the project's .venv if there is one). On the
# workplace's H200 image (torch, transformers, timm there) these travelled as wheels: open_clip_torch,
# ftfy, wcwidth, pydantic, pydantic-core, pydantic-settings, python-dotenv, typing-inspection,
# annotated-types (python 3.12, manylinux x86_64). A full run took about 5.5 minutes there. Each
# step has its own time limit and a failed step does not stop the ones after it. "quick" runs
# each step small, to try the script out (on a CPU too: the benchmarks then use --device cpu).
set -u
cd "$(dirname "$0")/.."
out=${1:-gpu-out}
quick=${2:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python

step() {  # step NAME SECONDS COMMAND...: run one check with a time limit, log to OUTDIR/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    echo "   exit $? after ${SECONDS}s total"
    tail -n 25 "$out/$name.log"
    if [ -n "${GPU_ARCHIVE:-}" ]; then tar -czf "$GPU_ARCHIVE" -C "$out" .; fi
}

(nvidia-smi -L || echo "no nvidia-smi") >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
if $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    device=cuda
else
    device=cpu
fi
models=(--model ViT-B-16:random --reward-model ViT-L-14:random --device "$device")
if [ -n "$quick" ]; then
    models=(--model world-policy --reward-model world-reward --device "$device")
    reference=(--classes 20 --precision fp32 --images 1 --n-views 8 --steps 1)
    episodes=(--classes 20 --batches 1,4 --images 4 --n-views 8)
    precisions=(fp32)
else
    reference=(--classes 200,1000 --precision fp32,bf16 --images 3 --n-views 64 --steps 3)
    episodes=(--classes 200 --batches 1,4,16 --images 32 --n-views 64)
    precisions=(fp32 bf16)
fi

step bench-reference 280 $PY -m service.cli.main bench reference "${models[@]}" "${reference[@]}" \
    --json "$out/bench-reference-gpu.json"
for precision in "${precisions[@]}"; do
    for method in rlcf rlcf-tune; do
        step "bench-episodes-$method-$precision" 75 $PY -m service.cli.main bench episodes \
            --method "$method" --precision "$precision" "${models[@]}" "${episodes[@]}" \
            --json "$out/bench-episodes-$method-$precision.json"
    done
done
step tests-gpu 150 $PY -m pytest -q -p no:cacheprovider tests/gpu
echo "== done in ${SECONDS}s"
