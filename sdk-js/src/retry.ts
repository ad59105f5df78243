/**
 * When the SDK sends a request again: a pure policy, the server's own rule.
 *
 * | what happened                                  | a repeatable request | a POST/PATCH without Idempotency-Key |
 * |------------------------------------------------|----------------------|--------------------------------------|
 * | 429 or 503 (the API says it did nothing)       | again                | again                                |
 * | 502 or 504 (a gateway may have lost an answer) | again                | never: its outcome is unknown        |
 * | connection failed before the request left      | again                | again                                |
 * | dropped connection or timeout after it left    | again                | never: its outcome is unknown        |
 *
 * Repeatable: GET, HEAD, OPTIONS, PUT, DELETE, and any request carrying an `Idempotency-Key`.
 * Each wait is exponential backoff with jitter (`backoffMs` doubling up to `maxBackoffMs`,
 * drawn between half and all of it), or the answer's `Retry-After` when it gives one, unless
 * it asks for more than `maxRetryAfterMs`, which ends the retries. `maxRetries: 0` turns every
 * retry off.
 */

/** Methods that may be sent twice without doing twice what they do. */
const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
/** Statuses where the API did nothing: any request may go again. */
const RETRY_ALWAYS = new Set([429, 503]);
/** Statuses where a gateway may have passed the request on: only a repeatable one goes again. */
const RETRY_IF_REPEATABLE = new Set([502, 504]);

/** How a request failed without an answer. `not_sent`: the connection was never made, so
 * sending again is always safe. `maybe_sent`: the API may have acted on it (a dropped
 * connection, a timeout). */
export type FailureKind = "not_sent" | "maybe_sent";

export interface RetryPolicy {
  maxRetries: number;
  backoffMs: number;
  maxBackoffMs: number;
  maxRetryAfterMs: number;
}

/** Three retries, 500 ms doubling up to 8 s, a Retry-After honoured up to 60 s. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxRetries: 3,
  backoffMs: 500,
  maxBackoffMs: 8_000,
  maxRetryAfterMs: 60_000,
};

/** Whether sending the request twice is safe even if the first one was acted on. */
export function isRepeatable(method: string, headers: Record<string, string>): boolean {
  return (
    IDEMPOTENT_METHODS.has(method.toUpperCase()) ||
    Object.keys(headers).some((name) => name.toLowerCase() === "idempotency-key")
  );
}

/** The backoff before retry number `retriesDone + 1`; `draw` is in [0, 1). */
export function backoff(policy: RetryPolicy, retriesDone: number, draw: number): number {
  const ceiling = Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** retriesDone);
  return ceiling / 2 + (draw * ceiling) / 2;
}

/** `Retry-After` in milliseconds (seconds, or an HTTP date), or undefined when absent or
 * not valid. */
export function retryAfterMs(value: string | null | undefined, nowMs: number): number | undefined {
  const text = (value ?? "").trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP date (IMF-fixdate); anything else (negative, fractional, junk) is no answer.
  if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text)) return undefined;
  const when = Date.parse(text);
  if (Number.isNaN(when)) return undefined;
  return Math.max(0, when - nowMs);
}

/** Milliseconds to wait before sending again after an answer, or undefined to take it. */
export function afterAnswer(
  policy: RetryPolicy,
  repeatable: boolean,
  status: number,
  retryAfter: string | null,
  retriesDone: number,
  draw: number,
  nowMs: number,
): number | undefined {
  if (retriesDone >= policy.maxRetries) return undefined;
  if (!RETRY_ALWAYS.has(status) && !(RETRY_IF_REPEATABLE.has(status) && repeatable)) {
    return undefined;
  }
  const asked = retryAfterMs(retryAfter, nowMs);
  if (asked === undefined) return backoff(policy, retriesDone, draw);
  return asked <= policy.maxRetryAfterMs ? asked : undefined;
}

/** Milliseconds to wait before sending again after a failure, or undefined to give up. */
export function afterFailure(
  policy: RetryPolicy,
  repeatable: boolean,
  kind: FailureKind,
  retriesDone: number,
  draw: number,
): number | undefined {
  if (retriesDone >= policy.maxRetries) return undefined;
  if (kind === "not_sent" || repeatable) return backoff(policy, retriesDone, draw);
  return undefined;
}
