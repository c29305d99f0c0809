// edgekd webpad, line mode: write a string on the wide pad, POST it as a PNG to /api/read (with the optional
// pattern), show the string with each character's confidence and position, and the latency.
"use strict";
(function () {
  const canvas = document.getElementById("pad");
  const textEl = document.getElementById("text");
  const confEl = document.getElementById("confidence");
  const charsEl = document.getElementById("chars");
  const marksEl = document.getElementById("marks");
  const latencyEl = document.getElementById("latency");
  const errorEl = document.getElementById("error");
  const patternEl = document.getElementById("pattern");
  const pad = window.EdgekdPad(canvas, { strokeShare: 1 / 12, idleMs: 400, onIdle: read });

  function reset() {
    pad.clear();
    textEl.replaceChildren("?");
    textEl.dataset.state = "empty";
    confEl.textContent = "";
    charsEl.replaceChildren();
    marksEl.replaceChildren();
    latencyEl.textContent = "";
    showError("");
  }

  function showError(msg) {
    errorEl.textContent = msg;
    errorEl.hidden = !msg;
  }

  function level(p) {  // colour band of a character's probability
    return p >= 0.9 ? "high" : p >= 0.6 ? "mid" : "low";
  }

  function percent(p) {
    return (100 * p).toFixed(1) + "%";
  }

  function charRow(c) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = c.char;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = percent(c.probability);
    bar.append(fill);
    const prob = document.createElement("span");
    prob.className = "prob";
    prob.textContent = percent(c.probability);
    li.append(name, bar, prob);
    li.dataset.level = level(c.probability);
    return li;
  }

  function mark(c) {  // the character under where it was written (x0..x1 in the pad's pixels)
    const m = document.createElement("span");
    m.textContent = c.char;
    m.dataset.level = level(c.probability);
    m.style.left = (100 * c.x0 / canvas.width).toFixed(2) + "%";
    m.style.width = (100 * (c.x1 - c.x0) / canvas.width).toFixed(2) + "%";
    return m;
  }

  function render(res, roundTripMs) {
    textEl.replaceChildren(...res.characters.map((c) => {
      const s = document.createElement("span");
      s.textContent = c.char;
      s.dataset.level = level(c.probability);
      s.title = `${c.char}: ${percent(c.probability)}`;
      return s;
    }));
    if (!res.characters.length) textEl.textContent = "(empty)";
    textEl.dataset.state = "ok";
    confEl.textContent = `confidence ${percent(res.confidence)}` + (res.pattern ? ` · pattern ${res.pattern}` : "");
    charsEl.replaceChildren(...res.characters.map(charRow));
    marksEl.replaceChildren(...res.characters.map(mark));
    latencyEl.textContent = `inference ${res.latency_ms.toFixed(2)} ms · preprocess ${res.preprocess_ms.toFixed(1)} ` +
      `ms · server ${res.server_ms.toFixed(1)} ms · round trip ${roundTripMs.toFixed(0)} ms`;
    showError("");
  }

  async function read() {
    if (!pad.isInked()) { showError("Write a line of digits first."); return; }
    const pattern = patternEl.value.trim();
    const url = "api/read" + (pattern ? "?pattern=" + encodeURIComponent(pattern) : "");
    await pad.ask(url, render, showError);
  }

  document.getElementById("clear").addEventListener("click", reset);
  document.getElementById("read").addEventListener("click", read);
  patternEl.addEventListener("keydown", (ev) => {  // Enter re-reads the line with the new pattern
    if (ev.key === "Enter" && pad.isInked()) read();
  });
  reset();
  window.edgekdLoadInfo();
})();
