#!/usr/bin/env bash
# `npm start`: sets up, then runs the demo (examples/demo.ts). Without TS_AUTH_KEY the demo
# starts a tailnet on loopback inside a fresh network namespace; with it, it joins that tailnet.
# Arguments after `npm start --` go to the demo (e.g. `--json`, `--topology nat`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$ROOT"
bash scripts/setup.sh
say "running the demo"
if [ -n "${TS_AUTH_KEY:-}" ]; then
  exec pnpm --silent --filter @effect-tailscale/examples run demo "$@"
fi
exec bash scripts/isolated.sh pnpm --silent --filter @effect-tailscale/examples run demo "$@"
