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
(cd packages/tailnet-harness/harness && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
  go build -trimpath -ldflags="-s -w" -o "$ROOT/packages/tailnet-harness/npm/$harness_platform/tailnet-harness" .)

say "building dist/ of core, node, tailnet-harness and testing"
for package in core node tailnet-harness testing; do
  rm -rf "packages/$package/dist" "packages/$package/tsconfig.tsbuildinfo"
  (cd "packages/$package" && pnpm exec tsc -p tsconfig.json)
done

out="$ROOT/.cache/packs"
rm -rf "$out"
mkdir -p "$out"
for dir in native "native/npm/$addon_platform" packages/core packages/node packages/tailnet-harness \
  "packages/tailnet-harness/npm/$harness_platform" packages/testing; do
  (cd "$dir" && pnpm pack --pack-destination "$out" >/dev/null)
done
ls "$out"/*.tgz

# Our packages depend on one another by version, which the registry does not have yet: a project
# installs the tarballs with overrides that point each name at its file.
node - "$out" >&2 <<'NODE'
const fs = require("node:fs")
const path = require("node:path")
const out = process.argv[2]
const files = fs.readdirSync(out).filter((f) => f.endsWith(".tgz")).sort()
const name = (f) => "@effect-tailscale/" + f.replace(/^effect-tailscale-/, "").replace(/-\d+\.\d+\.\d+\.tgz$/, "")
const overrides = Object.fromEntries(files.map((f) => [name(f), `file:${path.join(out, f)}`]))
console.error(`
To use these in a project before the packages are on the registry, add to its package.json:
${JSON.stringify({ pnpm: { overrides } }, null, 2)}
then: pnpm add @effect-tailscale/node effect@^4.1.5 @effect/platform-node@^4.1.5
      pnpm add -D @effect-tailscale/testing @effect/vitest@^4.1.5`)
NODE
