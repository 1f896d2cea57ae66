#!/usr/bin/env bash
# `npm test`: sets up everything, then runs every test: the style gate (scripts/lint.sh), Rust
# unit tests, type checks, and the JavaScript suites (unit, addon, loopback-tailnet integration)
# inside a fresh network namespace.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$ROOT"
bash scripts/setup.sh
require_tool curl "test the tailnet proxy with a real client"

say "checking that the committed addon declarations match the Rust source"
if ! git diff --quiet -- native/index.d.ts native/index.js 2>/dev/null; then
  git --no-pager diff --stat -- native/index.d.ts native/index.js >&2
  echo "error: native/index.d.ts or native/index.js is stale; commit the regenerated files" >&2
  exit 1
fi

bash scripts/lint.sh

say "Rust unit tests"
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo test --locked --quiet -p effect-tailscale-native --target "$host"

say "type-checking"
pnpm -r --workspace-concurrency=1 run typecheck

say "checking the API reference (docs/api.md): every public export documented, and up to date"
node scripts/api-docs.mjs --check

say "JavaScript tests (in a fresh network namespace)"
bash scripts/isolated.sh pnpm -r --workspace-concurrency=1 run test

say "the packages as a user installs them (tarballs in a fresh project)"
bash scripts/package-test.sh
