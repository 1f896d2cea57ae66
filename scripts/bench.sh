#!/usr/bin/env bash
# `npm run bench`: builds release binaries (the addon as published, and the Rust baseline), then measures on the loopback tailnet in a fresh network namespace. Never part
# of `npm test`. Arguments after `--` go to bench/run.ts (`--json`, `--runs N`, `--topology
# loopback|lan`, `--profile`). With `--profile` the binaries keep their symbols and line tables
# (built into target/profiling, apart from the release build) and every subject's process is
# recorded with `perf record` (bench/README.md, "Profiles").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$ROOT"
bash scripts/setup.sh
host="$(rustc -vV | sed -n 's/^host: //p')"
target_dir="target"
case " $* " in
  *" --profile "*)
    if ! command -v perf >/dev/null 2>&1; then
      if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing perf (linux-perf) for --profile"
        apt-get install -y -q linux-perf >/dev/null
      else
        echo "error: --profile needs perf (Debian: apt-get install linux-perf)" >&2
        exit 1
      fi
    fi
    # Release code, with symbols and line tables for the profiles.
    # Frame pointers, so `perf record -g` can walk the stacks.
    export CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
    export RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes"
    target_dir="target/profiling"
    ;;
esac
say "building release binaries for the benchmark (the first build takes several minutes)"
cargo build --locked --release --quiet -p effect-tailscale-native --target "$host" --target-dir "$target_dir"
cargo build --locked --release --quiet -p tailscale-rust-baseline --target "$host" --target-dir "$target_dir"
mkdir -p .cache/bench
cp "$target_dir/$host/release/libeffect_tailscale_native.so" .cache/bench/tailscale.node
export NAPI_RS_NATIVE_LIBRARY_PATH="$ROOT/.cache/bench/tailscale.node"
export RUST_BASELINE="$ROOT/$target_dir/$host/release/tailscale-rust-baseline"
say "measuring (Effect service, raw addon, Rust crate, Go tsnet)"
exec bash scripts/isolated.sh node --expose-gc bench/run.ts "$@"
