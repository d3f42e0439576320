"use strict";
// History: ended calls from the call records, searchable; one call's transcript, recording
// and timeline picture.
(() => {
  const { el, api, duration } = Console;
  const $ = (name) => document.getElementById(name);
  const body = document.querySelector("#results tbody");

  async function search(event) {
    if (event) event.preventDefault();
    const query = new URLSearchParams();
    for (const name of ["caller", "dialed", "profile", "date"]) {
      const value = $(`q-${name}`).value.trim();
      if (value) query.set(name, value);
    }
    const answer = await api("GET", `/console/history/search?${query}`);
    body.replaceChildren();
    if (!answer.ok) { $("found").textContent = `Search refused: ${answer.data && answer.data.detail}`; return; }
    const calls = answer.data.calls;
    $("found").textContent = `${calls.length} call${calls.length === 1 ? "" : "s"} found`;
    for (const call of calls) {
      const link = el("a", { href: `#${encodeURIComponent(call.call_id)}`, "data-call": call.call_id },
        new Date(call.received_at).toLocaleString());
      link.addEventListener("click", (e) => { e.preventDefault(); show(call.call_id); });
      body.append(el("tr", { "data-call": call.call_id }, el("td", {}, link), el("td", {}, call.caller),
        el("td", {}, call.dialed), el("td", {}, call.profile || "–"),
        el("td", {}, duration(call.duration_s)), el("td", {}, call.end_reason)));
    }
  }

  async function show(id) {
    const answer = await api("GET", `/console/history/calls/${encodeURIComponent(id)}`);
    if (!answer.ok) return;
    const { record, turns, recording, timeline } = answer.data;
    const base = `/console/history/calls/${encodeURIComponent(id)}`;
    $("detail").hidden = false;
    $("detail-h").textContent = `Call ${id}`;
    const fields = $("detail-fields");
    fields.replaceChildren();
    for (const [label, key] of [["Caller", "caller"], ["Dialed", "dialed"], ["Profile", "profile"],
      ["Received", "received_at"], ["Duration (s)", "duration_s"], ["Ended because", "end_reason"], ["Codec", "codec"]]) {
      fields.append(el("dt", {}, label), el("dd", {}, record[key] === null ? "–" : record[key]));
    }
    const audio = $("recording");
    audio.hidden = !recording;
    $("no-recording").hidden = recording;
    if (recording) audio.src = `${base}/recording.wav`; else audio.removeAttribute("src");
    const picture = $("timeline");
    picture.hidden = !timeline;
    $("no-timeline").hidden = timeline;
    if (timeline) {
      picture.src = `${base}/timeline.svg`;
      picture.alt = `Timeline of call ${id}: speech of both sides, barge-ins, tools and keys`;
    }
    const list = $("detail-transcript");
    list.replaceChildren();
    for (const line of turns) {
      list.append(el("li", { class: `turn ${line.role}` },
        el("span", { class: "who" }, line.role === "caller" ? "Caller" : "Agent"), " ",
        el("span", { class: "when" }, `${line.offset_s} s`), " ",
        el("span", { class: "text" }, line.text || ""),
        line.interrupted ? el("span", { class: "cut" }, " (cut off)") : null));
    }
    $("detail-h").focus();
  }

  $("search").addEventListener("submit", search);
  $("detail-h").tabIndex = -1;
  search();
  if (location.hash.length > 1) show(decodeURIComponent(location.hash.slice(1)));
})();
