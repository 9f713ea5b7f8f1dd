"use strict";
// The status page: reads /console/status.json (services.console.status.snapshot) every second.

const EVERY_MS = 1000;
let lastOk = 0;

function when(e, now) {
  const w = e.window;
  if (e.phase === "upcoming") return `starts in ${span(w.start - now)} (media from ${clock(w.opens)})`;
  if (e.phase === "live") return now < w.start ? `window open, starts in ${span(w.start - now)}` : `live for ${span(now - w.start)}`;
  if (e.phase === "cancelled") return "cancelled";
  return `ended ${span(now - Math.min(w.closes, now))} ago`;
}

function sessionLine(e, now) {
  const s = e.session || {};
  if (s.replica) {
    const parts = [`relay ${s.replica}`];
    if (s.age_seconds !== null && s.age_seconds !== undefined) parts.push(`session ${span(s.age_seconds)}`);
    if (s.lag_seconds !== null && s.lag_seconds !== undefined) parts.push(`captions ${s.lag_seconds.toFixed(1)} s behind the audio`);
    if (s.retrying_since) parts.push(`reconnecting since ${clock(s.retrying_since)} (${s.retry_cause || "?"})`);
    return parts.join(" · ");
  }
  if (s.queued) return "waiting for a relay to claim the session";
  if (s.finished) return `session over: ${s.outcome || "done"}${s.reason ? ` (${s.reason})` : ""}`;
  return e.media && e.media.open ? "media session open, no relay yet" : "no media session";
}

function table(headers, rows) {
  const head = el("tr", {}, ...headers.map((h) => el("th", { text: h })));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function publishersTable(e) {
  if (!e.publishers.length) return el("p", { class: "muted", text: "no publisher" });
  const rows = e.publishers.map((p) =>
    el("tr", { "data-publisher": p.id },
      el("td", { text: p.role }), el("td", { text: p.task || "-" }), el("td", { text: p.replica || "-" }),
      el("td", { text: p.address || "-" }),
      el("td", { text: p.behind_seconds === null ? "?" : `${p.behind_seconds.toFixed(1)} s` })));
  return table(["publisher", "task", "ingest replica", "address", "audio behind"], rows);
}

function tasksTable(e, now) {
  const rows = e.tasks.map((t) => {
    const lang = t.service === "translation" ? `${t.source_language} → ${t.language}` : t.language;
    const link = el("a", { href: `/console/task/${encodeURIComponent(t.id)}`, "data-task-link": t.id, text: t.id });
    return el("tr", { "data-task": t.id, class: t.error ? "bad" : "" },
      el("td", {}, link), el("td", { text: t.service }), el("td", { text: lang || "-" }),
      el("td", { text: t.status + (t.error ? ` (${t.error})` : "") }),
      el("td", { text: String(t.connections) }), el("td", { text: ago(t.last_caption, now) }));
  });
  return table(["task", "service", "language", "status", "readers", "last caption"], rows);
}

function eventCard(e, now) {
  const w = e.window;
  const card = el("section", { class: `event ${e.phase}${e.problems.length ? " has-problems" : ""}`, "data-event": e.id },
    el("h2", {}, el("span", { class: "id", text: `Event ${e.id}` }), " ",
      el("span", { class: `phase ${e.phase}`, text: e.phase }), " ",
      el("span", { class: "muted", text: `partner ${e.partner_id} · ${when(e, now)} · ${clock(w.start)}–${clock(w.end)} UTC` })),
    el("p", { class: "session", text: sessionLine(e, now) }));
  if (e.problems.length) card.append(el("ul", { class: "problems" }, ...e.problems.map((p) => el("li", { text: p }))));
  card.append(tasksTable(e, now), publishersTable(e));
  return card;
}

const ORDER = { live: 0, upcoming: 1, ended: 2, cancelled: 3 };

function render(snap) {
  const now = snap.now;
  const events = snap.events.slice().sort((a, b) =>
    (b.problems.length > 0) - (a.problems.length > 0) || (ORDER[a.phase] ?? 9) - (ORDER[b.phase] ?? 9) || a.window.start - b.window.start);
  const count = (p) => events.filter((e) => e.phase === p).length;
  document.getElementById("summary").textContent =
    `${count("live")} live · ${count("upcoming")} upcoming · ${count("ended")} ended · gateways ${snap.gateways} · relays ${snap.relays.length}`;
  document.getElementById("problems").replaceChildren(...snap.problems.map((p) => el("li", { text: p })));
  const box = document.getElementById("events");
  if (!events.length) {
    box.replaceChildren(el("p", { class: "muted", text: snap.redis.ok ? "No live or upcoming event (next hour)." : "" }));
  } else {
    box.replaceChildren(...events.map((e) => eventCard(e, now)));
  }
  const fresh = document.getElementById("freshness");
  fresh.textContent = `read ${clock(now)} UTC`;
  fresh.className = snap.redis.ok ? "freshness ok" : "freshness bad";
}

async function tick() {
  try {
    const reply = await fetch("/console/status.json", { credentials: "same-origin", cache: "no-store" });
    if (reply.status === 401) { location.reload(); return; }  // the sign-in form
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    render(await reply.json());
    lastOk = Date.now();
  } catch (err) {
    const fresh = document.getElementById("freshness");
    fresh.textContent = `cannot read the gateway (${err.message}); last read ${lastOk ? span((Date.now() - lastOk) / 1000) + " ago" : "never"}`;
    fresh.className = "freshness bad";
  } finally {
    setTimeout(tick, EVERY_MS);
  }
}

tick();
