// sched dashboard: progressive enhancement only. Every page works without this file.
"use strict";

// Times marked data-local are shown in the viewer's own time zone, in the same
// "YYYY-MM-DD HH:MM:SS ZONE" form as the server's times.
function localiseTimes(root) {
  const format = new Intl.DateTimeFormat("en-CA", {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23", timeZoneName: "short",
  });
  for (const el of root.querySelectorAll("time[data-local]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) continue;
    const part = Object.fromEntries(format.formatToParts(when).map((p) => [p.type, p.value]));
    el.title = el.textContent;
    el.textContent = `${part.year}-${part.month}-${part.day} ` +
      `${part.hour}:${part.minute}:${part.second} ${part.timeZoneName}`;
  }
}

// A running run's output: fetch what was written after the last offset, append it,
// and reload the page once the run has ended (to show its final state).
function followOutput(pre) {
  const source = pre.dataset.follow;
  let offset = Number(pre.dataset.offset || "0");
  let delay = 500;
  async function poll() {
    let body;
    try {
      const response = await fetch(`${source}?offset=${offset}`, {
        credentials: "same-origin", headers: { "Accept": "application/json" },
      });
      if (response.redirected || !response.ok) {
        setTimeout(poll, 5000);
        return;
      }
      body = await response.json();
    } catch (error) {
      setTimeout(poll, 5000);
      return;
    }
    if (body.data) {
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(document.createTextNode(body.data));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      delay = 500;
    } else {
      delay = Math.min(delay * 1.5, 2000);
    }
    offset = body.next_offset;
    pre.dataset.offset = String(offset);
    const status = document.querySelector("#run-status .chip");
    if (status && status.textContent !== body.status) {
      status.textContent = body.status;
      status.className = `chip s-${body.status}`;
    }
    if (body.finished && !["waiting", "pending", "running"].includes(body.status)) {
      window.location.reload();
      return;
    }
    setTimeout(poll, delay);
  }
  setTimeout(poll, 300);
}

document.addEventListener("DOMContentLoaded", () => {
  localiseTimes(document);
  const pre = document.querySelector("pre[data-follow]");
  if (pre) followOutput(pre);
});
