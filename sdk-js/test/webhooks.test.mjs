// verifyWebhook against the Standard Webhooks spec's published test vector, and each way a
// webhook must be refused.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";

import { WebhookVerificationError, signWebhook, verifyWebhook } from "passthru-client";

// The spec's test vector (the reference libraries' tests use the same one).
const VECTOR = {
  secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
  timestamp: 1614265330,
  payload: '{"test": 2432232314}',
  signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
};
const AT = { now: VECTOR.timestamp };
const HEADERS = {
  "webhook-id": VECTOR.id,
  "webhook-timestamp": String(VECTOR.timestamp),
  "webhook-signature": VECTOR.signature,
};

function refused(fn, message) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof WebhookVerificationError, String(err));
    assert.equal(err.error, "webhook_verification_failed");
    assert.match(err.error_details[0].message, message);
    return true;
  });
}

describe("verifyWebhook", () => {
  it("accepts the spec's test vector and returns its JSON body", () => {
    assert.deepEqual(verifyWebhook(VECTOR.payload, HEADERS, VECTOR.secret, AT), { test: 2432232314 });
    // the raw bytes, the secret without its prefix, or its bytes
    const bytes = new TextEncoder().encode(VECTOR.payload);
    assert.deepEqual(verifyWebhook(bytes, HEADERS, VECTOR.secret.slice(6), AT), { test: 2432232314 });
    const key = Buffer.from(VECTOR.secret.slice(6), "base64");
    assert.deepEqual(verifyWebhook(Buffer.from(bytes), HEADERS, key, AT), { test: 2432232314 });
  });

  it("signs the vector as the spec does", () => {
    assert.equal(signWebhook(VECTOR.payload, VECTOR.secret, VECTOR.id, VECTOR.timestamp), VECTOR.signature);
  });

  it("refuses a tampered body", () => {
    refused(() => verifyWebhook('{"test": 2432232315}', HEADERS, VECTOR.secret, AT), /no matching signature/);
    refused(() => verifyWebhook(VECTOR.payload + " ", HEADERS, VECTOR.secret, AT), /no matching signature/);
  });

  it("refuses a tampered id or timestamp", () => {
    refused(() => verifyWebhook(VECTOR.payload, { ...HEADERS, "webhook-id": "msg_other" }, VECTOR.secret, AT), /no matching/);
    const later = { ...HEADERS, "webhook-timestamp": String(VECTOR.timestamp + 1) };
    refused(() => verifyWebhook(VECTOR.payload, later, VECTOR.secret, AT), /no matching/);
  });

  it("refuses an old timestamp, and one from the future (the replay guard)", () => {
    refused(() => verifyWebhook(VECTOR.payload, HEADERS, VECTOR.secret, { now: VECTOR.timestamp + 301 }), /too old/);
    refused(() => verifyWebhook(VECTOR.payload, HEADERS, VECTOR.secret, { now: VECTOR.timestamp - 301 }), /future/);
    // today, the vector of 2021 is a replay
    refused(() => verifyWebhook(VECTOR.payload, HEADERS, VECTOR.secret), /too old/);
    // within a tolerance given
    const later = { now: VECTOR.timestamp + 3600, toleranceS: 3600 };
    assert.deepEqual(verifyWebhook(VECTOR.payload, HEADERS, VECTOR.secret, later), { test: 2432232314 });
    refused(() => verifyWebhook(VECTOR.payload, HEADERS, VECTOR.secret, { now: VECTOR.timestamp + 3601, toleranceS: 3600 }), /too old/);
  });

  it("refuses a wrong secret", () => {
    const other = "whsec_" + randomBytes(24).toString("base64");
    refused(() => verifyWebhook(VECTOR.payload, HEADERS, other, AT), /no matching signature/);
  });

  it("accepts a header with several signatures when one matches (a rotated secret)", () => {
    const wrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    for (const signatures of [
      `${wrong} ${VECTOR.signature}`,
      `${VECTOR.signature} ${wrong}`,
      `v1a,abcd ${VECTOR.signature}`,
      `garbage v2,xyz ${VECTOR.signature}`,
    ]) {
      const headers = { ...HEADERS, "webhook-signature": signatures };
      assert.deepEqual(verifyWebhook(VECTOR.payload, headers, VECTOR.secret, AT), { test: 2432232314 });
    }
    refused(
      () => verifyWebhook(VECTOR.payload, { ...HEADERS, "webhook-signature": `${wrong} v1a,${VECTOR.signature.slice(3)}` }, VECTOR.secret, AT),
      /no matching/,
    );
    refused(() => verifyWebhook(VECTOR.payload, { ...HEADERS, "webhook-signature": "v1,not*base64" }, VECTOR.secret, AT), /no matching/);
  });

  it("reads headers in any case, from a Headers, a Map or Node's req.headers", () => {
    const upper = Object.fromEntries(Object.entries(HEADERS).map(([k, v]) => [k.toUpperCase(), v]));
    for (const headers of [upper, new Headers(HEADERS), new Map(Object.entries(HEADERS))]) {
      assert.deepEqual(verifyWebhook(VECTOR.payload, headers, VECTOR.secret, AT), { test: 2432232314 });
    }
  });

  it("refuses missing or malformed headers", () => {
    refused(() => verifyWebhook(VECTOR.payload, {}, VECTOR.secret, AT), /missing header\(s\): webhook-id, webhook-timestamp, webhook-signature/);
    const { "webhook-signature": _, ...unsigned } = HEADERS;
    refused(() => verifyWebhook(VECTOR.payload, unsigned, VECTOR.secret, AT), /missing header\(s\): webhook-signature$/);
    refused(() => verifyWebhook(VECTOR.payload, { ...HEADERS, "webhook-timestamp": "1e9" }, VECTOR.secret, AT), /not a number/);
  });

  it("refuses a body that is not a JSON object, even correctly signed", () => {
    for (const body of ["[1, 2]", "not json", "null"]) {
      const headers = { ...HEADERS, "webhook-signature": signWebhook(body, VECTOR.secret, VECTOR.id, VECTOR.timestamp) };
      refused(() => verifyWebhook(body, headers, VECTOR.secret, AT), /not (valid JSON|a JSON object)/);
    }
  });

  it("refuses a secret that is not whsec_ and base64, without echoing it", () => {
    assert.throws(() => verifyWebhook(VECTOR.payload, HEADERS, "whsec_not*base64!", AT), (err) => {
      assert.ok(err instanceof TypeError);
      assert.ok(!err.message.includes("not*base64"));
      return true;
    });
    assert.throws(() => verifyWebhook(VECTOR.payload, HEADERS, "whsec_", AT), TypeError);
  });
});
