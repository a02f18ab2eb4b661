// Sluice web UI: progressive enhancement of server-rendered pages.
// Every page works without this script; with it, small forms post in the
// background, a run's page follows the run live over Server-Sent Events,
// and lists refresh when something changes. HTML it inserts comes from the
// server, which escapes every value; nothing here builds markup from data.
"use strict";

(function () {
  function flash(message) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message;
    box.hidden = !message;
  }

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  async function errorText(response) {
    const text = await response.text();
    const doc = new DOMParser().parseFromString(text, "text/html");
    const message = doc.querySelector(".error-message");
    return (message ? message.textContent : text).trim() || response.status + " " + response.statusText;
  }

  // Forms marked data-async post in the background and are replaced by the answer.
  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-async")) return;
    event.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { "X-Requested-With": "fetch" },
        credentials: "same-origin",
      });
      if (!response.ok) {
        flash(await errorText(response));
        if (button) button.disabled = false;
        return;
      }
      flash("");
      const replacement = fragment(await response.text());
      const focusNew = document.activeElement === button;
      const first = replacement.firstElementChild;
      form.replaceWith(replacement);
      if (focusNew && first) {
        const next = first.querySelector("button");
        if (next) next.focus();
      }
    } catch (err) {
      flash("The server could not be reached: " + err.message);
      if (button) button.disabled = false;
    }
  });

  // A run's page: panels and logs follow the run while it runs.
  function followRun(root) {
    let after = Number(root.dataset.after || "-1");
    const url = root.dataset.stream;
    const status = document.getElementById("stream-status");
    const logs = document.querySelector("#logs tbody");
    const scroller = document.getElementById("logs");
    let delay = 250;
    let source = null;
    function setStatus(text) {
      if (status) status.textContent = text;
    }
    function connect() {
      source = new EventSource(url + "?after=" + after);
      source.addEventListener("open", function () {
        delay = 250;
        setStatus("Live");
      });
      source.addEventListener("panels", function (e) {
        const live = document.getElementById("run-live");
        if (live) live.replaceChildren(fragment(e.data));
      });
      source.addEventListener("logs", function (e) {
        if (e.lastEventId) after = Number(e.lastEventId);
        const atBottom = scroller && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
        const empty = document.getElementById("logs-empty");
        if (empty) empty.remove();
        if (logs) logs.append(fragment(e.data));
        if (atBottom && scroller) scroller.scrollTop = scroller.scrollHeight;
      });
      source.addEventListener("end", function () {
        source.close();
        setStatus("Finished");
      });
      source.addEventListener("failure", function (e) {
        source.close();
        setStatus("Stopped");
        flash("Live updates stopped: " + e.data + " Reload the page to try again.");
      });
      source.addEventListener("error", function () {
        // The browser retries by itself while the stream is CONNECTING; a
        // CLOSED one (server gone, or an error answer) is retried here.
        setStatus("Reconnecting…");
        if (source.readyState === EventSource.CLOSED) {
          setTimeout(connect, delay);
          delay = Math.min(delay * 2, 5000);
        }
      });
    }
    connect();
  }

  // Lists (dashboard, deployments, runs) refresh their live region on changes.
  function refreshOnChange(region) {
    let pending = false;
    async function refresh() {
      if (pending) return;
      pending = true;
      try {
        const response = await fetch(location.href, {
          headers: { "X-Requested-With": "fetch" },
          credentials: "same-origin",
        });
        if (!response.ok) return;
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = doc.querySelector("[data-live]");
        const focused = document.activeElement;
        if (fresh && !(focused && region.contains(focused) && focused.matches("input, select, textarea"))) {
          region.replaceChildren(...fresh.childNodes);
        }
      } finally {
        pending = false;
      }
    }
    const source = new EventSource("/ui/events");
    source.addEventListener("change", refresh);
    // Says whether the region follows changes right now (the server subscribes
    // before it answers, so nothing after "open" is missed).
    source.addEventListener("open", function () {
      region.setAttribute("data-connected", "");
    });
    source.addEventListener("error", function () {
      region.removeAttribute("data-connected");
    });
  }

  function start() {
    const run = document.querySelector("[data-stream]");
    if (run) followRun(run);
    const live = document.querySelector("[data-live]");
    if (live) refreshOnChange(live);
    const scroller = document.getElementById("logs");
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
