"use strict";
// A call's page: its figures and meters, its transcript and events as they happen, actions.
(() => {
  const { el, api, duration, latency, describe, clock } = Console;
  const id = new URLSearchParams(location.search).get("id") || "";
  const base = `/console/v1/calls/${encodeURIComponent(id)}`;
  const $ = (name) => document.getElementById(name);
  const result = $("action-result");
  $("call-id").textContent = id;
  document.title = `Call ${id} · Gateway console`;
  let ended = false;

  function set(name, value) {
    const node = $(name);
    if (node.textContent !== String(value)) node.textContent = value;
  }

  function figures(call) {
    if (!call) {
      if (!ended) set("f-state", "ended");
      return;
    }
    set("f-caller", call.caller || "(unknown)");
    set("f-dialed", call.dialed || "");
    set("f-profile", call.profile || "–");
    set("f-state", call.state);
    set("f-duration", duration(call.duration_s));
    set("f-loss", call.loss_pct === undefined ? "–" : `${call.loss_pct} %`);
    set("f-latency", latency(call));
    const levels = call.levels || { caller: 0, agent: 0 };
    for (const side of ["caller", "agent"]) {
      const meter = $(`meter-${side}`);
      meter.value = levels[side];
      meter.textContent = `${Math.round(levels[side] * 100)} %`;
      set(`talk-${side}`, call[`${side}_talking`] ? "talking" : "");
    }
  }

  function turn(line) {
    const role = line.role === "caller" ? "Caller" : "Agent";
    const item = el("li", { class: `turn ${line.role}` },
      el("span", { class: "who" }, role), " ",
      el("span", { class: "when" }, clock(line.at)), " ",
      el("span", { class: "text" }, line.text || ""),
      line.interrupted ? el("span", { class: "cut" }, " (cut off)") : null);
    $("transcript").append(item);
  }

  function happened(message) {
    $("events").prepend(el("li", {}, el("span", { class: "when" }, clock(new Date().toISOString())), " ", describe(message)));
    if (message.type === "call.ended") {
      ended = true;
      set("f-state", `ended (${(message.data || {}).reason})`);
    }
  }

  Console.live(`/console/events?call=${encodeURIComponent(id)}`, {
    stats: (m) => figures(m.calls[0]),
    turn,
    event: happened,
    log: happened,
  });

  async function act(label, path, body) {
    result.textContent = `${label}…`;
    const answer = await api("POST", `${base}${path}`, body);
    const detail = answer.data && answer.data.detail ? answer.data.detail : `HTTP ${answer.status}`;
    result.textContent = `${label}: ${answer.ok ? "" : "refused: "}${detail}`;
  }

  $("hangup").addEventListener("click", () => act("Hang up", "/hangup"));
  $("say-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act("Say", "/say", { text: $("say-text").value, mode: $("say-mode").value });
  });
  $("transfer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act("Transfer", "/transfer", { target: $("transfer-target").value });
  });

  const listenButton = $("listen");
  listenButton.addEventListener("click", async () => {
    if (ListenIn.active()) {
      ListenIn.stop();
    } else {
      await ListenIn.start(`${base}/listen`, $("listen-state"));
    }
    listenButton.setAttribute("aria-pressed", String(ListenIn.active()));
    listenButton.textContent = ListenIn.active() ? "Stop listening" : "Listen in";
  });
})();
