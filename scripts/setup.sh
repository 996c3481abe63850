#!/usr/bin/env bash
# Install what Veil and its tests need on a fresh Debian machine (idempotent).
# Needs root (or sudo) for the Debian packages; everything else goes into the current Python.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installed without recommends, so everything relied on is named here (tests/setup checks it):
# catatonit is podman's --init; containernetworking-plugins is named because the dnsname plugin
# (golang-github-containernetworking-plugin-dnsname: services of a `veil up` mesh find each other
# by name) works only with CNI, and podman's network dependency could also be met by netavark;
# gettext-base is envsubst, curl the demo's readiness probe, openjdk-17-jdk-headless builds the
# Java example's jar. chromium's recommends (avahi, udev, cups helpers) are not needed headless.
APT_PACKAGES=(buildah podman runc catatonit containernetworking-plugins golang-github-containernetworking-plugin-dnsname skopeo umoci docker-registry debootstrap postgresql git wrk softhsm2 chromium gettext-base curl openjdk-17-jdk-headless)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# pip runs when any declared dependency is missing or too old, or Veil is installed from another
# checkout (scripts/deps_ok.py reads pyproject.toml, so a new dependency needs no edit here).
if ! PYTHONPATH= python3 scripts/deps_ok.py || [ "${VEIL_SETUP_FORCE:-}" = 1 ]; then
  echo "setup: installing Veil and its test dependencies (pip)"
  python3 -m pip install -q --disable-pip-version-check -e ".[test]"
fi
