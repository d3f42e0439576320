"use strict";
// The live list: rows from each stats snapshot (a few a second), events as they happen.
(() => {
  const { el, duration, talking, latency, describe, clock } = Console;
  const body = document.querySelector("#calls tbody");
  const empty = document.getElementById("empty");
  const count = document.getElementById("count");
  const events = document.getElementById("events");
  const rows = new Map();
  const MAX_EVENTS = 50;

  function row(call) {
    let tr = rows.get(call.id);
    if (!tr) {
      tr = el("tr", { "data-call": call.id });
      for (let i = 0; i < 8; i++) tr.append(el("td"));
      const link = el("a", { href: `/console/call?id=${encodeURIComponent(call.id)}` });
      tr.cells[0].append(link);
      body.append(tr);
      rows.set(call.id, tr);
    }
    const cells = tr.cells;
    cells[0].firstChild.textContent = call.caller || "(unknown)";
    const values = [null, call.dialed, call.profile || "–", call.state, duration(call.duration_s),
      talking(call), call.loss_pct === undefined ? "–" : `${call.loss_pct} %`, latency(call)];
    values.forEach((v, i) => { if (i > 0 && cells[i].textContent !== String(v)) cells[i].textContent = v; });
    return tr;
  }

  function render(calls) {
    const seen = new Set();
    for (const call of calls) { row(call); seen.add(call.id); }
    for (const [id, tr] of rows) if (!seen.has(id)) { tr.remove(); rows.delete(id); }
    update();
  }

  function update() {
    count.textContent = `(${rows.size})`;
    empty.hidden = rows.size > 0;
  }

  function note(message) {
    const item = el("li", {}, el("span", { class: "when" }, clock(new Date().toISOString())), " ",
      message.call_id ? el("a", { href: `/console/call?id=${encodeURIComponent(message.call_id)}` }, message.call_id) : null,
      " ", describe(message));
    events.prepend(item);
    while (events.children.length > MAX_EVENTS) events.lastChild.remove();
  }

  Console.live("/console/events", {
    stats: (m) => render(m.calls),
    event: (m) => {
      note(m);
      const d = m.data || {};
      if (m.type === "call.started" && !rows.has(m.call_id)) {
        row({ id: m.call_id, caller: d.caller, dialed: d.dialed, state: "setting_up", duration_s: 0 });
        update();
      }
    },
    log: note,
  });
})();
