/** `Passthru`: the client of the passthru API. Each method builds one request (or a few)
 * and reads its answer: `requests.ts` turns arguments into requests and checks answers'
 * shapes, `options.ts` reads the options, `transport.ts` sends and `retry.ts` decides the
 * retries. */

import { CallTimeout, PassthruError } from "./errors.js";
import {
  DEFAULT_TIMEOUT_MS,
  DEFAULT_WAIT_FOR_MS,
  MAX_WAIT_S,
  positiveWhole,
  retryPolicy,
  type AccountFilters,
  type ConnectOptions,
  type ConnectSessionOptions,
  type GetCallOptions,
  type InvokeOptions,
  type ListFunctionsOptions,
  type PassthruOptions,
  type RequestOptions,
  type UpdateAccountOptions,
  type WaitForOptions,
} from "./options.js";
import {
  A_CALL,
  LIST,
  STRINGS,
  isDone,
  pageWalk,
  path,
  seconds,
  submissionPrefer,
  toQuery,
  userHeader,
  type Page,
  type Shape,
} from "./requests.js";
import { DEFAULT_MAX_RESPONSE_BYTES, exchange, sleep, type ApiRequest, type Transport } from "./transport.js";
import type {
  AccountPage,
  Batch,
  BatchCall,
  BatchResult,
  CallFilters,
  CallPage,
  ConnectedAccount,
  ConnectSession,
  Delivery,
  FunctionCall,
  FunctionInfo,
  PassthroughParams,
  WebhookEndpoint,
} from "./types.js";
import { VERSION } from "./version.js";

/** A wait the API cut short is asked again after this pause, doubling up to the most. */
const POLL_PAUSE_MS = 250;
const MAX_POLL_PAUSE_MS = 2_000;

export class Passthru {
  readonly baseUrl: string;
  readonly userId: string | undefined;
  private readonly transport: Transport;
  private readonly clock: () => number;

  constructor(options: PassthruOptions) {
    const apiKey = options?.apiKey?.trim();
    if (!apiKey) throw new TypeError("apiKey is required (the tenant's API key, 'pt_...')");
    // Never repeated in the message: it is a secret.
    if (!/^[\x21-\x7e]+$/.test(apiKey)) throw new TypeError("apiKey holds a character an API key never has (a space, a line break)");
    if (options.userId) userHeader(options.userId);
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") {
      throw new TypeError("no fetch: use Node 18 or newer, or pass options.fetch");
    }
    this.baseUrl = (options.baseUrl ?? "http://localhost:8000").replace(/\/+$/, "");
    this.userId = options.userId;
    this.clock = options.clock ?? (() => performance.now());
    this.transport = {
      baseUrl: this.baseUrl,
      fetch: fetchImpl,
      headers: {
        Authorization: `Bearer ${apiKey}`,
        Accept: "application/json",
        "User-Agent": `passthru-client-js/${VERSION} node/${globalThis.process?.version ?? "unknown"}`,
      },
      timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      maxResponseBytes: positiveWhole("maxResponseBytes", options.maxResponseBytes, DEFAULT_MAX_RESPONSE_BYTES),
      policy: retryPolicy(options.retries),
      sleep: options.sleep ?? sleep,
      random: options.random ?? Math.random,
      now: Date.now,
    };
  }

  /** Send `request`; its decoded answer, once `shape` finds it is the API's (else a
   * PassthruError `invalid_response`, rather than an undefined met later). */
  private async send<T>(request: ApiRequest, shape?: Shape): Promise<T> {
    const answer = (await exchange(this.transport, request)) as Record<string, unknown> | undefined;
    const wrong = shape?.(answer);
    if (wrong !== undefined) {
      throw new PassthruError("invalid_response", [
        {
          field: "body",
          message: `the answer to ${request.method} ${request.path} is not the API's (${wrong}); check that baseUrl is passthru's`,
        },
      ]);
    }
    return answer as T;
  }

  private user(userId: string | undefined): Record<string, string> {
    const user = userId ?? this.userId;
    return user ? userHeader(user) : {};
  }

  // Function calls

  /**
   * Invoke a function such as "slack-passthrough-request" with `params`
   * (`{method, url, body?, headers?}`), as the end user. Resolves to the call:
   * `{id, status, network_code, output, headers}` once it has ended, or the call as it stands
   * (`queued`, ...) when it has not (check `status`, or `isDone(call)`). Rejects with a
   * PassthruError (`status`, `error`, `error_details`) when the API will not run it.
   */
  invokeFunction(name: string, params: PassthroughParams | Record<string, unknown>, options?: InvokeOptions): Promise<FunctionCall>;
  invokeFunction(
    name: string,
    params: PassthroughParams | Record<string, unknown>,
    connectedAccountId?: string | null,
    options?: InvokeOptions,
  ): Promise<FunctionCall>;
  async invokeFunction(
    name: string,
    params: PassthroughParams | Record<string, unknown>,
    accountOrOptions?: string | null | InvokeOptions,
    maybeOptions: InvokeOptions = {},
  ): Promise<FunctionCall> {
    const [connectedAccountId, options] =
      typeof accountOrOptions === "object" && accountOrOptions !== null
        ? [undefined, accountOrOptions]
        : [accountOrOptions ?? undefined, maybeOptions];
    const { wait, idempotencyKey, userId, callbackUrl, signal } = options;
    if (wait !== undefined && !(wait >= 0)) throw new RangeError("wait must be 0 or more seconds");
    const started = this.clock();
    const body: Record<string, unknown> = { function: name, params };
    if (connectedAccountId !== undefined) body.connected_account_id = connectedAccountId;
    if (callbackUrl !== undefined) body.callback_url = callbackUrl;
    const headers = this.user(userId);
    if (idempotencyKey !== undefined) headers["Idempotency-Key"] = idempotencyKey;
    const { prefer, heldMs } = submissionPrefer(wait);
    if (prefer !== undefined) headers.Prefer = prefer;
    const call = await this.send<FunctionCall>(
      { method: "POST", path: "/function-calls", json: body, headers, longPollMs: heldMs, signal },
      A_CALL,
    );
    if (wait && !isDone(call)) {
      // A wait beyond what one request may hold goes on by long-polling.
      const leftMs = wait * 1000 - (this.clock() - started);
      if (leftMs > 0) return this.poll(call.id, leftMs, call, false, signal);
    }
    return call;
  }

  /** One call, with every attempt; `wait` long-polls up to that many seconds (max 60) for
   * its end. */
  async getCall(id: string, options: GetCallOptions = {}): Promise<FunctionCall> {
    const wait = options.wait ? Math.min(options.wait, MAX_WAIT_S) : 0;
    return this.send<FunctionCall>({
      method: "GET",
      path: path("function-calls", id),
      query: wait > 0 ? { wait: seconds(wait) } : {},
      longPollMs: wait * 1000,
      signal: options.signal,
    }, A_CALL);
  }

  /** The call once it is final (completed, failed or cancelled), long-polling in chunks of
   * at most 60 s; rejects with CallTimeout after `timeoutMs` (default 60 s). */
  async waitFor(id: string, options: WaitForOptions = {}): Promise<FunctionCall> {
    return this.poll(id, options.timeoutMs ?? DEFAULT_WAIT_FOR_MS, undefined, true, options.signal);
  }

  private async poll(
    id: string,
    timeoutMs: number,
    last: FunctionCall | undefined,
    rejectOnTimeout: boolean,
    signal: AbortSignal | undefined,
  ): Promise<FunctionCall> {
    const deadline = this.clock() + timeoutMs;
    let call = last ?? (await this.getCall(id, { wait: timeoutMs / 1000, signal }));
    let pauseMs = POLL_PAUSE_MS;
    while (!isDone(call)) {
      const leftMs = deadline - this.clock();
      if (leftMs <= 0) {
        if (rejectOnTimeout) throw new CallTimeout(id, timeoutMs, call);
        break;
      }
      const askedAt = this.clock();
      call = await this.getCall(id, { wait: leftMs / 1000, signal });
      if (!isDone(call) && this.clock() - askedAt < Math.min(leftMs, MAX_WAIT_S * 1000) / 2) {
        // The API held the wait for less than asked (its PASSTHRU_MAX_WAIT_S may be short):
        // pause before asking again, rather than ask in a tight loop.
        await this.transport.sleep(Math.min(pauseMs, Math.max(0, deadline - this.clock())), signal);
        pauseMs = Math.min(pauseMs * 2, MAX_POLL_PAUSE_MS);
      }
    }
    return call;
  }

  /** Cancel a call that has not started (queued or retrying); Conflict otherwise. */
  async cancel(id: string, options: RequestOptions = {}): Promise<FunctionCall> {
    return this.send({ method: "POST", path: path("function-calls", id, "cancel"), signal: options.signal }, A_CALL);
  }

  /** One page of the Function Calls log, newest first (see `iterCalls`). */
  async listCalls(filters: CallFilters = {}, options: RequestOptions & { cursor?: string } = {}): Promise<CallPage> {
    const query = toQuery(filters);
    if (options.cursor) query.cursor = options.cursor;
    return this.send({ method: "GET", path: "/function-calls", query, signal: options.signal }, LIST("items"));
  }

  /** Every call of the log matching `filters`, newest first, following the cursor page
   * after page: `for await (const call of pt.iterCalls({ app: "slack" })) ...`. */
  async *iterCalls(filters: CallFilters = {}, options: RequestOptions = {}): AsyncGenerator<FunctionCall, void, undefined> {
    yield* this.pages((cursor) => this.listCalls(filters, { ...options, ...(cursor ? { cursor } : {}) }));
  }

  /** The items of every page `read` gives, following `next_cursor` to the last. */
  private async *pages<T>(read: (cursor: string | undefined) => Promise<Page<T>>): AsyncGenerator<T, void, undefined> {
    let cursor: string | undefined;
    const next = pageWalk();
    do {
      const page = await read(cursor);
      yield* page.items ?? [];
      cursor = next(page.next_cursor);
    } while (cursor);
  }

  // Batches

  /** Submit up to 1,000 calls at once (each in the `POST /function-calls` form); each is
   * accepted or rejected on its own. Never re-sent once the API may have acted on it. */
  async batch(calls: BatchCall[], options: RequestOptions & { userId?: string } = {}): Promise<BatchResult> {
    return this.send({
      method: "POST",
      path: "/function-calls/batch",
      json: { calls },
      headers: this.user(options.userId),
      signal: options.signal,
    });
  }

  /** A batch's progress: its calls counted per status, and whether all are done. */
  async getBatch(id: string, options: RequestOptions = {}): Promise<Batch> {
    return this.send({ method: "GET", path: path("batches", id), signal: options.signal }, STRINGS("id"));
  }

  // Connected accounts

  /** Store an end user's credentials for `app` (encrypted; never shown again). */
  async connectAccount(app: string, credentials: Record<string, unknown>, options: ConnectOptions = {}): Promise<ConnectedAccount> {
    const body: Record<string, unknown> = { app, credentials };
    if (options.connectionConfig !== undefined) body.connection_config = options.connectionConfig;
    return this.send({
      method: "POST",
      path: "/connected-accounts",
      json: body,
      headers: this.user(options.userId),
      signal: options.signal,
    }, STRINGS("id"));
  }

  /**
   * A single-use link (valid 10 minutes) for an end user to connect `app` themselves: OAuth2,
   * or the API key or password they type. Their browser then goes to `redirectUrl` with
   * `connected_account_id` and `app` (or `error` and `error_description`).
   */
  async createConnectSession(app: string, redirectUrl: string, options: ConnectSessionOptions = {}): Promise<ConnectSession> {
    const body: Record<string, unknown> = { app, redirect_url: redirectUrl };
    if (options.scopes !== undefined) body.scopes = options.scopes;
    if (options.connectionConfig !== undefined) body.connection_config = options.connectionConfig;
    if (options.connectedAccountId !== undefined) body.connected_account_id = options.connectedAccountId;
    return this.send({
      method: "POST",
      path: "/connect-sessions",
      json: body,
      headers: this.user(options.userId),
      signal: options.signal,
    }, STRINGS("id", "url"));
  }

  /** Every connected account matching `filters` (app, user, status), newest first: the
   * API's pages (`pageSize` each) read to the last. */
  async listAccounts(filters: AccountFilters = {}, options: RequestOptions = {}): Promise<ConnectedAccount[]> {
    const accounts: ConnectedAccount[] = [];
    for await (const account of this.iterAccounts(filters, options)) accounts.push(account);
    return accounts;
  }

  /** `listAccounts` one page at a time, following the cursor:
   * `for await (const account of pt.iterAccounts({ app: "slack" })) ...`. */
  async *iterAccounts(filters: AccountFilters = {}, options: RequestOptions = {}): AsyncGenerator<ConnectedAccount, void, undefined> {
    yield* this.pages((cursor) => this.listAccountsPage(filters, { ...options, ...(cursor ? { cursor } : {}) }));
  }

  /** One page of the connected accounts, newest first (see `iterAccounts`). */
  async listAccountsPage(filters: AccountFilters = {}, options: RequestOptions & { cursor?: string } = {}): Promise<AccountPage> {
    const query = toQuery(filters);
    if (options.cursor) query.cursor = options.cursor;
    return this.send({ method: "GET", path: "/connected-accounts", query, signal: options.signal }, LIST("items"));
  }

  /** New credentials (which also clear `needs_reauth`), config, or status. */
  async updateAccount(id: string, options: UpdateAccountOptions): Promise<ConnectedAccount> {
    const body: Record<string, unknown> = {};
    if (options.credentials !== undefined) body.credentials = options.credentials;
    if (options.connectionConfig !== undefined) body.connection_config = options.connectionConfig;
    if (options.status !== undefined) body.status = options.status;
    return this.send({ method: "PATCH", path: path("connected-accounts", id), json: body, signal: options.signal }, STRINGS("id"));
  }

  /** Remove a connected account. */
  async deleteAccount(id: string, options: RequestOptions = {}): Promise<void> {
    await this.send({ method: "DELETE", path: path("connected-accounts", id), signal: options.signal });
  }

  // Catalog and limits

  /** The functions that can be invoked, with their parameters' JSON Schema; `category` and
   * `q` narrow them as `GET /functions` does. */
  async listFunctions(type: string | null = "passthrough", options: ListFunctionsOptions = {}): Promise<FunctionInfo[]> {
    const data = await this.send<{ functions?: FunctionInfo[] }>({
      method: "GET",
      path: "/functions",
      query: toQuery({ type, category: options.category, q: options.q }),
      signal: options.signal,
    }, LIST("functions"));
    return data.functions ?? [];
  }

  /** Your accounts' rate limits, their use and pauses (`GET /rate-limits`): every page of
   * accounts (`pageSize` each) read, their `items` in one list; `as_of` and `tenant_cap` as
   * the first page read them. */
  async rateLimits(options: RequestOptions & { pageSize?: number } = {}): Promise<Record<string, unknown>> {
    let merged: Record<string, unknown> | undefined;
    const items: unknown[] = [];
    let cursor: string | undefined;
    const next = pageWalk();
    do {
      const query = toQuery({ pageSize: options.pageSize, cursor });
      const page = await this.send<Record<string, unknown> & Page<unknown>>({
        method: "GET",
        path: "/rate-limits",
        query,
        signal: options.signal,
      }, LIST("items"));
      merged ??= page;
      items.push(...(page.items ?? []));
      cursor = next(page.next_cursor);
    } while (cursor);
    return { ...merged, items, next_cursor: null };
  }

  // Webhooks

  /** Set (or, with null, clear) the tenant's default webhook URL, and enable the endpoint
   * again if a 410 disabled it. The first time, `secret` holds the `whsec_...` signing
   * secret: store it, it is never shown again. A PUT: safe to retry. */
  async setWebhookEndpoint(url: string | null, options: RequestOptions = {}): Promise<WebhookEndpoint> {
    return this.send({ method: "PUT", path: "/webhook-endpoint", json: { url }, signal: options.signal });
  }

  /** The tenant's webhook endpoint, without its secret; NotFound if none was set. */
  async getWebhookEndpoint(options: RequestOptions = {}): Promise<WebhookEndpoint> {
    return this.send({ method: "GET", path: "/webhook-endpoint", signal: options.signal });
  }

  /** A new signing secret, in `secret` (shown once); the old one still signs for 24 hours. */
  async rotateWebhookSecret(options: RequestOptions = {}): Promise<WebhookEndpoint> {
    return this.send({ method: "POST", path: "/webhook-endpoint/rotate-secret", signal: options.signal });
  }

  /** The webhook deliveries of a call, oldest first, each with every attempt. */
  async listDeliveries(callId: string, options: RequestOptions = {}): Promise<Delivery[]> {
    const data = await this.send<{ items?: Delivery[] }>({
      method: "GET",
      path: path("function-calls", callId, "deliveries"),
      signal: options.signal,
    }, LIST("items"));
    return data.items ?? [];
  }

  /** Send a finished call's webhook again, with the same `webhook-id`. */
  async redeliver(callId: string, options: RequestOptions = {}): Promise<void> {
    await this.send({ method: "POST", path: path("function-calls", callId, "redeliver"), signal: options.signal });
  }
}
