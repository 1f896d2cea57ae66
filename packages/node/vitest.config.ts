import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The tailnet tests start a loopback tailnet per file (it takes a few seconds) and move megabytes.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // One loopback tailnet per file; files run one after another on two cores.
    fileParallelism: false
  }
})
