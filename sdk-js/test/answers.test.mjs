// What the client reads of an answer it cannot trust (a baseUrl that is not passthru, a proxy
// gone wrong): at most `maxResponseBytes` of a body, decoded, from a real local server; and a
// 2xx answer that is not the API's shape rejects with `invalid_response`.
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";

import { Passthru, PassthruError } from "passthru-client";

import { client, fakeFetch, json } from "./helpers.mjs";

const CAP = 256 * 1024;
const CALL = JSON.stringify({ id: "fc_1", status: "completed", network_code: "200", output: { ok: true } });

describe("maxResponseBytes, over a real socket", () => {
  let server;
  let baseUrl;

  before(async () => {
    server = createServer((request, response) => {
      if (request.url.startsWith("/function-calls/endless")) {
        response.writeHead(200, { "content-type": "application/json" });
        const piece = Buffer.alloc(65536, 120);
        const more = () => {
          while (!response.destroyed && response.write(piece));
          if (!response.destroyed) response.once("drain", more);
        };
        more();
      } else if (request.url.startsWith("/function-calls/announced")) {
        response.writeHead(200, { "content-type": "application/json", "content-length": String(CAP + 1) });
        response.end(Buffer.alloc(CAP + 1, 123));
      } else if (request.url.startsWith("/function-calls/bomb")) {
        const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
        response.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
        response.end(bomb);
      } else {
        const body = gzipSync(CALL);
        response.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
        response.end(body);
      }
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    baseUrl = `http://127.0.0.1:${server.address().port}`;
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const pt = (options = {}) => new Passthru({ apiKey: "pt_key", baseUrl, retries: 0, maxResponseBytes: CAP, ...options });

  for (const name of ["endless", "announced", "bomb"]) {
    it(`refuses an answer over the cap (${name}) without reading it whole`, async () => {
      await assert.rejects(pt().getCall(name), (err) => {
        assert.ok(err instanceof PassthruError);
        assert.equal(err.error, "response_too_large");
        assert.equal(err.status, 200);
        assert.match(err.message, /262,144 bytes/);
        return true;
      });
    });
  }

  it("reads and decodes an answer within the cap", async () => {
    const call = await pt({ maxResponseBytes: CALL.length }).getCall("fc_1");
    assert.deepEqual([call.id, call.network_code, call.output], ["fc_1", "200", { ok: true }]);
  });

  it("refuses a cap that is not a whole number above zero", () => {
    for (const bad of [0, -1, 1.5, "1000", Number.NaN]) {
      assert.throws(() => pt({ maxResponseBytes: bad }), /maxResponseBytes/);
    }
  });
});

describe("answers of another shape", () => {
  const cases = [
    ["getCall", ["fc_1"], []],
    ["getCall", ["fc_1"], { status: "completed" }],
    ["getCall", ["fc_1"], "a string"],
    ["invokeFunction", ["slack-passthrough-request", { method: "GET", url: "x" }], 5],
    ["cancel", ["fc_1"], { id: 7, status: "cancelled" }],
    ["listCalls", [], { items: 5 }],
    ["listFunctions", [], { functions: "none" }],
    ["rateLimits", [], { items: { a: 1 } }],
    ["listDeliveries", ["fc_1"], { items: "none" }],
    ["getBatch", ["bt_1"], { counts: {} }],
    ["createConnectSession", ["slack", "https://x.test/back"], { id: "cs_1" }],
  ];
  for (const [method, args, body] of cases) {
    it(`${method} rejects ${JSON.stringify(body)} as invalid_response`, async () => {
      const { pt } = client(fakeFetch(json(200, body)).fetch);
      await assert.rejects(pt[method](...args), (err) => {
        assert.ok(err instanceof PassthruError);
        assert.equal(err.error, "invalid_response");
        return true;
      });
    });
  }

  it("listFunctions passes category and q", async () => {
    const { fetch, requests } = fakeFetch(json(200, { functions: [] }));
    const { pt } = client(fetch);
    assert.deepEqual(await pt.listFunctions("passthrough", { category: "crm", q: "hub" }), []);
    assert.equal(requests[0].url.search, "?type=passthrough&category=crm&q=hub");
  });
});
