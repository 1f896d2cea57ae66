#!/usr/bin/env bash
# Installs and builds everything `npm start` and `npm test` need, from a clean clone:
# Node.js 22 and pnpm (into .tools/), the JavaScript packages, the Rust crates and the addon,
# the Go modules and the loopback tailnet harness. A second run reuses what the first built.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$ROOT"

require_tool cargo "build the native addon (a Rust toolchain, 1.92 or newer)"
require_tool go "build the loopback tailnet harness (Go 1.26.6 or newer)"

# The lab topologies block UDP with nftables (a LAN whose direct path dies). The tests run as
# root inside network namespaces, so installing the Debian package needs no more than that.
if ! command -v nft >/dev/null 2>&1; then
  say "installing nftables (the Debian package) for the lab topologies"
  if ! { apt-get install -y -qq nftables >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nftables >/dev/null 2>&1; }; }; then
    echo "error: 'nft' (nftables) is needed to test direct paths falling back to the relay;" >&2
    echo "       install the nftables package (apt-get install nftables, as root)" >&2
    exit 1
  fi
fi

say "installing JavaScript packages"
pnpm install --frozen-lockfile --reporter=silent

bash scripts/patch-crates.sh

say "building the native addon (debug; the first build takes a few minutes)"
started=$SECONDS
(cd native && pnpm exec napi build --platform 2>&1 |
  { grep -vE '^ +(Compiling|Fresh|Downloaded|Downloading|Locking|Adding|Updating) ' || true; } >&2)
echo "  addon ready in $((SECONDS - started))s" >&2

say "building the tailnet harness (Go)"
started=$SECONDS
mkdir -p "$ROOT/.cache/bin"
(cd packages/tailnet-harness/harness && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -o "$ROOT/.cache/bin/tailnet-harness" .)
echo "  harness ready in $((SECONDS - started))s" >&2
