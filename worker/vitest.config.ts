import { defineConfig } from "vitest/config";

// The Worker's unit tests run in Node: the Workers runtime is not needed for
// header rewriting, environment mapping or the starting page, and the
// Container base class (which needs it) is replaced by test/fake-containers.ts.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
