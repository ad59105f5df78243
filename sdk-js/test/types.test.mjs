// The declarations ship and resolve through the exports map, for ESM and CommonJS users
// (tsc with NodeNext resolution on two small consumers).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { it } from "node:test";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");

it("type-checks an ESM and a CommonJS consumer against the built declarations", () => {
  const args = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext"];
  args.push("--target", "es2022", "--types", "node", "test/types/consumer.mts", "test/types/consumer.cts");
  const done = spawnSync(process.execPath, [tsc, ...args], { cwd: root, encoding: "utf8" });
  assert.equal(done.status, 0, done.stdout + done.stderr);
});
