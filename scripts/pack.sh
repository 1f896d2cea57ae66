#!/usr/bin/env bash
# Builds what the npm packages ship and packs them into .cache/packs/: each TypeScript package's
# dist/ (ES modules, declarations, source maps), the release addon (stripped, LTO) in this
# machine's platform package, and the loopback tailnet harness in its platform package. Other
# platforms' binaries are built by .github/workflows/release.yml. Prints the tarball paths.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$ROOT"

host="$(rustc -vV | sed -n 's/^host: //p')"
addon_platform="$(node -p 'const { platform, arch } = process; const libc = platform === "linux" ? (process.report.getReport().header.glibcVersionRuntime ? "-gnu" : "-musl") : platform === "win32" ? "-msvc" : ""; `${platform}-${arch}${libc}`')"
harness_platform="$(node -p '`${process.platform}-${process.arch}`')"

say "building the release addon for $addon_platform (the first build takes several minutes)"
started=$SECONDS
cargo build --locked --release --quiet -p effect-tailscale-native --target "$host"
library="target/$host/release/libeffect_tailscale_native.so"
[ -f "$library" ] || library="target/$host/release/libeffect_tailscale_native.dylib"
cp "$library" "native/npm/$addon_platform/tailscale.$addon_platform.node"
echo "  release addon ready in $((SECONDS - started))s" >&2

say "building the harness for $harness_platform"
(cd packages/testing/harness && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
  go build -trimpath -ldflags="-s -w" -o "$ROOT/packages/testing/npm/$harness_platform/tailnet-harness" .)

say "building dist/ of core, node and testing"
for package in core node testing; do
  rm -rf "packages/$package/dist" "packages/$package/tsconfig.tsbuildinfo"
  (cd "packages/$package" && pnpm exec tsc -p tsconfig.json)
done

out="$ROOT/.cache/packs"
rm -rf "$out"
mkdir -p "$out"
for dir in native "native/npm/$addon_platform" packages/core packages/node packages/testing \
  "packages/testing/npm/$harness_platform"; do
  (cd "$dir" && pnpm pack --pack-destination "$out" >/dev/null)
done
ls "$out"/*.tgz
