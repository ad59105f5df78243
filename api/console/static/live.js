// Live updates for the console's log and call pages, without reloading them.
//
// A page that can change carries data-live-every (milliseconds) on its <main>, and marks
// the parts that can change with data-live-part and an id. While the page shows something
// unfinished (an element with data-final="0"), it fetches its own URL again every
// data-live-every ms and puts in place only the parts, and the table rows, that changed:
// a filter being typed, the focus and the scroll position are left alone. With nothing
// unfinished, it stops, or (data-live-idle) looks again every data-live-idle ms, which the
// log's first page does so new calls appear, and the last hour's charts so the hour moves
// on. A hidden tab does not poll.
"use strict";
(() => {
  const main = document.querySelector("main[data-live-every]");
  if (!main) return;
  const every = Number(main.dataset.liveEvery);
  const idle = Number(main.dataset.liveIdle || 0);
  const status = document.getElementById("live-status");
  let timer = null;
  let failures = 0;

  const say = (text) => {
    if (status) {
      status.hidden = false;
      status.textContent = text;
    }
  };
  const unfinished = () => document.querySelector('[data-final="0"]') !== null;

  const schedule = () => {
    clearTimeout(timer);
    timer = null;
    if (document.hidden) return;
    if (failures > 0) {
      timer = setTimeout(tick, Math.min(30000, every * 2 ** failures));
    } else if (unfinished()) {
      say(`Live: this page updates every ${every / 1000} s while a call shown is unfinished.`);
      timer = setTimeout(tick, every);
    } else if (idle > 0) {
      say(`Live: this page looks again every ${idle / 1000} s.`);
      timer = setTimeout(tick, idle);
    } else {
      say("Everything shown has ended; this page no longer updates.");
    }
  };

  // Rows are matched by id; a row that did not change keeps its node (and any focus on it).
  const swapRows = (current, fresh) => {
    const kept = new Map([...current.rows].map((row) => [row.id, row]));
    const rows = [...fresh.rows].map((row) => {
      const old = kept.get(row.id);
      return old && old.outerHTML === row.outerHTML ? old : document.importNode(row, true);
    });
    const same = rows.length === current.rows.length && rows.every((r, i) => r === current.rows[i]);
    if (!same) current.replaceChildren(...rows);
  };

  const swapPart = (fresh) => {
    const current = document.getElementById(fresh.id);
    if (!current || current.outerHTML === fresh.outerHTML) return;
    const oldBody = current.querySelector("tbody");
    const newBody = fresh.querySelector("tbody");
    if (oldBody && newBody && current.dataset.livePart === "rows") {
      swapRows(oldBody, newBody);
    } else {
      const replacement = document.importNode(fresh, true);
      // A table of numbers someone opened stays open.
      current.querySelectorAll("details[open][id]").forEach((opened) => {
        replacement.querySelector(`#${CSS.escape(opened.id)}`)?.setAttribute("open", "");
      });
      current.replaceWith(replacement);
    }
  };

  const tick = async () => {
    try {
      const answer = await fetch(location.href, { cache: "no-store", credentials: "same-origin" });
      if (answer.redirected || answer.status === 401) {
        say("Live updates stopped: you are signed out. Reload the page to sign in again.");
        return;
      }
      if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      page.querySelectorAll("[data-live-part]").forEach(swapPart);
      failures = 0;
    } catch (error) {
      failures += 1;
      say(`Live updates paused (${error.message}); trying again.`);
    }
    schedule();
  };

  document.addEventListener("visibilitychange", () => (document.hidden ? schedule() : tick()));
  schedule();
})();
