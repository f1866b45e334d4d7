#!/usr/bin/env bash
# Build and run the whole docker-compose stack on this machine and check it for real (see
# scripts/verify_deployment.py for the steps). Needs root (Docker engine, debootstrap) and
# about 15 GB of disk; takes about 10 minutes the first time (the worker image holds torch).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >/dev/null
exec .venv/bin/python scripts/verify_deployment.py "$@"
