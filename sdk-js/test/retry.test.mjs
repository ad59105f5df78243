// The SDK's own retries: the pure policy's table, then the client following it against an
// injected fetch (no request is waited for: the client's sleep only records), timeouts and
// AbortSignal.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { APIConnectionError, DEFAULT_RETRY_POLICY, Passthru, RateLimited, ServerError } from "passthru-client";

import { client, fakeFetch, hangingFetch, json, netError } from "./helpers.mjs";
import { afterAnswer, afterFailure, backoff, isRepeatable, retryAfterMs } from "../dist/esm/retry.js";
import { failureKind } from "../dist/esm/transport.js";

const POLICY = DEFAULT_RETRY_POLICY;
const SLACK = "slack-passthrough-request";
const LIST = { method: "GET", url: "conversations.list" };
const DONE = { id: "fc_1", status: "completed", network_code: "200", output: {}, headers: {} };

describe("the retry policy", () => {
  it("calls GET, PUT, DELETE and keyed requests repeatable, not a bare POST or PATCH", () => {
    assert.ok(isRepeatable("GET", {}));
    assert.ok(isRepeatable("put", {}));
    assert.ok(isRepeatable("DELETE", {}));
    assert.ok(isRepeatable("POST", { "Idempotency-Key": "k" }));
    assert.ok(!isRepeatable("POST", {}));
    assert.ok(!isRepeatable("PATCH", { "X-User-ID": "u" }));
  });

  it("backs off exponentially with jitter, up to the cap", () => {
    assert.equal(backoff(POLICY, 0, 0), 250);
    assert.equal(backoff(POLICY, 0, 0.999999) < 500, true);
    assert.equal(backoff(POLICY, 2, 0), 1000);
    assert.equal(backoff(POLICY, 10, 0), 4000);
  });

  it("reads Retry-After in seconds or as an HTTP date", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    assert.equal(retryAfterMs("2", now), 2000);
    for (const junk of ["0.5", "-5", "1e3", "abc 1", "inf"]) assert.equal(retryAfterMs(junk, now), undefined, junk);
    assert.equal(retryAfterMs("Thu, 01 Jan 2026 00:00:07 GMT", now), 7000);
    assert.equal(retryAfterMs("Wed, 31 Dec 2025 00:00:00 GMT", now), 0);
    assert.equal(retryAfterMs("soon", now), undefined);
    assert.equal(retryAfterMs("", now), undefined);
    assert.equal(retryAfterMs(null, now), undefined);
  });

  it("retries 429 and 503 always, 502 and 504 only when repeatable", () => {
    const after = (repeatable, status) => afterAnswer(POLICY, repeatable, status, null, 0, 0, 0);
    for (const status of [429, 503]) {
      assert.equal(after(false, status), 250);
      assert.equal(after(true, status), 250);
    }
    for (const status of [502, 504]) {
      assert.equal(after(false, status), undefined);
      assert.equal(after(true, status), 250);
    }
    for (const status of [200, 400, 404, 409, 500]) assert.equal(after(true, status), undefined);
  });

  it("honours Retry-After, and gives up when it asks for too long or retries are spent", () => {
    assert.equal(afterAnswer(POLICY, false, 429, "3", 0, 0, 0), 3000);
    assert.equal(afterAnswer(POLICY, false, 429, "61", 0, 0, 0), undefined);
    assert.equal(afterAnswer(POLICY, false, 429, "3", 3, 0, 0), undefined);
    assert.equal(afterAnswer({ ...POLICY, maxRetries: 0 }, true, 503, null, 0, 0, 0), undefined);
  });

  it("retries an unsent request always, a maybe-sent one only when repeatable", () => {
    assert.equal(afterFailure(POLICY, false, "not_sent", 0, 0), 250);
    assert.equal(afterFailure(POLICY, false, "maybe_sent", 0, 0), undefined);
    assert.equal(afterFailure(POLICY, true, "maybe_sent", 1, 0), 500);
    assert.equal(afterFailure(POLICY, true, "not_sent", 3, 0), undefined);
  });

  it("tells a refused connection from a dropped one", () => {
    assert.equal(failureKind(netError("ECONNREFUSED")), "not_sent");
    assert.equal(failureKind(netError("ENOTFOUND")), "not_sent");
    assert.equal(failureKind(netError("UND_ERR_CONNECT_TIMEOUT")), "not_sent");
    assert.equal(failureKind(netError("ECONNRESET")), "maybe_sent");
    assert.equal(failureKind(netError("UND_ERR_SOCKET")), "maybe_sent");
    assert.equal(failureKind(new TypeError("fetch failed")), "maybe_sent");
    const refusedTwice = new AggregateError([netError("ECONNREFUSED").cause, netError("ECONNREFUSED").cause]);
    assert.equal(failureKind(new TypeError("fetch failed", { cause: refusedTwice })), "not_sent");
  });
});

describe("the client's retries", () => {
  it("sends again after 503, waiting what Retry-After asks", async () => {
    const { fetch, requests } = fakeFetch(
      json(503, { error: "unavailable", error_details: [] }, { "retry-after": "2" }),
      json(200, DONE),
    );
    const { pt, slept } = client(fetch);
    assert.deepEqual(await pt.invokeFunction(SLACK, LIST), DONE);
    assert.equal(requests.length, 2);
    assert.deepEqual(slept, [2000]);
    assert.deepEqual(requests[1].body, requests[0].body);
  });

  it("rejects with the last answer once the retries are spent", async () => {
    const { fetch, requests } = fakeFetch(json(429, { error: "rate_limited", error_details: [] }));
    const { pt, slept } = client(fetch, { retries: 2 });
    const err = await pt.getCall("fc_1").catch((e) => e);
    assert.ok(err instanceof RateLimited);
    assert.equal(requests.length, 3);
    assert.deepEqual(slept, [375, 750]);
  });

  it("does not wait for a Retry-After beyond a minute", async () => {
    const { fetch, requests } = fakeFetch(json(429, { error: "rate_limited", error_details: [] }, { "retry-after": "3600" }));
    const { pt } = client(fetch);
    await assert.rejects(pt.getCall("fc_1"), RateLimited);
    assert.equal(requests.length, 1);
  });

  it("never re-sends a submission whose outcome is unknown without an Idempotency-Key", async () => {
    // Given a gateway that lost the answer, then a dropped connection
    for (const reply of [json(502, { error: "bad_gateway", error_details: [] }), netError("ECONNRESET")]) {
      const { fetch, requests } = fakeFetch(reply, json(200, DONE));
      const { pt, slept } = client(fetch);
      // When a call is submitted without a key, it is sent once
      const err = await pt.invokeFunction(SLACK, LIST).catch((e) => e);
      assert.equal(requests.length, 1);
      assert.deepEqual(slept, []);
      assert.ok(err instanceof ServerError || err instanceof APIConnectionError, String(err));
    }
    const { fetch } = fakeFetch(netError("ECONNRESET"));
    const err = await client(fetch).pt.batch([{ function: SLACK, params: LIST }]).catch((e) => e);
    assert.ok(err instanceof APIConnectionError);
    assert.equal(err.error, "connection_error");
    assert.match(err.message, /not retried: the API may have acted on it \(give an idempotencyKey/);
    assert.equal(err.cause.cause.code, "ECONNRESET");
  });

  it("re-sends a submission with an Idempotency-Key, with the same key", async () => {
    for (const reply of [json(504, { error: "gateway_timeout", error_details: [] }), netError("ECONNRESET")]) {
      const { fetch, requests } = fakeFetch(reply, json(200, DONE));
      const { pt } = client(fetch);
      assert.deepEqual(await pt.invokeFunction(SLACK, LIST, { idempotencyKey: "k-1" }), DONE);
      assert.equal(requests.length, 2);
      assert.deepEqual(requests.map((r) => r.headers.get("idempotency-key")), ["k-1", "k-1"]);
    }
  });

  it("re-sends any request that never left (connection refused)", async () => {
    const { fetch, requests } = fakeFetch(netError("ECONNREFUSED"), netError("ECONNREFUSED"), json(200, DONE));
    const { pt, slept } = client(fetch);
    assert.deepEqual(await pt.invokeFunction(SLACK, LIST), DONE);
    assert.equal(requests.length, 3);
    assert.deepEqual(slept, [375, 750]);
  });

  it("re-sends GET, PUT and DELETE after a dropped connection or a 502", async () => {
    const { fetch, requests } = fakeFetch(netError("UND_ERR_SOCKET"), json(502, {}), json(200, { url: null, enabled: true }));
    const { pt } = client(fetch);
    await pt.setWebhookEndpoint(null);
    assert.deepEqual(requests.map((r) => r.method), ["PUT", "PUT", "PUT"]);
  });

  it("can be turned off", async () => {
    for (const retries of [0, false]) {
      const { fetch, requests } = fakeFetch(netError("ECONNREFUSED"), json(200, DONE));
      const { pt } = client(fetch, { retries });
      const err = await pt.getCall("fc_1").catch((e) => e);
      assert.ok(err instanceof APIConnectionError);
      assert.match(err.message, /ECONNREFUSED/);
      assert.equal(requests.length, 1);
    }
    const { fetch, requests } = fakeFetch(json(503, { error: "unavailable", error_details: [] }));
    await assert.rejects(client(fetch, { retries: false }).pt.getCall("fc_1"), ServerError);
    assert.equal(requests.length, 1);
  });
});

describe("timeouts and AbortSignal", () => {
  it("times a request out, and retries a GET that timed out", async () => {
    const { fetch, requests } = hangingFetch();
    const { pt } = client(fetch, { timeoutMs: 1, retries: 1 });
    const err = await pt.getCall("fc_1").catch((e) => e);
    assert.ok(err instanceof APIConnectionError);
    assert.match(err.error_details[0].message, /^timed out \(after 1 retry\)/);
    assert.equal(requests.length, 2);
  });

  it("does not re-send a submission that timed out (its outcome is unknown)", async () => {
    const { fetch, requests } = hangingFetch();
    const { pt } = client(fetch, { timeoutMs: 1 });
    const err = await pt.invokeFunction(SLACK, LIST, { wait: 0 }).catch((e) => e);
    assert.ok(err instanceof APIConnectionError);
    assert.match(err.message, /timed out; not retried/);
    assert.equal(requests.length, 1);
  });

  it("rejects at once, sending nothing, when the signal is already aborted", async () => {
    const { fetch, requests } = fakeFetch(json(200, DONE));
    const { pt } = client(fetch);
    const err = await pt.invokeFunction(SLACK, LIST, { signal: AbortSignal.abort() }).catch((e) => e);
    assert.equal(err.name, "AbortError");
    assert.equal(requests.length, 0);
  });

  it("aborts a request in flight with the signal's reason, and never retries it", async () => {
    const { fetch, requests } = hangingFetch();
    const { pt } = client(fetch);
    const controller = new AbortController();
    const pending = pt.getCall("fc_1", { wait: 30, signal: controller.signal });
    const reason = new Error("the user went away");
    controller.abort(reason);
    assert.equal(await pending.catch((e) => e), reason);
    assert.equal(requests.length, 1);
  });

  it("aborts the wait between retries", async () => {
    const { fetch, requests } = fakeFetch(json(503, { error: "unavailable", error_details: [] }, { "retry-after": "30" }));
    // The real sleep this time: only the abort can end the 30 s wait.
    const pt = new Passthru({ apiKey: "pt_test", baseUrl: "http://passthru.test", fetch });
    const controller = new AbortController();
    const pending = pt.getCall("fc_1", { signal: controller.signal });
    while (requests.length === 0) await new Promise((resolve) => setImmediate(resolve));
    controller.abort();
    const err = await pending.catch((e) => e);
    assert.equal(err.name, "AbortError");
    assert.equal(requests.length, 1);
  });

  it("aborts waitFor between its long polls", async () => {
    const controller = new AbortController();
    const { fetch, requests } = fakeFetch(() => {
      controller.abort();
      return json(200, { id: "fc_1", status: "running" });
    });
    const { pt } = client(fetch);
    const err = await pt.waitFor("fc_1", { signal: controller.signal }).catch((e) => e);
    assert.equal(err.name, "AbortError");
    assert.equal(requests.length, 1);
  });
});
