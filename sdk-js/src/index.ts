/**
 * passthru-client: the JavaScript/TypeScript SDK of the passthru API.
 *
 * ```js
 * import { Passthru } from "passthru-client";
 * const pt = new Passthru({ apiKey, baseUrl, userId });
 * const result = await pt.invokeFunction("slack-passthrough-request",
 *   { method: "GET", url: "https://slack.com/api/conversations.list?limit=2" }, undefined, { wait: 10 });
 * console.log(result.network_code, result.output);
 * ```
 */

export { Passthru } from "./client.js";
export {
  DEFAULT_TIMEOUT_MS,
  DEFAULT_WAIT_FOR_MS,
  MAX_WAIT_S,
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
export { isDone } from "./requests.js";
export {
  APIConnectionError,
  AuthenticationError,
  BadRequest,
  CallTimeout,
  Conflict,
  NotFound,
  PassthruError,
  PermissionDenied,
  RateLimited,
  ServerError,
  WebhookVerificationError,
} from "./errors.js";
export { DEFAULT_RETRY_POLICY, type RetryPolicy } from "./retry.js";
export {
  FINAL_STATUSES,
  type AccountPage,
  type Attempt,
  type Batch,
  type BatchCall,
  type BatchResult,
  type CallFilters,
  type CallPage,
  type CallStatus,
  type ConnectedAccount,
  type ConnectSession,
  type Delivery,
  type DeliveryAttempt,
  type ErrorDetail,
  type FilterValue,
  type FunctionCall,
  type FunctionInfo,
  type PassthroughParams,
  type WebhookEndpoint,
} from "./types.js";
export { VERSION } from "./version.js";
export {
  DEFAULT_TOLERANCE_S,
  signWebhook,
  verifyWebhook,
  type VerifyOptions,
  type WebhookHeaders,
  type WebhookPayload,
} from "./webhooks.js";
