#!/bin/sh
# Shared by the images: make sure python3 with venv exists (python:*-slim has it; a plain Debian
# base gets it from apt), trust any extra CA certificates put in docker/extra-ca/ (for builds
# behind a TLS-intercepting proxy), and create the virtual environment /opt/venv.
set -eu
if ! python3 -c "import venv, ensurepip" 2>/dev/null || [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates
    rm -rf /var/lib/apt/lists/*
fi
python3 -m venv /opt/venv
extra=$(find /usr/local/share/tta-extra-ca -type f \( -name '*.crt' -o -name '*.pem' \) 2>/dev/null || true)
if [ -n "$extra" ]; then
    cat /etc/ssl/certs/ca-certificates.crt $extra > /opt/ca-bundle.pem
    /opt/venv/bin/pip config --site set global.cert /opt/ca-bundle.pem
fi
/opt/venv/bin/pip install --no-cache-dir --quiet --upgrade pip
