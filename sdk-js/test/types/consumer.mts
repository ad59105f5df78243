// Compiled, never run, by types.test.mjs: the package's types as an ES module user sees them.
import {
  Passthru,
  PassthruError,
  verifyWebhook,
  type AccountPage,
  type ConnectedAccount,
  type FunctionCall,
} from "passthru-client";

const pt = new Passthru({ apiKey: "pt_x", baseUrl: "http://127.0.0.1:8000", userId: "user-42" });
const result: FunctionCall = await pt.invokeFunction(
  "slack-passthrough-request",
  { method: "GET", url: "https://slack.com/api/conversations.list?limit=2" },
  undefined,
  { wait: 10, signal: AbortSignal.timeout(15_000) },
);
const code: string | null | undefined = result.network_code;
for await (const call of pt.iterCalls({ app: "slack", since: new Date(), pageSize: 50 })) {
  console.log(call.id, call.status, code);
}
const accounts: ConnectedAccount[] = await pt.listAccounts({ app: "slack", pageSize: 500 });
for await (const account of pt.iterAccounts({ userId: "user-42" })) console.log(account.id, accounts.length);
const page: AccountPage = await pt.listAccountsPage({}, { cursor: "c1" });
console.log(page.next_cursor);
try {
  verifyWebhook("{}", { "webhook-id": "msg_1" }, "whsec_AAAA", { toleranceS: 60 });
} catch (err) {
  if (err instanceof PassthruError) console.log(err.status, err.error, err.error_details[0]?.field);
}
// @ts-expect-error: wait is a number of seconds
await pt.getCall("fc_1", { wait: "10" });
