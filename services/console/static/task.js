"use strict";
// A task's live captions: Server-Sent Events from /console/task/<id>/captions (the task's
// captions stream, as Kaltura's client reads it). The browser's EventSource reconnects by
// itself with the last event id, so nothing is shown twice or missed.

const KEEP = 500; // blocks kept on the page per list
const taskId = decodeURIComponent(location.pathname.split("/")[3] || "");
const counts = { captions: 0, transcript: 0 };

function setState(text, cls) {
  const node = document.getElementById("state");
  node.textContent = text;
  node.className = `freshness ${cls}`;
}

function append(listId, item) {
  const list = document.getElementById(listId);
  const stick = list.lastElementChild === null || window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  list.append(item);
  while (list.childElementCount > KEEP) list.firstElementChild.remove();
  counts[listId] += 1;
  document.getElementById(`${listId}-count`).textContent = String(counts[listId]);
  if (stick) item.scrollIntoView({ block: "end" });
}

function block(c) {
  return el("li", { "data-response": c.id, class: c.type },
    el("span", { class: "times", text: `${mediaTime(c.start)}–${mediaTime(c.end)}` }),
    el("span", { class: "text", text: c.text }));
}

function onCaption(c) {
  if (c.type === "captions") {
    if (c.text) append("captions", block(c));
  } else if (c.final) {
    document.getElementById("partial").textContent = "";
    if (c.text) append("transcript", block(c));
  } else {
    document.getElementById("partial").textContent = c.text;  // the utterance so far
  }
  setState(`live · last at ${clock(c.created)} UTC`, "ok");
}

document.getElementById("title").textContent = `Live captions · task ${taskId}`;

let lastId = "";
let ended = false;

function connect() {
  const from = lastId ? `?from=${encodeURIComponent(lastId)}` : "";
  const source = new EventSource(`/console/task/${encodeURIComponent(taskId)}/captions${from}`);
  source.addEventListener("task", (m) => {
    const t = JSON.parse(m.data);
    const service = t.kind === "translation" ? "translation" : "captions";
    document.getElementById("about").textContent =
      `event ${t.event} · ${service} · ${t.language_code || t.language || "?"}`;
    setState(lastId ? "reconnected" : "connected, waiting for captions", "ok");
  });
  source.addEventListener("caption", (m) => {
    lastId = m.lastEventId || lastId;
    onCaption(JSON.parse(m.data));
  });
  source.addEventListener("problem", (m) => setState(JSON.parse(m.data).message, "bad"));
  source.addEventListener("end", () => {
    ended = true;
    source.close();
    setState("ended: the task's end of stream was sent", "ended");
  });
  source.onerror = async () => {
    if (ended) return;
    if (source.readyState !== EventSource.CLOSED) {
      setState("reconnecting…", "bad");  // the browser retries by itself, from the last id
      return;
    }
    // Refused: signed out (the form), or an unknown task, too many open views, Redis unreachable.
    const reply = await fetch("/console/status.json", { credentials: "same-origin", cache: "no-store" }).catch(() => null);
    if (reply && reply.status === 401) { location.reload(); return; }
    setState("refused (unknown task, too many open views, or Redis unreachable); retrying in 5 s", "bad");
    setTimeout(connect, 5000);
  };
}

connect();
