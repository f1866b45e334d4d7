#!/usr/bin/env bash
# Install the Debian packages the tests use, if missing (idempotent; needs root and apt, as on
# the project's Debian machines): Chromium and its WebDriver for the playground's browser tests,
# and Prometheus's promtool for the alert rules' unit tests.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
updated=""
apt_install() {
    if [ -z "$updated" ]; then $SUDO apt-get update -qq; updated=1; fi
    echo "installing $* (apt)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt_install chromium chromium-driver
    chromium --version
fi
if ! command -v promtool >/dev/null; then
    apt_install --no-install-recommends prometheus  # (only promtool is used; the server is not started)
    promtool --version | head -1
fi
