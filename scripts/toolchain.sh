#!/usr/bin/env bash
# Sourced by the project's scripts. Installs the pinned Node.js and pnpm into .tools/
# (from the npm registry, nothing else) when the machine's Node is older than Effect needs,
# and puts them first on PATH. A second run reuses what the first installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
NODE_VERSION="22.23.3"
PNPM_VERSION="10.34.8"
MIN_NODE="22.19.0"

say() { printf '\033[1m▸ %s\033[0m\n' "$*" >&2; }

version_at_least() { # $1 >= $2 (dotted)
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

ensure_node() {
  local current=""
  if command -v node >/dev/null 2>&1; then current="$(node -p 'process.versions.node')"; fi
  if [ -n "$current" ] && version_at_least "$current" "$MIN_NODE"; then return; fi
  if [ ! -x "$TOOLS/node/node_modules/node/bin/node" ] ||
     [ "$("$TOOLS/node/node_modules/node/bin/node" -p 'process.versions.node')" != "$NODE_VERSION" ]; then
    say "installing Node.js $NODE_VERSION into .tools/node (machine has ${current:-none})"
    mkdir -p "$TOOLS/node"
    npm install --prefix "$TOOLS/node" --no-save --no-audit --no-fund --loglevel=error \
      "node@$NODE_VERSION" >&2
  fi
  export PATH="$TOOLS/node/node_modules/node/bin:$PATH"
  local got; got="$(node -p 'process.versions.node')"
  if ! version_at_least "$got" "$MIN_NODE"; then
    echo "error: Node.js $MIN_NODE or newer is required, got $got after installing node@$NODE_VERSION" >&2
    exit 1
  fi
}

ensure_pnpm() {
  if [ ! -x "$TOOLS/pnpm/node_modules/.bin/pnpm" ] ||
     [ "$("$TOOLS/pnpm/node_modules/.bin/pnpm" --version)" != "$PNPM_VERSION" ]; then
    say "installing pnpm $PNPM_VERSION into .tools/pnpm"
    mkdir -p "$TOOLS/pnpm"
    npm install --prefix "$TOOLS/pnpm" --no-save --no-audit --no-fund --loglevel=error \
      "pnpm@$PNPM_VERSION" >&2
  fi
  export PATH="$TOOLS/pnpm/node_modules/.bin:$PATH"
}

require_tool() { # name, what it is for
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: '$1' is not installed; it is needed to $2" >&2
    exit 1
  fi
}

ensure_node
ensure_pnpm
export npm_config_update_notifier=false
