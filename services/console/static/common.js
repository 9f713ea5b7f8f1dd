"use strict";
// Helpers shared by the console's pages. Every value from the server goes in as text
// (textContent, setAttribute on inert attributes), never as markup.

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "class") node.className = String(value);
    else if (name === "href") node.setAttribute("href", safeHref(String(value)));
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Links only to this console's own pages (never javascript: or another origin).
function safeHref(value) {
  return value.startsWith("/console/") ? value : "/console/";
}

function pad(n) {
  return String(n).padStart(2, "0");
}

// HH:MM:SS UTC, as `reachlive status` shows times.
function clock(epoch) {
  if (!epoch) return "-";
  const d = new Date(epoch * 1000);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

// 12s, 5m03s, 2h03m, 3d04h (services/console/problems.span).
function span(seconds) {
  if (seconds === null || seconds === undefined) return "?";
  const s = Math.floor(Math.max(0, seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return s < 600 ? `${Math.floor(s / 60)}m${pad(s % 60)}s` : `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${pad(Math.floor((s % 86400) / 3600))}h`;
}

function ago(epoch, now) {
  return epoch ? `${span(now - epoch)} ago` : "never";
}

// Seconds of media → H:MM:SS.s
function mediaTime(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return "?";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = (seconds % 60).toFixed(1).padStart(4, "0");
  return `${h}:${pad(m)}:${s}`;
}
