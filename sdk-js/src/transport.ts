/**
 * One request to the API and its retries: the only module that calls `fetch` or sleeps.
 *
 * Each attempt runs under its own timeout (`timeoutMs`, plus the time the API may hold a
 * long poll) and under the caller's `AbortSignal`. A caller's abort rejects at once with the
 * signal's reason and is never retried; everything else goes through the retry policy
 * (`retry.ts`).
 */

import { APIConnectionError, PassthruError, errorFromAnswer } from "./errors.js";
import { afterAnswer, afterFailure, isRepeatable, type FailureKind, type RetryPolicy } from "./retry.js";

/** One request, relative to the client's base URL. */
export interface ApiRequest {
  method: string;
  path: string;
  query?: Record<string, string>;
  json?: unknown;
  headers?: Record<string, string>;
  /** How long the API may hold its answer (a long poll), added to the timeout. */
  longPollMs?: number;
  signal?: AbortSignal | undefined;
}

/** What every request of a client shares; `sleep`, `random` and `now` are injectable for tests. */
export interface Transport {
  baseUrl: string;
  fetch: typeof fetch;
  headers: Record<string, string>;
  timeoutMs: number;
  /** The most of one answer read, once decoded: a longer one is `response_too_large`. */
  maxResponseBytes: number;
  policy: RetryPolicy;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  random: () => number;
  /** Wall-clock milliseconds, to read a `Retry-After` given as an HTTP date. */
  now: () => number;
}

/** The most of one answer read unless `maxResponseBytes` says otherwise: a call's output is
 * at most the server's PASSTHRU_MAX_RESPONSE_BYTES (10 MiB by default), which JSON's escapes
 * may make up to six times longer. */
export const DEFAULT_MAX_RESPONSE_BYTES = 128 * 1024 * 1024;

type Outcome =
  | { kind: "answer"; status: number; headers: Record<string, string>; text: string }
  | { kind: "failure"; failure: FailureKind; cause: unknown; timedOut: boolean };

/** Connection errors raised before the request left (Node's codes, as fetch's `cause`). */
const NOT_SENT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
]);

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Whether a fetch error certainly happened before the request was sent. */
export function failureKind(error: unknown): FailureKind {
  const cause = (error as { cause?: unknown } | null)?.cause ?? error;
  const code = errorCode(cause);
  if (code !== undefined) return NOT_SENT_CODES.has(code) ? "not_sent" : "maybe_sent";
  // Several addresses tried, each refused (an AggregateError).
  const errors = (cause as { errors?: unknown } | null)?.errors;
  if (Array.isArray(errors) && errors.length > 0) {
    return errors.every((e) => NOT_SENT_CODES.has(errorCode(e) ?? "")) ? "not_sent" : "maybe_sent";
  }
  return "maybe_sent";
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function url(baseUrl: string, request: ApiRequest): string {
  const query = request.query && Object.keys(request.query).length > 0
    ? `?${new URLSearchParams(request.query).toString()}`
    : "";
  return `${baseUrl}${request.path}${query}`;
}

function tooLarge(request: ApiRequest, status: number, cap: number): PassthruError {
  return new PassthruError(
    "response_too_large",
    [
      {
        field: "body",
        message: `the answer to ${request.method} ${request.path} is over ${cap.toLocaleString("en-US")} bytes: not read further (raise the client's maxResponseBytes if this is expected)`,
      },
    ],
    status,
  );
}

/** The answer's body as text, reading at most `cap` bytes of it (decoded, as fetch gives it). */
async function readCapped(response: Response, cap: number, request: ApiRequest): Promise<string> {
  // A length announced for an encoded body is not the length once decoded.
  const announced = response.headers.has("content-encoding") ? 0 : Number(response.headers.get("content-length") ?? 0);
  if (announced > cap) {
    await response.body?.cancel();
    throw tooLarge(request, response.status, cap);
  }
  if (response.body === null) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > cap) {
      await reader.cancel();
      throw tooLarge(request, response.status, cap);
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return new TextDecoder().decode(body);
}

async function attempt(transport: Transport, request: ApiRequest, headers: Record<string, string>): Promise<Outcome> {
  const { signal } = request;
  signal?.throwIfAborted();
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, transport.timeoutMs + (request.longPollMs ?? 0));
  const onAbort = (): void => controller.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    // A redirect is an answer, never followed: it could take the key and the body elsewhere.
    const init: RequestInit = { method: request.method, headers, signal: controller.signal, redirect: "manual" };
    if (request.json !== undefined) init.body = JSON.stringify(request.json);
    const response = await transport.fetch(url(transport.baseUrl, request), init);
    const text = await readCapped(response, transport.maxResponseBytes, request);
    const answerHeaders: Record<string, string> = {};
    response.headers.forEach((value, name) => {
      answerHeaders[name.toLowerCase()] = value;
    });
    return { kind: "answer", status: response.status, headers: answerHeaders, text };
  } catch (error) {
    if (error instanceof PassthruError) throw error; // an answer too long: never retried
    if (signal?.aborted) throw signal.reason;
    if (timedOut) return { kind: "failure", failure: "maybe_sent", cause: error, timedOut };
    return { kind: "failure", failure: failureKind(error), cause: error, timedOut };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}

function decode(status: number, headers: Record<string, string>, text: string): unknown {
  let body: unknown = text;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      if (status >= 200 && status < 300) {
        throw new PassthruError(
          "invalid_response",
          [{ field: "body", message: `not JSON: ${JSON.stringify(text.slice(0, 200))}` }],
          status,
          { headers, body: text },
        );
      }
    }
  }
  if (status >= 200 && status < 300) {
    if (!text) return undefined;
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new PassthruError(
        "invalid_response",
        [{ field: "body", message: `not a JSON object: ${JSON.stringify(text.slice(0, 200))}` }],
        status,
        { headers, body },
      );
    }
    return body;
  }
  throw errorFromAnswer(status, body, headers);
}

function connectionError(request: ApiRequest, outcome: Extract<Outcome, { kind: "failure" }>, retries: number, repeatable: boolean): APIConnectionError {
  const cause = outcome.cause as { message?: unknown; cause?: { message?: unknown } } | null;
  let message = outcome.timedOut
    ? "timed out"
    : String(cause?.cause?.message ?? cause?.message ?? "no detail");
  if (retries > 0) message += ` (after ${retries} ${retries === 1 ? "retry" : "retries"})`;
  if (outcome.failure === "maybe_sent" && !repeatable) {
    message +=
      "; not retried: the API may have acted on it (give an idempotencyKey to make it safe to retry)";
  }
  return new APIConnectionError(
    "connection_error",
    [{ field: `${request.method} ${request.path}`, message }],
    undefined,
    { cause: outcome.cause },
  );
}

/** Send `request`, retrying under the transport's policy; resolve to the decoded JSON answer
 * (undefined when empty), or reject with a PassthruError. */
export async function exchange(transport: Transport, request: ApiRequest): Promise<unknown> {
  const headers: Record<string, string> = { ...transport.headers, ...request.headers };
  if (request.json !== undefined) headers["Content-Type"] = "application/json";
  const repeatable = isRepeatable(request.method, headers);
  for (let retries = 0; ; retries++) {
    const outcome = await attempt(transport, request, headers);
    let delay: number | undefined;
    if (outcome.kind === "answer") {
      delay = afterAnswer(
        transport.policy,
        repeatable,
        outcome.status,
        outcome.headers["retry-after"] ?? null,
        retries,
        transport.random(),
        transport.now(),
      );
      if (delay === undefined) return decode(outcome.status, outcome.headers, outcome.text);
    } else {
      delay = afterFailure(transport.policy, repeatable, outcome.failure, retries, transport.random());
      if (delay === undefined) throw connectionError(request, outcome, retries, repeatable);
    }
    await transport.sleep(delay, request.signal);
  }
}
