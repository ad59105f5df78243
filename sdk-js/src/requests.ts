/** How a method's arguments become a request, and how its answer is checked: paths,
 * headers, query parameters, a submission's `Prefer`, the cursors of a walk over pages, and
 * the shapes an answer must have. */

import { PassthruError } from "./errors.js";
import { MAX_WAIT_S } from "./options.js";
import { FINAL_STATUSES, type FilterValue, type FunctionCall } from "./types.js";

/** What a page of a list holds: its items, and the cursor of the next page (null on the last). */
export interface Page<T> {
  items?: T[];
  next_cursor?: string | null;
}

/** Whether a call will not change again. */
export function isDone(call: Pick<FunctionCall, "status">): boolean {
  return FINAL_STATUSES.includes(call.status);
}

/** Seconds as the API reads them: at most three decimals. */
export function seconds(value: number): string {
  return String(Math.round(value * 1000) / 1000);
}

/** The `Prefer` header of a submission and how long (ms) the API may hold it. */
export function submissionPrefer(wait: number | undefined): { prefer?: string; heldMs: number } {
  if (wait === undefined) return { heldMs: MAX_WAIT_S * 1000 };
  if (wait === 0) return { prefer: "respond-async", heldMs: 0 };
  const first = Math.min(wait, MAX_WAIT_S);
  return { prefer: `wait=${seconds(first)}`, heldMs: first * 1000 };
}

const FILTER_NAMES: Record<string, string> = {
  userId: "user_id",
  batchId: "batch_id",
  networkCode: "network_code",
  pageSize: "limit",
};

/** Filters as query parameters: camelCase names in the API's snake_case, null and
 * undefined left out, Dates in ISO 8601. */
export function toQuery(filters: Record<string, FilterValue>): Record<string, string> {
  const query: Record<string, string> = {};
  for (const [name, value] of Object.entries(filters)) {
    if (value === undefined || value === null) continue;
    query[FILTER_NAMES[name] ?? name] = value instanceof Date ? value.toISOString() : String(value);
  }
  return query;
}

export function path(...parts: string[]): string {
  for (const part of parts) {
    // Once the URL is resolved, these would name another resource.
    if (part === "" || part === "." || part === "..") throw new TypeError(`${JSON.stringify(part)} is not an id`);
  }
  return "/" + parts.map((p) => encodeURIComponent(p)).join("/");
}

/** `X-User-ID` as the API reads it: UTF-8 (fetch sends each char of this string as a byte).
 * A control character is refused, without repeating the value. */
export function userHeader(userId: string): Record<string, string> {
  if (/[\u0000-\u001f\u007f]/.test(userId)) {
    throw new TypeError("userId holds a control character (a line break, a tab, ...)");
  }
  const bytes = new TextEncoder().encode(userId);
  return { "X-User-ID": Array.from(bytes, (b) => String.fromCharCode(b)).join("") };
}

/** The cursors one walk over a list has followed: a cursor given twice would loop. */
export function pageWalk(): (cursor: string | null | undefined) => string | undefined {
  const seen = new Set<string>();
  return (cursor) => {
    if (!cursor) return undefined;
    if (seen.has(cursor)) {
      throw new PassthruError("repeated_cursor", [
        { field: "next_cursor", message: "the API gave a cursor it gave before; stopped" },
      ]);
    }
    seen.add(cursor);
    return cursor;
  };
}

/** What an answer must hold to be the API's; a description of what is wrong, else undefined. */
export type Shape = (answer: Record<string, unknown> | undefined) => string | undefined;

export const STRINGS = (...names: string[]): Shape => (answer) => {
  const missing = names.filter((name) => typeof answer?.[name] !== "string");
  return missing.length > 0 ? `no ${missing.join(" or ")} string` : undefined;
};
export const A_CALL = STRINGS("id", "status");
export const LIST = (name: string): Shape => (answer) =>
  answer !== undefined && (answer[name] === undefined || answer[name] === null || Array.isArray(answer[name]))
    ? undefined
    : `${name} is not a list`;
