// Compiled, never run, by types.test.mjs: the package's types as a CommonJS user sees them.
import { Passthru, type ConnectedAccount } from "passthru-client";

const pt = new Passthru({ apiKey: "pt_x", retries: false, timeoutMs: 5_000 });
pt.connectAccount("slack", { access_token: "xoxb-..." }, { userId: "user-42" }).then(
  (account: ConnectedAccount) => account.id,
);
pt.waitFor("fc_1", { timeoutMs: 60_000 }).then((call) => call.status === "completed");
