#!/usr/bin/env bash
# Runs a command inside a fresh network namespace with only loopback up, so no packet of the
# tests can leave this machine. Fails (never skips) when a namespace cannot be made.
set -euo pipefail
if [ "${EFFECT_TAILSCALE_ISOLATED:-}" = "1" ]; then exec "$@"; fi
if ! command -v unshare >/dev/null 2>&1; then
  echo "error: 'unshare' (util-linux) is needed to run the network tests in their own namespace" >&2
  exit 1
fi
if ! unshare -n -- true 2>/dev/null; then
  echo "error: cannot create a network namespace (unshare -n needs root or user namespaces);" >&2
  echo "       the integration tests refuse to run on the machine's real network" >&2
  exit 1
fi
export EFFECT_TAILSCALE_ISOLATED=1
exec unshare -n -- bash -c 'ip link set lo up && exec "$@"' isolated "$@"
