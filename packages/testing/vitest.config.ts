import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // One loopback tailnet per file; files run one after another on two cores.
    fileParallelism: false
  }
})
