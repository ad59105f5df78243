/** What a `Passthru` and each of its methods take: the options, checked where a wrong one
 * would fail later, and the defaults. */

import { DEFAULT_RETRY_POLICY, type RetryPolicy } from "./retry.js";
import type { FilterValue } from "./types.js";

/** The longest the API holds a request open (`Prefer: wait` and `?wait=`), in seconds. */
export const MAX_WAIT_S = 60;
/** Each request's timeout unless `timeoutMs` is given (a long poll gets its wait added). */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** How long `waitFor` waits unless `timeoutMs` is given. */
export const DEFAULT_WAIT_FOR_MS = 60_000;
export interface PassthruOptions {
  /** The tenant's API key ("pt_..."). */
  apiKey: string;
  /** The API's origin; default "http://localhost:8000". */
  baseUrl?: string;
  /** The default end user (the `X-User-ID` header), overridable per method. */
  userId?: string;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** How many times a request may be sent again (default 3); 0 or false: never. An object
   * sets the backoff too. */
  retries?: number | false | Partial<RetryPolicy>;
  /** Each request's timeout in milliseconds (default 30 s; a long poll gets its wait added). */
  timeoutMs?: number;
  /** The most of one answer read, in bytes once decoded (default 128 MiB): a longer answer
   * rejects with a PassthruError `response_too_large`. */
  maxResponseBytes?: number;
  /** Replaces the wait between retries (tests). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Replaces Math.random, the backoff's jitter (tests). */
  random?: () => number;
  /** Replaces the monotonic clock, in milliseconds, that bounds waits (tests). */
  clock?: () => number;
}

export interface RequestOptions {
  /** Aborts the request (and its retries); the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface InvokeOptions extends RequestOptions {
  /** Seconds to wait for the call's end. Without it, the server's default applies (an
   * immediate `queued` answer unless the operator set PASSTHRU_DEFAULT_WAIT_S); 0 answers at
   * once (`Prefer: respond-async`); up to 60 s is waited in the request itself
   * (`Prefer: wait=N`), longer by long-polling. */
  wait?: number;
  /** Makes the submission idempotent, and so safe to retry after an unknown outcome. It also
   * tells passthru the call is safe to send twice: a POST or PATCH whose first attempt may
   * have arrived is sent again. The key is not forwarded; where the upstream dedupes on a
   * header of its own, put that header in the params' `headers`. */
  idempotencyKey?: string;
  /** The end user, instead of the client's `userId`. */
  userId?: string;
  /** Where passthru POSTs the call's result, signed (Standard Webhooks). */
  callbackUrl?: string;
}

export interface ListFunctionsOptions extends RequestOptions {
  /** Only the apps of this category (e.g. "crm"). */
  category?: string;
  /** Only the apps whose name, title or category holds this text. */
  q?: string;
}

export interface GetCallOptions extends RequestOptions {
  /** Seconds to long-poll for the call's end (at most 60). */
  wait?: number;
}

export interface WaitForOptions extends RequestOptions {
  /** How long to wait for the call's end, in milliseconds (default 60 s). */
  timeoutMs?: number;
}

export interface ConnectOptions extends RequestOptions {
  connectionConfig?: Record<string, unknown>;
  userId?: string;
}

export interface ConnectSessionOptions extends RequestOptions {
  /** The end user (else the client's `userId`). */
  userId?: string;
  /** Scopes to ask for instead of the app's own (OAuth2 apps). */
  scopes?: string[];
  connectionConfig?: Record<string, unknown>;
  /** Reconnect this account (one in `needs_reauth`). */
  connectedAccountId?: string;
}

export interface UpdateAccountOptions extends RequestOptions {
  credentials?: Record<string, unknown>;
  connectionConfig?: Record<string, unknown>;
  status?: "active" | "disabled" | string;
}

export interface AccountFilters {
  app?: string;
  userId?: string;
  status?: string;
  /** How many accounts each page holds (the API's `limit`: 100 unless given, at most 500). */
  pageSize?: number;
  [name: string]: FilterValue;
}

export function positiveWhole(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw new RangeError(`${name} must be a whole number above 0`);
  }
  return value;
}

export function retryPolicy(retries: PassthruOptions["retries"]): RetryPolicy {
  if (retries === false) return { ...DEFAULT_RETRY_POLICY, maxRetries: 0 };
  if (typeof retries === "number") {
    if (!Number.isInteger(retries) || retries < 0) {
      throw new RangeError("retries must be a whole number, 0 or more (or false)");
    }
    return { ...DEFAULT_RETRY_POLICY, maxRetries: retries };
  }
  const policy = { ...DEFAULT_RETRY_POLICY };
  for (const [name, value] of Object.entries(retries ?? {})) {
    if (value === undefined) continue;
    if (!(name in DEFAULT_RETRY_POLICY)) throw new RangeError(`retries.${name} is not a retry setting`);
    const whole = name === "maxRetries";
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || (whole && !Number.isInteger(value))) {
      throw new RangeError(`retries.${name} must be a ${whole ? "whole " : ""}number, 0 or more`);
    }
    policy[name as keyof RetryPolicy] = value;
  }
  return policy;
}
