#!/usr/bin/env bash
# `npm run lint`: the style every file is held to, by machine. Rust: rustfmt and clippy (warnings
# are errors; rules in the root Cargo.toml's [workspace.lints]). TypeScript and JavaScript:
# ESLint with dprint as the formatter (eslint.config.mjs). Go: gofmt and go vet.
# `npm run lint -- --fix` rewrites what the formatters can fix. Expects `scripts/setup.sh` to
# have run (npm test and npm start run it first).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$ROOT"
fix=0
if [ "${1:-}" = "--fix" ]; then fix=1; fi
host="$(rustc -vV | sed -n 's/^host: //p')"

say "Rust: rustfmt"
if [ $fix = 1 ]; then cargo fmt --all; else cargo fmt --all --check; fi

say "Rust: clippy (warnings are errors)"
cargo clippy --locked --quiet --workspace --all-targets --target "$host" -- -D warnings

say "TypeScript and JavaScript: ESLint and dprint"
if [ $fix = 1 ]; then pnpm exec eslint --fix .; else pnpm exec eslint --max-warnings 0 .; fi

say "Go: gofmt and go vet (the tailnet harness)"
cd packages/tailnet-harness/harness
if [ $fix = 1 ]; then gofmt -w .; fi
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  echo "error: gofmt would change these files (npm run lint -- --fix):" >&2
  echo "$unformatted" >&2
  exit 1
fi
GOTOOLCHAIN=local GOFLAGS=-mod=readonly go vet ./...
