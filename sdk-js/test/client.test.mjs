// Every method of Passthru against an injected fetch: the request it sends, what it resolves
// to, and the errors it rejects with.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  AuthenticationError,
  BadRequest,
  CallTimeout,
  Conflict,
  NotFound,
  Passthru,
  PassthruError,
  ServerError,
  isDone,
} from "passthru-client";

import { client, fakeFetch, json, manualClock } from "./helpers.mjs";

const SLACK = "slack-passthrough-request";
const LIST = { method: "GET", url: "https://slack.com/api/conversations.list?limit=2" };
const DONE = {
  id: "fc_1",
  status: "completed",
  network_code: "200",
  output: { ok: true, channels: [] },
  headers: { "content-type": "application/json" },
};
const QUEUED = { id: "fc_1", status: "queued", function: SLACK, app: "slack" };

describe("new Passthru", () => {
  it("needs an API key", () => {
    assert.throws(() => new Passthru({ apiKey: " " }), TypeError);
    assert.throws(() => new Passthru({ apiKey: "pt_x", retries: -1 }), RangeError);
  });

  it("sends the key, JSON and its name with every request", async () => {
    const { fetch, requests } = fakeFetch(json(200, { functions: [] }));
    const { pt } = client(fetch);
    await pt.listFunctions();
    const [seen] = requests;
    assert.equal(seen.url.href, "http://passthru.test/functions?type=passthrough");
    assert.equal(seen.headers.get("authorization"), "Bearer pt_test");
    assert.equal(seen.headers.get("accept"), "application/json");
    assert.match(seen.headers.get("user-agent"), /^passthru-client-js\/\d+\.\d+\.\d+ node\//);
  });
});

describe("invokeFunction", () => {
  it("resolves to the Integry shape plus id, as the seed's example reads it", async () => {
    const { fetch, requests } = fakeFetch(json(200, DONE));
    const { pt } = client(fetch);
    // Given the seed's call, with a connected account and a wait
    const result = await pt.invokeFunction(SLACK, LIST, "ca_1", { wait: 10 }).then((r) => r);
    // Then it is the server's answer, field for field
    assert.deepEqual(result, DONE);
    assert.equal(result.network_code, "200");
    const [seen] = requests;
    assert.equal(seen.method, "POST");
    assert.equal(seen.url.pathname, "/function-calls");
    assert.deepEqual(seen.body, { function: SLACK, params: LIST, connected_account_id: "ca_1" });
    assert.equal(seen.headers.get("content-type"), "application/json");
    assert.equal(seen.headers.get("prefer"), "wait=10");
    assert.equal(seen.headers.get("x-user-id"), "user-1");
    assert.equal(seen.headers.get("idempotency-key"), null);
  });

  it("follows the server's default without a wait, and answers at once with wait 0", async () => {
    const { fetch, requests } = fakeFetch(json(202, QUEUED));
    const { pt } = client(fetch);
    assert.deepEqual(await pt.invokeFunction(SLACK, LIST), QUEUED);
    await pt.invokeFunction(SLACK, LIST, { wait: 0 });
    assert.equal(requests[0].headers.get("prefer"), null);
    assert.equal(requests[1].headers.get("prefer"), "respond-async");
    assert.equal(requests.length, 2); // a queued call is not polled when no wait was asked
  });

  it("takes its options third, a user, an idempotency key and a callback URL", async () => {
    const { fetch, requests } = fakeFetch(json(202, QUEUED));
    const { pt } = client(fetch);
    await pt.invokeFunction(SLACK, LIST, {
      userId: "user-2",
      idempotencyKey: "key-1",
      callbackUrl: "https://hooks.example/passthru",
    });
    const [seen] = requests;
    assert.deepEqual(seen.body, {
      function: SLACK,
      params: LIST,
      callback_url: "https://hooks.example/passthru",
    });
    assert.equal(seen.headers.get("x-user-id"), "user-2");
    assert.equal(seen.headers.get("idempotency-key"), "key-1");
  });

  it("waits past 60 s by long-polling, and resolves queued when the wait runs out", async () => {
    const clock = manualClock();
    const { fetch, requests } = fakeFetch(
      () => {
        clock.advance(60_000);
        return json(202, QUEUED);
      },
      () => {
        clock.advance(30_000);
        return json(200, { ...QUEUED, status: "running" });
      },
    );
    const { pt } = client(fetch, { clock });
    const call = await pt.invokeFunction(SLACK, LIST, { wait: 90 });
    assert.equal(call.status, "running");
    assert.equal(requests[0].headers.get("prefer"), "wait=60");
    assert.equal(requests[1].url.pathname, "/function-calls/fc_1");
    assert.equal(requests[1].url.searchParams.get("wait"), "30");
    assert.equal(requests.length, 2);
  });

  it("refuses a negative wait before sending anything", async () => {
    const { fetch, requests } = fakeFetch(json(200, DONE));
    const { pt } = client(fetch);
    await assert.rejects(pt.invokeFunction(SLACK, LIST, { wait: -1 }), RangeError);
    assert.equal(requests.length, 0);
  });

  it("rejects a refusal with PassthruError: status, error and error_details", async () => {
    const refusal = {
      error: "invalid_params",
      error_details: [
        { field: "url", message: "host 'evil.example' is not one of this app's hosts" },
        { field: "method", message: "not an HTTP method" },
      ],
    };
    const { fetch, requests } = fakeFetch(json(400, refusal));
    const { pt, slept } = client(fetch);
    const err = await pt.invokeFunction(SLACK, { method: "FETCH", url: "https://evil.example/" }).catch((e) => e);
    assert.ok(err instanceof BadRequest);
    assert.ok(err instanceof PassthruError);
    assert.equal(err.name, "BadRequest");
    assert.equal(err.status, 400);
    assert.equal(err.error, "invalid_params");
    assert.deepEqual(err.error_details, refusal.error_details);
    assert.deepEqual(err.body, refusal);
    assert.match(err.message, /^invalid_params \(HTTP 400\): url: host 'evil.example'/);
    assert.equal(requests.length, 1);
    assert.deepEqual(slept, []);
  });
});

describe("errors", () => {
  const cases = [
    [401, AuthenticationError],
    [404, NotFound],
    [409, Conflict],
    [422, BadRequest],
    [500, ServerError],
    [418, PassthruError],
  ];
  for (const [status, Class] of cases) {
    it(`maps ${status} to ${Class.name}`, async () => {
      const { fetch } = fakeFetch(json(status, { error: "nope", error_details: [] }, { "x-request-id": "r1" }));
      const { pt } = client(fetch);
      const err = await pt.getCall("fc_1").catch((e) => e);
      assert.equal(err.constructor, Class);
      assert.equal(err.status, status);
      assert.equal(err.error, "nope");
      assert.equal(err.headers["x-request-id"], "r1");
    });
  }

  it("keeps a text error answer in error_details", async () => {
    const { fetch } = fakeFetch(new Response("bad gateway, says the proxy", { status: 500 }));
    const { pt } = client(fetch);
    const err = await pt.getCall("fc_1").catch((e) => e);
    assert.ok(err instanceof ServerError);
    assert.equal(err.error, "http_500");
    assert.deepEqual(err.error_details, [{ field: "body", message: "bad gateway, says the proxy" }]);
  });

  it("refuses a 2xx answer that is not JSON", async () => {
    const { fetch } = fakeFetch(new Response("<html>", { status: 200 }));
    const { pt } = client(fetch);
    const err = await pt.getCall("fc_1").catch((e) => e);
    assert.equal(err.constructor, PassthruError);
    assert.equal(err.error, "invalid_response");
  });
});

describe("getCall, waitFor, cancel", () => {
  it("getCall long-polls with ?wait, at most 60 s, and escapes the id", async () => {
    const { fetch, requests } = fakeFetch(json(200, DONE));
    const { pt } = client(fetch);
    assert.deepEqual(await pt.getCall("fc_1"), DONE);
    await pt.getCall("fc_1", { wait: 2.5 });
    await pt.getCall("fc/../x", { wait: 600 });
    assert.equal(requests[0].url.search, "");
    assert.equal(requests[1].url.searchParams.get("wait"), "2.5");
    assert.equal(requests[2].url.pathname, "/function-calls/fc%2F..%2Fx");
    assert.equal(requests[2].url.searchParams.get("wait"), "60");
  });

  it("waitFor polls until the call is final", async () => {
    const clock = manualClock();
    const { fetch, requests } = fakeFetch(
      () => {
        clock.advance(60_000);
        return json(200, { ...QUEUED, status: "retrying" });
      },
      json(200, DONE),
    );
    const { pt } = client(fetch, { clock });
    assert.deepEqual(await pt.waitFor("fc_1", { timeoutMs: 120_000 }), DONE);
    assert.deepEqual(
      requests.map((r) => r.url.searchParams.get("wait")),
      ["60", "60"],
    );
    assert.ok(isDone(DONE));
    assert.ok(!isDone(QUEUED));
  });

  it("waitFor rejects with CallTimeout, carrying the call as last seen", async () => {
    const clock = manualClock();
    const { fetch, requests } = fakeFetch(() => {
      clock.advance(5_000);
      return json(200, { ...QUEUED, status: "running" });
    });
    const { pt } = client(fetch, { clock });
    const err = await pt.waitFor("fc_1", { timeoutMs: 5_000 }).catch((e) => e);
    assert.ok(err instanceof CallTimeout);
    assert.equal(err.error, "call_timeout");
    assert.equal(err.call.status, "running");
    assert.equal(err.timeoutMs, 5_000);
    assert.equal(requests.length, 1);
  });

  it("cancel posts to the call's cancel", async () => {
    const { fetch, requests } = fakeFetch(json(200, { ...QUEUED, status: "cancelled" }));
    const { pt } = client(fetch);
    assert.equal((await pt.cancel("fc_1")).status, "cancelled");
    assert.equal(requests[0].method, "POST");
    assert.equal(requests[0].url.pathname, "/function-calls/fc_1/cancel");
    assert.equal(requests[0].body, undefined);
  });
});

describe("the log", () => {
  it("iterCalls follows the cursor to the last page, with the filters on every page", async () => {
    const pages = {
      "": { items: [{ id: "fc_5" }, { id: "fc_4" }], next_cursor: "c1" },
      c1: { items: [{ id: "fc_3" }, { id: "fc_2" }], next_cursor: "c2" },
      c2: { items: [{ id: "fc_1" }], next_cursor: null },
    };
    const { fetch, requests } = fakeFetch((r) => json(200, pages[r.url.searchParams.get("cursor") ?? ""]));
    const { pt } = client(fetch);
    const since = new Date("2026-01-02T03:04:05Z");
    const ids = [];
    for await (const call of pt.iterCalls({ app: "slack", batchId: "b_1", pageSize: 2, since, status: undefined })) {
      ids.push(call.id);
    }
    assert.deepEqual(ids, ["fc_5", "fc_4", "fc_3", "fc_2", "fc_1"]);
    assert.equal(requests.length, 3);
    for (const seen of requests) {
      assert.equal(seen.url.pathname, "/function-calls");
      assert.equal(seen.url.searchParams.get("app"), "slack");
      assert.equal(seen.url.searchParams.get("batch_id"), "b_1");
      assert.equal(seen.url.searchParams.get("limit"), "2");
      assert.equal(seen.url.searchParams.get("since"), "2026-01-02T03:04:05.000Z");
      assert.equal(seen.url.searchParams.has("status"), false);
    }
    assert.deepEqual(
      requests.map((r) => r.url.searchParams.get("cursor")),
      [null, "c1", "c2"],
    );
  });

  it("listCalls reads one page", async () => {
    const { fetch, requests } = fakeFetch(json(200, { items: [{ id: "fc_1" }], next_cursor: "c9" }));
    const { pt } = client(fetch);
    const page = await pt.listCalls({ userId: "u-9", networkCode: "404" }, { cursor: "c8" });
    assert.equal(page.next_cursor, "c9");
    assert.equal(requests[0].url.search, "?user_id=u-9&network_code=404&cursor=c8");
  });
});

describe("batches", () => {
  it("batch sends the calls as given, as the user", async () => {
    const answer = {
      batch_id: "b_1",
      accepted: [{ index: 0, id: "fc_1" }],
      rejected: [{ index: 1, error: "invalid_params", error_details: [{ field: "url", message: "no" }] }],
    };
    const { fetch, requests } = fakeFetch(json(202, answer));
    const { pt } = client(fetch);
    const calls = [
      { function: SLACK, params: LIST },
      { function: SLACK, params: { method: "GET", url: "https://x.test/" }, user_id: "user-3" },
    ];
    assert.deepEqual(await pt.batch(calls, { userId: "user-2" }), answer);
    assert.equal(requests[0].url.pathname, "/function-calls/batch");
    assert.deepEqual(requests[0].body, { calls });
    assert.equal(requests[0].headers.get("x-user-id"), "user-2");
  });

  it("getBatch reads a batch's counts", async () => {
    const { fetch, requests } = fakeFetch(json(200, { id: "b_1", counts: { completed: 2 }, done: true }));
    const { pt } = client(fetch);
    assert.equal((await pt.getBatch("b_1")).done, true);
    assert.equal(requests[0].url.pathname, "/batches/b_1");
  });
});

describe("connected accounts", () => {
  const ACCOUNT = { id: "ca_1", app: "zendesk", user_id: "user-1", status: "active" };

  it("connectAccount posts the credentials and config for the user", async () => {
    const { fetch, requests } = fakeFetch(json(201, ACCOUNT));
    const { pt } = client(fetch);
    const account = await pt.connectAccount("zendesk", { access_token: "t" }, {
      connectionConfig: { subdomain: "acme" },
      userId: "user-7",
    });
    assert.deepEqual(account, ACCOUNT);
    assert.equal(requests[0].method, "POST");
    assert.equal(requests[0].url.pathname, "/connected-accounts");
    assert.deepEqual(requests[0].body, {
      app: "zendesk",
      credentials: { access_token: "t" },
      connection_config: { subdomain: "acme" },
    });
    assert.equal(requests[0].headers.get("x-user-id"), "user-7");
  });

  it("createConnectSession posts the app, the redirect URL and the options for the user", async () => {
    const LINK = { id: "cs_1", url: "https://pt.example/connect/tok", expires_at: "2025-01-02T03:14:05Z" };
    const { fetch, requests } = fakeFetch(json(201, LINK), json(201, LINK));
    const { pt } = client(fetch);
    assert.deepEqual(await pt.createConnectSession("hubspot", "https://app.example/back"), LINK);
    assert.equal(requests[0].method, "POST");
    assert.equal(requests[0].url.pathname, "/connect-sessions");
    assert.deepEqual(requests[0].body, { app: "hubspot", redirect_url: "https://app.example/back" });
    await pt.createConnectSession("zendesk", "https://app.example/back", {
      userId: "user-9",
      scopes: ["read"],
      connectionConfig: { subdomain: "acme" },
      connectedAccountId: "ca_9",
    });
    assert.deepEqual(requests[1].body, {
      app: "zendesk",
      redirect_url: "https://app.example/back",
      scopes: ["read"],
      connection_config: { subdomain: "acme" },
      connected_account_id: "ca_9",
    });
    assert.equal(requests[1].headers.get("x-user-id"), "user-9");
  });

  it("listAccounts, updateAccount and deleteAccount", async () => {
    const { fetch, requests } = fakeFetch(
      json(200, { items: [ACCOUNT] }),
      json(200, { ...ACCOUNT, status: "disabled" }),
      new Response(null, { status: 204 }),
    );
    const { pt } = client(fetch);
    assert.deepEqual(await pt.listAccounts({ app: "zendesk", userId: "user-1" }), [ACCOUNT]);
    assert.equal((await pt.updateAccount("ca_1", { status: "disabled" })).status, "disabled");
    assert.equal(await pt.deleteAccount("ca_1"), undefined);
    assert.equal(requests[0].url.search, "?app=zendesk&user_id=user-1");
    assert.equal(requests[1].method, "PATCH");
    assert.equal(requests[1].url.pathname, "/connected-accounts/ca_1");
    assert.deepEqual(requests[1].body, { status: "disabled" });
    assert.equal(requests[2].method, "DELETE");
    assert.equal(requests[2].url.pathname, "/connected-accounts/ca_1");
  });

  it("listAccounts and iterAccounts follow the cursor to the last page, with the filters on every page", async () => {
    const pages = {
      "": { items: [{ ...ACCOUNT, id: "ca_5" }, { ...ACCOUNT, id: "ca_4" }], next_cursor: "c1" },
      c1: { items: [{ ...ACCOUNT, id: "ca_3" }, { ...ACCOUNT, id: "ca_2" }], next_cursor: "c2" },
      c2: { items: [{ ...ACCOUNT, id: "ca_1" }], next_cursor: null },
    };
    const { fetch, requests } = fakeFetch((r) => json(200, pages[r.url.searchParams.get("cursor") ?? ""]));
    const { pt } = client(fetch);
    const filters = { app: "zendesk", userId: "user-1", pageSize: 2, status: undefined };
    const listed = await pt.listAccounts(filters);
    const iterated = [];
    for await (const account of pt.iterAccounts(filters)) iterated.push(account.id);
    const ids = ["ca_5", "ca_4", "ca_3", "ca_2", "ca_1"];
    assert.deepEqual(listed.map((a) => a.id), ids);
    assert.deepEqual(iterated, ids);
    assert.equal(requests.length, 6);
    for (const seen of requests) {
      assert.equal(seen.url.pathname, "/connected-accounts");
      assert.equal(seen.url.searchParams.get("app"), "zendesk");
      assert.equal(seen.url.searchParams.get("user_id"), "user-1");
      assert.equal(seen.url.searchParams.get("limit"), "2");
      assert.equal(seen.url.searchParams.has("status"), false);
    }
    assert.deepEqual(
      requests.map((r) => r.url.searchParams.get("cursor")),
      [null, "c1", "c2", null, "c1", "c2"],
    );
  });

  it("listAccountsPage reads one page", async () => {
    const { fetch, requests } = fakeFetch(json(200, { items: [ACCOUNT], next_cursor: "c9" }));
    const { pt } = client(fetch);
    const page = await pt.listAccountsPage({ userId: "u-9" }, { cursor: "c8" });
    assert.equal(page.next_cursor, "c9");
    assert.deepEqual(page.items, [ACCOUNT]);
    assert.equal(requests[0].url.search, "?user_id=u-9&cursor=c8");
  });

  it("updateAccount sends new credentials with their config", async () => {
    const { fetch, requests } = fakeFetch(json(200, ACCOUNT));
    const { pt } = client(fetch);
    await pt.updateAccount("ca_1", { credentials: { access_token: "new" }, connectionConfig: { subdomain: "b" } });
    assert.deepEqual(requests[0].body, {
      credentials: { access_token: "new" },
      connection_config: { subdomain: "b" },
    });
  });
});

describe("catalog and limits", () => {
  it("listFunctions and rateLimits", async () => {
    const fn = { name: SLACK, app: "slack", type: "passthrough", description: "", parameters: {} };
    const { fetch, requests } = fakeFetch(
      json(200, { functions: [fn] }),
      json(200, { as_of: "t", tenant_cap: null, items: [], next_cursor: null }),
    );
    const { pt } = client(fetch);
    assert.deepEqual(await pt.listFunctions(), [fn]);
    assert.deepEqual(await pt.rateLimits(), { as_of: "t", tenant_cap: null, items: [], next_cursor: null });
    assert.equal(requests[1].url.pathname, "/rate-limits");
    assert.equal(requests[1].url.search, "");
  });

  it("rateLimits reads every page of accounts, their items in one list", async () => {
    const item = (id) => ({ app: "slack", connected_account_id: id, limits: [] });
    const pages = {
      "": { as_of: "first", tenant_cap: { limit: 10 }, items: [item("ca_3")], next_cursor: "c1" },
      c1: { as_of: "second", tenant_cap: { limit: 10 }, items: [], next_cursor: "c2" },
      c2: { as_of: "third", tenant_cap: { limit: 10 }, items: [item("ca_1")], next_cursor: null },
    };
    const { fetch, requests } = fakeFetch((r) => json(200, pages[r.url.searchParams.get("cursor") ?? ""]));
    const { pt } = client(fetch);
    const state = await pt.rateLimits({ pageSize: 50 });
    assert.deepEqual(state, {
      as_of: "first",
      tenant_cap: { limit: 10 },
      items: [item("ca_3"), item("ca_1")],
      next_cursor: null,
    });
    assert.deepEqual(
      requests.map((r) => r.url.search),
      ["?limit=50", "?limit=50&cursor=c1", "?limit=50&cursor=c2"],
    );
  });
});

describe("webhook endpoint and deliveries", () => {
  it("set, get and rotate the endpoint", async () => {
    const endpoint = { url: "https://hooks.example/p", enabled: true, secret: "whsec_AAAA" };
    const { fetch, requests } = fakeFetch(
      json(200, endpoint),
      json(200, { ...endpoint, secret: null }),
      json(200, { ...endpoint, secret: "whsec_BBBB" }),
    );
    const { pt } = client(fetch);
    assert.equal((await pt.setWebhookEndpoint("https://hooks.example/p")).secret, "whsec_AAAA");
    assert.equal((await pt.getWebhookEndpoint()).secret, null);
    assert.equal((await pt.rotateWebhookSecret()).secret, "whsec_BBBB");
    assert.deepEqual(
      requests.map((r) => [r.method, r.url.pathname, r.body]),
      [
        ["PUT", "/webhook-endpoint", { url: "https://hooks.example/p" }],
        ["GET", "/webhook-endpoint", undefined],
        ["POST", "/webhook-endpoint/rotate-secret", undefined],
      ],
    );
  });

  it("clears the endpoint's URL with null", async () => {
    const { fetch, requests } = fakeFetch(json(200, { url: null, enabled: true }));
    const { pt } = client(fetch);
    await pt.setWebhookEndpoint(null);
    assert.deepEqual(requests[0].body, { url: null });
  });

  it("listDeliveries and redeliver", async () => {
    const delivery = { id: "msg_fc_1", event: "function_call.completed", status: "succeeded", attempts: [] };
    const { fetch, requests } = fakeFetch(json(200, { items: [delivery] }), new Response(null, { status: 202 }));
    const { pt } = client(fetch);
    assert.deepEqual(await pt.listDeliveries("fc_1"), [delivery]);
    assert.equal(await pt.redeliver("fc_1"), undefined);
    assert.equal(requests[0].url.pathname, "/function-calls/fc_1/deliveries");
    assert.deepEqual([requests[1].method, requests[1].url.pathname], ["POST", "/function-calls/fc_1/redeliver"]);
  });
});

describe("hostile or odd answers, and values never sent", () => {
  it("never follows a redirect: it rejects with the 3xx, sending nothing elsewhere", async () => {
    const { fetch, requests } = fakeFetch(
      () => new Response(null, { status: 307, headers: { location: "https://elsewhere.test/steal" } }),
    );
    const seen = [];
    const watching = async (url, init) => {
      seen.push(init.redirect);
      return fetch(url, init);
    };
    const { pt } = client(watching);
    const err = await pt.connectAccount("slack", { access_token: "xoxb-secret" }).catch((e) => e);
    assert.ok(err instanceof PassthruError);
    assert.equal(err.status, 307);
    assert.deepEqual(seen, ["manual"]);
    assert.ok(requests.every((r) => r.url.host === "passthru.test"));
  });

  it("refuses retry settings that are not numbers of 0 or more", () => {
    for (const retries of [{ maxRetries: Number.NaN }, { maxRetries: 1.5 }, { backoffMs: -1 }, { maxRetries: "3" }, { nope: 1 }]) {
      assert.throws(() => client(fakeFetch().fetch, { retries }), RangeError, JSON.stringify(retries));
    }
    assert.doesNotThrow(() => client(fakeFetch().fetch, { retries: { maxRetries: 0, backoffMs: undefined } }));
  });

  it("asks again after a growing pause when the API cuts a wait short", async () => {
    const clock = manualClock();
    const slept = [];
    const { fetch, requests } = fakeFetch(json(200, { ...QUEUED, status: "running" }));
    const { pt } = client(fetch, {
      clock,
      sleep: async (ms) => {
        slept.push(ms);
        clock.advance(ms);
      },
    });
    const err = await pt.waitFor("fc_1", { timeoutMs: 10_000 }).catch((e) => e);
    assert.ok(err instanceof CallTimeout);
    assert.ok(requests.length >= 5 && requests.length <= 10, String(requests.length));
    assert.deepEqual(slept.slice(0, 4), [250, 500, 1000, 2000]);
    assert.equal(Math.max(...slept), 2000);
  });

  it("stops a walk when the API gives a cursor twice", async () => {
    const { fetch, requests } = fakeFetch(json(200, { items: [QUEUED], next_cursor: "fc_1" }));
    const { pt } = client(fetch);
    const err = await (async () => {
      for await (const _ of pt.iterCalls()) {
        // drained
      }
    })().catch((e) => e);
    assert.ok(err instanceof PassthruError);
    assert.equal(err.error, "repeated_cursor");
    assert.equal(requests.length, 2);
    const limits = client(fakeFetch(json(200, { items: [], next_cursor: "same" })).fetch).pt;
    assert.equal((await limits.rateLimits().catch((e) => e)).error, "repeated_cursor");
  });

  it("refuses an id that would name another resource, before sending", async () => {
    const { fetch, requests } = fakeFetch(json(200, DONE));
    const { pt } = client(fetch);
    for (const bad of ["", ".", ".."]) {
      await assert.rejects(pt.getCall(bad), TypeError);
      await assert.rejects(pt.deleteAccount(bad), TypeError);
    }
    assert.equal(requests.length, 0);
  });

  it("refuses an API key or user with a control character, without repeating it", () => {
    const err = (() => {
      try {
        return new Passthru({ apiKey: "pt_secret\nX-Evil: 1", fetch: fakeFetch().fetch });
      } catch (e) {
        return e;
      }
    })();
    assert.ok(err instanceof TypeError);
    assert.ok(!err.message.includes("pt_secret"));
    assert.throws(() => client(fakeFetch().fetch, { userId: "alice\r\nX-Evil: 1" }), /control character/);
  });

  it("sends a user beyond ASCII in UTF-8, as the API reads it", async () => {
    const { fetch, requests } = fakeFetch(json(202, QUEUED));
    const { pt } = client(fetch, { userId: "josé 日本" });
    await pt.invokeFunction(SLACK, LIST, { wait: 0 });
    const sent = requests[0].headers.get("x-user-id");
    assert.equal(Buffer.from(sent, "latin1").toString("utf8"), "josé 日本");
  });
});
