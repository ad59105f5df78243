// A fetch that answers from a script and records every request, so the client is tested
// without a network; and a client wired to it, whose retries never sleep.
import { Passthru } from "passthru-client";

/** A JSON answer. */
export function json(status, body, headers = {}) {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** A connection error as Node's fetch raises it (`code` as in its cause). */
export function netError(code) {
  const cause = Object.assign(new Error(`${code} 127.0.0.1:1`), { code });
  return new TypeError("fetch failed", { cause });
}

/**
 * `replies` are answered in order, one per request: a Response, an Error to throw, or a
 * function of the request returning either. Past the last one, the last repeats.
 */
export function fakeFetch(...replies) {
  const requests = [];
  const fetch = async (url, init = {}) => {
    const headers = new Headers(init.headers);
    const request = {
      url: new URL(url),
      method: init.method ?? "GET",
      headers,
      body: init.body === undefined ? undefined : JSON.parse(init.body),
      signal: init.signal,
    };
    requests.push(request);
    let reply = replies[Math.min(requests.length, replies.length) - 1];
    if (typeof reply === "function") reply = await reply(request);
    if (reply instanceof Error) throw reply;
    return reply.clone();
  };
  return { fetch, requests };
}

/** A fetch that never answers: it rejects only when its signal aborts. */
export function hangingFetch() {
  const requests = [];
  const fetch = (url, init = {}) => {
    requests.push({ url: new URL(url), method: init.method ?? "GET" });
    return new Promise((_, reject) => {
      init.signal.addEventListener("abort", () => reject(init.signal.reason ?? new Error("aborted")));
    });
  };
  return { fetch, requests };
}

/** A client of a fake fetch; `slept` records each wait between retries (none is waited). */
export function client(fetch, options = {}) {
  const slept = [];
  const pt = new Passthru({
    apiKey: "pt_test",
    baseUrl: "http://passthru.test/",
    userId: "user-1",
    fetch,
    sleep: async (ms) => {
      slept.push(ms);
    },
    random: () => 0.5,
    ...options,
  });
  return { pt, slept };
}

/** A clock that moves only when told to. */
export function manualClock(start = 0) {
  let now = start;
  const clock = () => now;
  clock.advance = (ms) => {
    now += ms;
  };
  return clock;
}
