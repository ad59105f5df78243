/**
 * Webhook signatures, per the Standard Webhooks spec (https://www.standardwebhooks.com/).
 *
 * A webhook carries three headers: `webhook-id`, `webhook-timestamp` (Unix seconds) and
 * `webhook-signature`, a space-separated list of `v1,<base64>` signatures. Each is the
 * HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed with the secret's bytes: the base64 after the
 * `whsec_` prefix.
 */

import { createHmac, timingSafeEqual } from "node:crypto";

import { WebhookVerificationError } from "./errors.js";

const SECRET_PREFIX = "whsec_";
/** How far (seconds) a webhook's timestamp may be from now: the replay guard. */
export const DEFAULT_TOLERANCE_S = 300;

/** The request's raw body: a string, or bytes exactly as received. */
export type WebhookPayload = string | Uint8Array;

/** A request's headers: a fetch `Headers`, a `Map`, or a plain object such as Node's
 * `req.headers` (names in any case; an array value counts as its items joined). */
export type WebhookHeaders =
  | { get(name: string): string | null | undefined }
  | Record<string, string | string[] | undefined>;

export interface VerifyOptions {
  /** How far, in seconds, the timestamp may be from now (default 300). */
  toleranceS?: number;
  /** The current time in Unix seconds (default: now). */
  now?: number;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64(text: string): Buffer | undefined {
  const padded = text + "=".repeat((4 - (text.length % 4)) % 4);
  if (!BASE64.test(padded) || padded.length % 4 !== 0) return undefined;
  return Buffer.from(padded, "base64");
}

/** The HMAC key: raw bytes as given, or the base64 of a `whsec_...` string decoded. */
function key(secret: string | Uint8Array): Buffer {
  let bytes: Buffer | undefined;
  if (typeof secret === "string") {
    const encoded = secret.trim().replace(/^whsec_/, "");
    bytes = decodeBase64(encoded);
    if (bytes === undefined) {
      throw new TypeError(
        `the webhook secret must be '${SECRET_PREFIX}' followed by base64 (as passthru gives it)`,
      );
    }
  } else {
    bytes = Buffer.from(secret);
  }
  if (bytes.length === 0) throw new TypeError("the webhook secret is empty");
  return bytes;
}

function bytesOf(payload: WebhookPayload): Buffer {
  return typeof payload === "string" ? Buffer.from(payload, "utf8") : Buffer.from(payload);
}

function signature(secretKey: Buffer, id: string, timestamp: string, body: Buffer): Buffer {
  return createHmac("sha256", secretKey).update(`${id}.${timestamp}.`).update(body).digest();
}

function header(headers: WebhookHeaders, name: string): string {
  let value: unknown;
  if (typeof (headers as { get?: unknown }).get === "function") {
    value = (headers as { get(name: string): unknown }).get(name);
  } else {
    const record = headers as Record<string, unknown>;
    const found = Object.keys(record).find((k) => k.toLowerCase() === name);
    value = found === undefined ? undefined : record[found];
  }
  if (Array.isArray(value)) value = value.join(" ");
  return typeof value === "string" ? value.trim() : "";
}

/** The `webhook-signature` value (`v1,<base64>`) for `payload` sent as `id` at `timestamp`
 * (Unix seconds, default now): what a sender puts in the header, to test a receiver. */
export function signWebhook(
  payload: WebhookPayload,
  secret: string | Uint8Array,
  id: string,
  timestamp: number = Math.floor(Date.now() / 1000),
): string {
  const digest = signature(key(secret), id, String(Math.trunc(timestamp)), bytesOf(payload));
  return `v1,${digest.toString("base64")}`;
}

/**
 * Check a webhook and return its JSON body.
 *
 * `payload` must be the raw request body exactly as received (never re-serialized JSON);
 * `secret` the endpoint's `whsec_...` secret. Throws WebhookVerificationError when a header
 * is missing or malformed, the timestamp is more than `toleranceS` seconds from now (a
 * replay guard), no `v1` signature matches (each compared in constant time), or the body
 * is not a JSON object.
 */
export function verifyWebhook(
  payload: WebhookPayload,
  headers: WebhookHeaders,
  secret: string | Uint8Array,
  options: VerifyOptions = {},
): Record<string, unknown> {
  const secretKey = key(secret);
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  const missing = [
    ["webhook-id", id],
    ["webhook-timestamp", timestamp],
    ["webhook-signature", signatures],
  ]
    .filter(([, value]) => !value)
    .map(([name]) => name);
  if (missing.length > 0) throw new WebhookVerificationError(`missing header(s): ${missing.join(", ")}`);

  if (!/^\d+$/.test(timestamp)) {
    throw new WebhookVerificationError("webhook-timestamp is not a number of seconds");
  }
  const sentAt = Number(timestamp);
  const now = options.now ?? Date.now() / 1000;
  const tolerance = options.toleranceS ?? DEFAULT_TOLERANCE_S;
  if (sentAt < now - tolerance) throw new WebhookVerificationError("the webhook timestamp is too old");
  if (sentAt > now + tolerance) {
    throw new WebhookVerificationError("the webhook timestamp is in the future");
  }

  const body = bytesOf(payload);
  const expected = signature(secretKey, id, timestamp, body);
  let matched = false;
  for (const entry of signatures.split(/\s+/)) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue; // another scheme, or malformed
    const candidate = decodeBase64(entry.slice(comma + 1));
    if (candidate === undefined || candidate.length !== expected.length) continue;
    // Every entry is compared, so the time taken does not tell which one matched.
    if (timingSafeEqual(candidate, expected)) matched = true;
  }
  if (!matched) throw new WebhookVerificationError("no matching signature");

  let event: unknown;
  try {
    event = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw new WebhookVerificationError("the webhook body is not valid JSON");
  }
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    throw new WebhookVerificationError("the webhook body is not a JSON object");
  }
  return event as Record<string, unknown>;
}
