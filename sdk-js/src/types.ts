/**
 * The API's resources, as the API sends them (field names in snake_case, as in the JSON and in
 * the Integry contract: `result.network_code`), and the typed forms of what the SDK sends.
 * Every resource may carry fields added to the API later: they are kept as they come.
 */

/** A call's state: `queued → running → completed | failed`, with `running → retrying →
 * running` and `queued | retrying → cancelled`. */
export type CallStatus = "queued" | "running" | "retrying" | "completed" | "failed" | "cancelled";

/** A call in one of these statuses will not change again. */
export const FINAL_STATUSES: readonly CallStatus[] = ["completed", "failed", "cancelled"];

/** One `{field, message}` pair of an error answer's `error_details`. */
export interface ErrorDetail {
  field: string;
  message: string;
}

/** `params` of a passthrough function: what passthru sends upstream. */
export interface PassthroughParams {
  method: string;
  /** Absolute (on one of the app's hosts) or a path relative to the app's base URL. */
  url: string;
  body?: unknown;
  headers?: Record<string, string>;
  retry?: { max_attempts?: number; on_status?: number[] };
  timeout?: { connect_s?: number; read_s?: number; total_s?: number };
}

/** One attempt of a call at the upstream, with the decision taken after it. */
export interface Attempt {
  number: number;
  started_at: string | null;
  duration_ms: number | null;
  network_code: string | null;
  error: string | null;
  error_message: string | null;
  decision: string;
  rate_wait_ms?: number | null;
  rate_wait_reason?: string | null;
  [field: string]: unknown;
}

/**
 * A call, as a submission or `GET /function-calls/{id}` answers it. The 200 answer of a
 * submission that ended within its wait is the Integry shape plus `id`
 * (`id, status, network_code, output, headers`); `getCall` has every field.
 */
export interface FunctionCall {
  id: string;
  status: CallStatus;
  /** The upstream's HTTP status, as a string ("200"); null until it answered. */
  network_code?: string | null;
  /** The upstream's answer: decoded JSON, text, or `{base64, content_type}`. */
  output?: unknown;
  /** The upstream's response headers (cookies removed). */
  headers?: Record<string, string> | null;
  error?: string | null;
  error_message?: string | null;
  function?: string;
  app?: string;
  method?: string;
  url?: string;
  user_id?: string | null;
  connected_account_id?: string | null;
  batch_id?: string | null;
  output_truncated?: boolean;
  attempt_count?: number;
  next_attempt_at?: string | null;
  attempts?: Attempt[];
  created_at?: string;
  started_at?: string | null;
  finished_at?: string | null;
  [field: string]: unknown;
}

/** One page of the Function Calls log, newest first. */
export interface CallPage {
  items: FunctionCall[];
  next_cursor: string | null;
}

/** One page of the connected accounts, newest first. */
export interface AccountPage {
  items: ConnectedAccount[];
  next_cursor: string | null;
}

/** One call of a batch, in the `POST /function-calls` form. */
export interface BatchCall {
  function: string;
  params: PassthroughParams | Record<string, unknown>;
  connected_account_id?: string;
  callback_url?: string;
  user_id?: string;
}

/** What `POST /function-calls/batch` answered: each call accepted or rejected alone. */
export interface BatchResult {
  batch_id: string;
  accepted: { index: number; id: string }[];
  rejected: { index: number; error: string; error_details: ErrorDetail[] }[];
}

/** A batch's progress: its calls counted per status. */
export interface Batch {
  id: string;
  created_at: string;
  accepted: number;
  rejected: number;
  counts: Record<string, number>;
  finished: number;
  done: boolean;
  [field: string]: unknown;
}

/** An end user's stored account for one app (its credentials are never shown). */
export interface ConnectedAccount {
  id: string;
  app: string;
  user_id: string;
  status: string;
  connection_config?: Record<string, unknown> | null;
  created_at?: string;
  updated_at?: string | null;
  last_used_at?: string | null;
  /** How it was connected: "api" or "connect_page". */
  source?: string;
  [field: string]: unknown;
}

/** A single-use link to send an end user to, to connect an account; it works until `expires_at`. */
export interface ConnectSession {
  id: string;
  url: string;
  expires_at: string;
}

/** A function that can be invoked, with the JSON Schema of its `params`. */
export interface FunctionInfo {
  name: string;
  app: string;
  type: string;
  description: string;
  parameters: Record<string, unknown>;
}

/**
 * The tenant's webhook endpoint. `secret`, the `whsec_...` signing secret, is shown only in
 * the answer that makes it (the first `setWebhookEndpoint`, each `rotateWebhookSecret`).
 */
export interface WebhookEndpoint {
  url: string | null;
  enabled: boolean;
  disabled_at?: string | null;
  disabled_reason?: string | null;
  updated_at?: string | null;
  secret?: string | null;
  [field: string]: unknown;
}

/** One attempt to deliver a webhook. */
export interface DeliveryAttempt {
  number: number;
  started_at: string | null;
  duration_ms: number | null;
  status_code: number | null;
  error: string | null;
  decision: string;
  /** The URL it was for; null when it had none, or made before attempts kept it. */
  url?: string | null;
  [field: string]: unknown;
}

/** A webhook delivery of a call's event; `id` is its stable `webhook-id`. */
export interface Delivery {
  id: string;
  event: string;
  url: string;
  status: "pending" | "delivering" | "succeeded" | "failed";
  attempt_count: number;
  next_attempt_at: string | null;
  created_at: string;
  finished_at: string | null;
  attempts: DeliveryAttempt[];
  [field: string]: unknown;
}

/** A filter value: null and undefined are left out, Dates sent in ISO 8601. */
export type FilterValue = string | number | boolean | Date | null | undefined;

/** The Function Calls log's filters. The camelCase names are sent in the API's snake_case;
 * any other name is sent as it is. */
export interface CallFilters {
  app?: string;
  status?: CallStatus | string;
  userId?: string;
  batchId?: string;
  networkCode?: string;
  since?: Date | string;
  until?: Date | string;
  /** How many calls each page holds (the API's `limit`). */
  pageSize?: number;
  [name: string]: FilterValue;
}
