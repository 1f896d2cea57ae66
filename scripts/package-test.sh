#!/usr/bin/env bash
# The packages as a user gets them: packs every package (scripts/pack.sh), installs the tarballs
# into a fresh project in a temporary folder outside the workspace (third-party packages from the
# registry, ours only from the tarballs), then
#   - runs tests/package/app.mjs with plain `node`: joins the loopback tailnet served by the
#     prebuilt harness package and dials the echo peer through the release addon;
#   - type-checks tests/package/check.ts with `tsc` at default strict settings, under NodeNext
#     and bundler resolution (no skipLibCheck);
#   - runs the README's FakeTailnet test with @effect/vitest;
#   - checks that exactly one copy of `effect` is installed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$ROOT"

bash scripts/pack.sh >/dev/null
packs="$ROOT/.cache/packs"
project="$(mktemp -d "${TMPDIR:-/tmp}/effect-tailscale-package-test.XXXXXX")"
trap 'rm -rf "$project"' EXIT

say "installing the tarballs into a fresh project ($project)"
cp tests/package/app.mjs tests/package/check.ts tests/package/tsconfig.*.json "$project/"
cp packages/testing/test/readme-fake.test.ts "$project/fake.test.ts"
node - "$project" "$packs" <<'NODE'
const fs = require("node:fs")
const path = require("node:path")
const [project, packs] = process.argv.slice(2)
const tarball = (name) => {
  const file = fs.readdirSync(packs).find((f) => f === `${name.replace("@", "").replace("/", "-")}-0.1.0.tgz`)
  if (!file) throw new Error(`no tarball for ${name} in ${packs}`)
  return `file:${path.join(packs, file)}`
}
const ours = fs.readdirSync(packs).map((f) => "@effect-tailscale/" + f.replace(/^effect-tailscale-/, "").replace(/-0\.1\.0\.tgz$/, ""))
const devVersions = JSON.parse(fs.readFileSync("packages/testing/package.json", "utf8")).devDependencies
fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({
  name: "package-test",
  private: true,
  type: "module",
  dependencies: {
    "@effect-tailscale/core": tarball("@effect-tailscale/core"),
    "@effect-tailscale/node": tarball("@effect-tailscale/node"),
    "effect": devVersions["effect"],
    "@effect/platform-node": devVersions["@effect/platform-node"]
  },
  devDependencies: {
    "@effect-tailscale/testing": tarball("@effect-tailscale/testing"),
    "@effect/vitest": devVersions["@effect/vitest"],
    "@types/node": devVersions["@types/node"],
    "typescript": devVersions["typescript"],
    "vitest": devVersions["vitest"]
  },
  // Our packages depend on each other by version; these resolve them to the tarballs.
  pnpm: { overrides: Object.fromEntries(ours.map((name) => [name, tarball(name)])) }
}, null, 2))
NODE
# Quiet when it works; on failure (the registry, a full disk) pnpm's own words say why.
if ! (cd "$project" && pnpm install --reporter=append-only --config.confirmModulesPurge=false \
      --ignore-workspace >"$project/install.log" 2>&1); then
  tail -n 40 "$project/install.log" >&2
  echo "error: installing the tarballs into $project failed (pnpm's output above)" >&2
  exit 1
fi

say "effect and @effect/platform-node are peers everywhere, and one copy of effect is installed"
for package in core node tailnet-harness testing; do
  tar xzf "$packs/effect-tailscale-$package-0.1.0.tgz" -O package/package.json | node -e '
    const manifest = JSON.parse(require("fs").readFileSync(0, "utf8"))
    const effectOnly = ["@effect-tailscale/core", "@effect-tailscale/tailnet-harness"].includes(manifest.name)
    const peers = ["effect", ...(effectOnly ? [] : ["@effect/platform-node"])]
    for (const peer of peers) {
      if (!manifest.peerDependencies?.[peer] || manifest.dependencies?.[peer]) {
        console.error(`error: ${manifest.name} must have ${peer} as a peer dependency only`)
        process.exit(1)
      }
    }'
done
copies="$(ls "$project/node_modules/.pnpm" | grep -c '^effect@' || true)"
if [ "$copies" != "1" ]; then
  ls "$project/node_modules/.pnpm" | grep '^effect@' >&2
  echo "error: $copies copies of effect are installed; expected exactly one" >&2
  exit 1
fi

say "type-checking a program at default strict settings (NodeNext, then bundler)"
(cd "$project" && pnpm exec tsc -p tsconfig.nodenext.json && pnpm exec tsc -p tsconfig.bundler.json)

say "the README's FakeTailnet test with @effect/vitest"
(cd "$project" && pnpm exec vitest run --reporter=dot fake.test.ts)

say "plain node: joining the loopback tailnet and dialing the echo peer"
# No type stripping: everything Node loads must be JavaScript.
result="$(cd "$project" && bash "$ROOT/scripts/isolated.sh" node --no-experimental-strip-types app.mjs | tail -n 1)"
echo "  $result" >&2
node -e '
  const result = JSON.parse(process.argv[1])
  const fail = (why) => { console.error(`error: ${why}: ${process.argv[1]}`); process.exit(1) }
  if (result.echoed !== "hello from the tarballs") fail("the echo peer did not echo")
  if (!/^100\./.test(result.ipv4)) fail("no tailnet address")
  if (result.build.profile !== "release") fail("the installed addon is not the release build")
' "$result"

say "without its platform package, the harness says which package is missing"
# The platform packages only: the launcher, @effect-tailscale/tailnet-harness, stays.
rm -rf "$project"/node_modules/.pnpm/@effect-tailscale+tailnet-harness-linux-*
message="$(cd "$project" && node --input-type=module -e '
  const { harnessBinary } = await import("@effect-tailscale/testing/HarnessProcess")
  try {
    console.log(`found ${harnessBinary()}`)
  } catch (error) {
    console.log(error.message)
  }')"
case "$message" in
  *"@effect-tailscale/tailnet-harness-$(node -p 'process.platform + "-" + process.arch') is missing"*) echo "  $message" | cut -c1-160 >&2 ;;
  *) echo "error: expected the missing harness package to be named, got: $message" >&2; exit 1 ;;
esac
