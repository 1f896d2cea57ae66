#!/usr/bin/env bash
# `npm run stress`: sets up, then runs bench/stress.ts (a device under full-size load, churn and
# control restarts) on the loopback tailnet in a fresh network namespace. Never part of
# `npm test`. Arguments after `--` go to bench/stress.ts (`--json`, sizes).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$ROOT"
bash scripts/setup.sh
say "stressing a device on the loopback tailnet (dials, lookups, churn, control restarts)"
exec bash scripts/isolated.sh node --expose-gc bench/stress.ts "$@"
