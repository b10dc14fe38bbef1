#!/usr/bin/env bash
# System packages moodbgm needs (Debian/Ubuntu). Idempotent: installs only what is missing.
set -euo pipefail
pkgs=(ffmpeg espeak-ng sox fluidsynth fluid-soundfont-gm libfluidsynth3 redis-server chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
