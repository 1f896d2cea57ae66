#!/usr/bin/env bash
# `npm run bench`: builds release binaries (the addon as published, and the Rust baseline), then measures on the loopback tailnet in a fresh network namespace. Never part
# of `npm test`. Arguments after `--` go to bench/run.ts (`--json`, `--runs N`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$ROOT"
bash scripts/setup.sh
host="$(rustc -vV | sed -n 's/^host: //p')"
say "building release binaries for the benchmark (the first build takes several minutes)"
cargo build --locked --release --quiet -p effect-tailscale-native --target "$host"
cargo build --locked --release --quiet -p tailscale-rust-baseline --target "$host"
mkdir -p .cache/bench
cp "target/$host/release/libeffect_tailscale_native.so" .cache/bench/tailscale.node
export NAPI_RS_NATIVE_LIBRARY_PATH="$ROOT/.cache/bench/tailscale.node"
export RUST_BASELINE="$ROOT/target/$host/release/tailscale-rust-baseline"
say "measuring (Effect service, raw addon, Rust crate, Go tsnet)"
exec bash scripts/isolated.sh node --expose-gc bench/run.ts "$@"
