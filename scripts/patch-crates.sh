#!/usr/bin/env bash
# Applies our patches to registry crates: for each native/patches/<crate>-<version>/, copies that
# crate's published source (downloaded by cargo) into .cache/patched-crates/<crate>-<version>/
# and applies the *.patch files in order; the workspace's [patch.crates-io] builds from there.
# docs/upstream.md says what each patch fixes and the upstream change it proposes. A second run
# reuses the copies while the patches are unchanged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$ROOT"

require_tool patch "apply our patches to registry crates (GNU patch)"
patches="native/patches"
manifest="$patches/sources/Cargo.toml"
out="$ROOT/.cache/patched-crates"
mkdir -p "$out"

cargo fetch --locked --quiet --manifest-path "$manifest"
metadata="$(cargo metadata --locked --offline --format-version 1 --manifest-path "$manifest")"

for dir in "$patches"/*-*/; do
  dir="${dir%/}"
  id="$(basename "$dir")"           # e.g. ts_runtime-0.6.1
  name="${id%-*}"
  version="${id##*-}"
  stamp="$(cat "$dir"/*.patch | sha256sum | cut -d' ' -f1)"
  target="$out/$id"
  if [ -f "$target/.patched" ] && [ "$(cat "$target/.patched")" = "$stamp" ]; then continue; fi
  source_dir="$(printf '%s' "$metadata" | node -e '
    const [name, version] = process.argv.slice(1)
    const metadata = JSON.parse(require("fs").readFileSync(0, "utf8"))
    const found = metadata.packages.find((p) => p.name === name && p.version === version)
    if (!found) { console.error(`${name} ${version} is not in native/patches/sources/Cargo.toml`); process.exit(1) }
    console.log(require("path").dirname(found.manifest_path))' "$name" "$version")"
  say "patching $id ($(ls "$dir"/*.patch | wc -l) patches)"
  rm -rf "$target"
  cp -R "$source_dir" "$target"
  chmod -R u+w "$target"
  for file in "$dir"/*.patch; do
    if ! patch --quiet --forward --fuzz=0 --no-backup-if-mismatch --strip=1 --directory="$target" < "$file"; then
      echo "error: $file does not apply to $id" >&2
      exit 1
    fi
  done
  echo "$stamp" > "$target/.patched"
done
