"use strict";
// Shared by the console's pages: requests with the console's CSRF header, safe DOM building
// (text only: nothing received is ever parsed as HTML), the live stream.
const Console = (() => {
  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { "X-Console": "1" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.status === 401) { location.assign("/console/login"); }
    return { ok: response.ok, status: response.status, data };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value; else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function duration(seconds) {
    const s = Math.floor(seconds || 0);
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, "0")}`;
  }

  function talking(call) {
    const who = [];
    if (call.caller_talking) who.push("caller");
    if (call.agent_talking) who.push("agent");
    return who.length ? who.join(" + ") : "–";
  }

  function latency(call) {
    if (call.uplink_ms === undefined) return "–";
    return `${Math.round(call.uplink_ms)} / ${Math.round(call.downlink_ms)} ms`;
  }

  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleTimeString();
  }

  // The live stream (server-sent events); EventSource reconnects by itself.
  function live(path, handlers) {
    const state = document.getElementById("link-state");
    const source = new EventSource(path);
    source.onopen = () => { if (state) state.textContent = "Live"; };
    source.onerror = () => { if (state) state.textContent = "Reconnecting…"; };
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => fn(JSON.parse(event.data)));
    }
    return source;
  }

  function transferred(d) {
    // A transfer's target, mode and outcome: "to sip:600@pbx (warm: bridged)".
    const how = [d.mode, d.outcome].filter(Boolean).join(": ");
    return ` to ${d.target}` + (how ? ` (${how})` : "");
  }

  function describe(message) {
    // One line for an event of a call: a hooks event or a notable log line.
    if (message.type) {
      const d = message.data || {};
      const extra = message.type === "call.tool" ? ` ${d.name} (${d.ok ? "ok" : "failed"}, ${d.ms} ms)`
        : message.type === "call.transferred" ? transferred(d)
        : message.type === "call.ended" ? ` (${d.reason})`
        : message.type === "call.started" ? ` from ${d.caller} to ${d.dialed}` : "";
      return message.type + extra;
    }
    const f = message.fields || {};
    const names = {
      "call.barge_in": () => `barge-in: the caller cut the agent off after ${f.heard_ms} ms`,
      "call.dtmf": () => `key ${f.digit}`,
      "call.dtmf_to_model": () => `keys to the agent: ${f.entry || f.digits || ""}`,
      "realtime.reconnected": () => "Realtime session reconnected",
      "realtime.rolled_over": () => "Realtime session rolled over",
    };
    const line = names[message.name];
    return line ? line() : `${message.name} ${Object.entries(f).map(([k, v]) => `${k}=${v}`).join(" ")}`;
  }

  function wireLogout() {
    const button = document.getElementById("logout");
    if (!button) return;
    button.addEventListener("click", async () => {
      await api("POST", "/console/logout");
      location.assign("/console/login");
    });
  }

  document.addEventListener("DOMContentLoaded", wireLogout);
  return { api, el, duration, talking, latency, clock, live, describe };
})();
