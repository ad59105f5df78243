// The package as its users load it: CommonJS through `require`, ESM through `import`, the
// same surface and types beside each.
const assert = require("node:assert/strict");
const { existsSync, readFileSync } = require("node:fs");
const { join } = require("node:path");
const { describe, it } = require("node:test");

const root = join(__dirname, "..");
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

describe("the package", () => {
  it("loads as CommonJS and as ESM, with the same exports", async () => {
    const cjs = require("passthru-client");
    const esm = await import("passthru-client");
    assert.equal(typeof cjs.Passthru, "function");
    assert.equal(typeof cjs.verifyWebhook, "function");
    assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).filter((k) => k !== "default").sort());
    assert.equal(require.resolve("passthru-client"), join(root, "dist", "cjs", "index.js"));
  });

  it("ships types for both builds, and no runtime dependency", () => {
    for (const condition of ["import", "require"]) {
      const entry = manifest.exports["."][condition];
      assert.ok(existsSync(join(root, entry.types)), entry.types);
      assert.ok(existsSync(join(root, entry.default)), entry.default);
    }
    assert.equal(manifest.dependencies, undefined);
    assert.match(manifest.engines.node, /^>=18/);
  });

  it("names its version in the User-Agent", () => {
    assert.equal(require("passthru-client").VERSION, manifest.version);
  });
});
