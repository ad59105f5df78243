// The JavaScript SDK against the live stack, run by test_sdk_js.py from a folder whose
// node_modules/passthru-client is the built sdk-js/ package, so it is imported by its name
// as a user imports it. Prints one JSON report; test_sdk_js.py asserts on it.
import { once } from "node:events";
import { createServer } from "node:http";
import { createRequire } from "node:module";

import { Passthru, PassthruError, WebhookVerificationError, verifyWebhook } from "passthru-client";

const { PASSTHRU_URL, PASSTHRU_API_KEY, PASSTHRU_USER, SLACK_TOKEN, PIPEDRIVE_TOKEN } = process.env;
const WAIT_MS = 30_000;
const report = {};

const pt = new Passthru({ apiKey: PASSTHRU_API_KEY, baseUrl: PASSTHRU_URL, userId: PASSTHRU_USER });
await pt.connectAccount("slack", { access_token: SLACK_TOKEN });
const pipedrive = await pt.connectAccount("pipedrive", { access_token: PIPEDRIVE_TOKEN });

// The seed's first example, as written: the call is accepted, then waited for.
report.slack = await pt
  .invokeFunction("slack-passthrough-request", {
    method: "GET",
    url: "https://slack.com/api/conversations.list?limit=2",
  })
  .then(async (result) => ({ submitted: result, done: await pt.waitFor(result.id, { timeoutMs: WAIT_MS }) }));

// The same with a wait: the result comes back in the one request.
report.slackWaited = await pt.invokeFunction(
  "slack-passthrough-request",
  { method: "GET", url: "https://slack.com/api/conversations.list?limit=2" },
  undefined,
  { wait: 30 },
);

// The seed's second example: a Pipedrive person, naming the connected account.
report.pipedrive = await pt.invokeFunction(
  "pipedrive-passthrough-request",
  {
    method: "POST",
    url: "https://api.pipedrive.com/api/v2/persons",
    body: { name: "Ada Lovelace", emails: [{ value: "ada@example.com" }] },
  },
  pipedrive.id,
  { wait: 30, idempotencyKey: `person-${PASSTHRU_USER}` },
);

// A refusal rejects with the API's error and details.
report.refusal = await pt
  .invokeFunction("slack-passthrough-request", { method: "FETCH", url: "https://evil.example.com/" })
  .then(
    (result) => ({ resolved: result }),
    (err) => ({
      isPassthruError: err instanceof PassthruError,
      name: err.name,
      status: err.status,
      error: err.error,
      error_details: err.error_details,
      message: err.message,
    }),
  );

// A webhook, received by a server of this script's own and checked with verifyWebhook.
const endpoint = await pt.setWebhookEndpoint(null);
const delivered = [];
const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  const checked = { headers: req.headers, body: body.toString("utf8") };
  try {
    checked.event = verifyWebhook(body, req.headers, endpoint.secret);
    res.writeHead(204).end();
  } catch (err) {
    checked.error = String(err);
    res.writeHead(400).end();
  }
  for (const [what, payload, secret] of [
    ["tampered", Buffer.concat([body, Buffer.from(" ")]), endpoint.secret],
    ["wrongSecret", body, "whsec_" + Buffer.from("not the endpoint's secret").toString("base64")],
  ]) {
    try {
      verifyWebhook(payload, req.headers, secret);
      checked[what] = "accepted";
    } catch (err) {
      checked[what] = err instanceof WebhookVerificationError ? err.error_details[0].message : String(err);
    }
  }
  delivered.push(checked);
  server.emit("delivered");
});
server.listen(0, "127.0.0.1");
await once(server, "listening");
const callbackUrl = `http://127.0.0.1:${server.address().port}/passthru-events`;
const hooked = await pt.invokeFunction(
  "slack-passthrough-request",
  { method: "GET", url: "conversations.list?limit=2" },
  { wait: 30, callbackUrl },
);
const timer = setTimeout(() => server.emit("delivered"), WAIT_MS);
if (delivered.length === 0) await once(server, "delivered");
clearTimeout(timer);
server.close();
report.webhook = {
  secretShown: typeof endpoint.secret === "string" && endpoint.secret.startsWith("whsec_"),
  call: hooked,
  callbackUrl,
  delivered,
  deliveries: await pt.listDeliveries(hooked.id),
};

// The log, page after page, and the CommonJS build of the same package.
report.logged = [];
for await (const call of pt.iterCalls({ userId: PASSTHRU_USER, pageSize: 2 })) report.logged.push(call.id);
report.cjsExports = typeof createRequire(import.meta.url)("passthru-client").Passthru;

console.log(JSON.stringify(report));
