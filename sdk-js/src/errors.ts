/**
 * Every error the SDK rejects with derives from `PassthruError`.
 *
 * ```
 * PassthruError                 error, error_details, status (HTTP, for API answers)
 * ├── BadRequest                400 and 422: the API will not do it (bad params, no account, ...)
 * ├── AuthenticationError       401: missing or wrong API key
 * ├── PermissionDenied          403
 * ├── NotFound                  404: no such call, batch, account or app
 * ├── Conflict                  409: Idempotency-Key reused, call not cancellable, redeliver
 * │                             of a call not finished
 * ├── RateLimited               429 (after the SDK's own retries)
 * ├── ServerError               5xx (after the SDK's own retries)
 * ├── APIConnectionError        the API could not be reached, or did not answer in time
 * ├── CallTimeout               waitFor saw no end in time (`call`: the call as last seen)
 * └── WebhookVerificationError  a webhook's signature, timestamp or body is not valid
 * ```
 *
 * An `AbortSignal` that aborts rejects with the signal's own reason (an `AbortError`), as
 * `fetch` does: it is the caller's decision, not a failure of the API.
 */

import type { ErrorDetail, FunctionCall } from "./types.js";

export class PassthruError extends Error {
  /** The API's error code, e.g. "invalid_params". */
  readonly error: string;
  readonly error_details: ErrorDetail[];
  /** The API's HTTP status, for errors that are API answers. */
  readonly status: number | undefined;
  /** The API answer's headers (lower-case names). */
  readonly headers: Record<string, string>;
  /** The answer's decoded JSON, or its text. */
  readonly body: unknown;

  constructor(
    error: string,
    errorDetails: ErrorDetail[] = [],
    status?: number,
    options: { headers?: Record<string, string>; body?: unknown; cause?: unknown } = {},
  ) {
    super(describe(error, errorDetails, status), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.error = error;
    this.error_details = errorDetails;
    this.status = status;
    this.headers = options.headers ?? {};
    this.body = options.body;
  }
}

function describe(error: string, details: ErrorDetail[], status?: number): string {
  const head = status === undefined ? error : `${error} (HTTP ${status})`;
  if (details.length === 0) return head;
  return `${head}: ${details.map((d) => `${d.field}: ${d.message}`).join("; ")}`;
}

/** 400 (and 422): the request is invalid, or the call cannot be made (see `error_details`). */
export class BadRequest extends PassthruError {}
/** 401: the API key is missing or not valid. */
export class AuthenticationError extends PassthruError {}
/** 403. */
export class PermissionDenied extends PassthruError {}
/** 404: no such resource for this tenant (or no such app, or no webhook endpoint yet). */
export class NotFound extends PassthruError {}
/** 409: an Idempotency-Key reused for another request, a call that can no longer be
 * cancelled, or a redelivery of a call that has not finished. */
export class Conflict extends PassthruError {}
/** 429: too many requests, after the SDK's own retries. */
export class RateLimited extends PassthruError {}
/** 5xx: the API failed, after the SDK's own retries. */
export class ServerError extends PassthruError {}
/** The API could not be reached, the connection failed or the request timed out (after the
 * SDK's own retries where retrying was safe). `cause` is fetch's error. */
export class APIConnectionError extends PassthruError {}

/** `waitFor` gave up: the call was not final when the timeout passed. It goes on running on
 * the server; `call` is the call as last seen. */
export class CallTimeout extends PassthruError {
  readonly callId: string;
  readonly timeoutMs: number;
  readonly call: FunctionCall | undefined;

  constructor(callId: string, timeoutMs: number, call?: FunctionCall) {
    const status = call?.status ?? "unknown";
    super("call_timeout", [
      { field: "id", message: `call ${callId} is still ${status} after ${timeoutMs} ms of waiting` },
    ]);
    this.callId = callId;
    this.timeoutMs = timeoutMs;
    this.call = call;
  }
}

/** A webhook could not be verified: a header is missing or malformed, the timestamp is
 * outside the tolerance, no signature matches, or the body is not a JSON object. */
export class WebhookVerificationError extends PassthruError {
  constructor(message: string) {
    super("webhook_verification_failed", [{ field: "webhook", message }]);
  }
}

const BY_STATUS: Record<number, typeof PassthruError> = {
  400: BadRequest,
  401: AuthenticationError,
  403: PermissionDenied,
  404: NotFound,
  409: Conflict,
  422: BadRequest,
  429: RateLimited,
};

function errorClass(status: number): typeof PassthruError {
  return BY_STATUS[status] ?? (status >= 500 ? ServerError : PassthruError);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The error for an API answer outside 2xx; `body` is its decoded JSON or its text. */
export function errorFromAnswer(
  status: number,
  body: unknown,
  headers: Record<string, string>,
): PassthruError {
  let error = `http_${status}`;
  const details: ErrorDetail[] = [];
  if (isRecord(body) && typeof body.error === "string") {
    error = body.error;
    const items = Array.isArray(body.error_details) ? body.error_details : [];
    for (const item of items) {
      if (isRecord(item)) {
        details.push({ field: String(item.field ?? ""), message: String(item.message ?? "") });
      }
    }
  } else if (typeof body === "string" && body.trim()) {
    details.push({ field: "body", message: body.trim().slice(0, 300) });
  }
  const Class = errorClass(status);
  return new Class(error, details, status, { headers, body });
}
