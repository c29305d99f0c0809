// edgekd webpad: draw on the canvas, POST it as a PNG to /api/predict, show the top-3 and the latency.
"use strict";
(function () {
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d");
  const labelEl = document.getElementById("label");
  const topkEl = document.getElementById("topk");
  const latencyEl = document.getElementById("latency");
  const errorEl = document.getElementById("error");
  let drawing = false, inked = false, last = null, pending = null, inflight = null;

  function reset() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    inked = false;
    labelEl.textContent = "?";
    labelEl.dataset.state = "empty";
    topkEl.replaceChildren();
    latencyEl.textContent = "";
    showError("");
  }

  function showError(msg) {
    errorEl.textContent = msg;
    errorEl.hidden = !msg;
  }

  function point(ev) {  // pointer position in canvas pixels, whatever the CSS size
    const r = pad.getBoundingClientRect();
    return { x: (ev.clientX - r.left) * pad.width / r.width, y: (ev.clientY - r.top) * pad.height / r.height };
  }

  function stroke(a, b) {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = pad.width / 14;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
    inked = true;
  }

  pad.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    pad.setPointerCapture(ev.pointerId);
    drawing = true;
    last = point(ev);
    stroke(last, last);
    clearTimeout(pending);
  });
  pad.addEventListener("pointermove", (ev) => {
    if (!drawing) return;
    const p = point(ev);
    stroke(last, p);
    last = p;
  });
  function end() {
    if (!drawing) return;
    drawing = false;
    clearTimeout(pending);
    pending = setTimeout(predict, 150);  // wait a moment: a digit may have several strokes
  }
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  pad.addEventListener("pointerleave", end);

  function render(res, roundTripMs) {
    labelEl.textContent = res.label;
    labelEl.dataset.state = "ok";
    topkEl.replaceChildren(...res.top_k.map((t) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = t.label;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = (100 * t.probability).toFixed(1) + "%";
      bar.append(fill);
      const prob = document.createElement("span");
      prob.className = "prob";
      prob.textContent = (100 * t.probability).toFixed(1) + "%";
      li.append(name, bar, prob);
      return li;
    }));
    latencyEl.textContent = `inference ${res.latency_ms.toFixed(2)} ms · server ${res.server_ms.toFixed(1)} ms · ` +
      `round trip ${roundTripMs.toFixed(0)} ms`;
    latencyEl.dataset.inferenceMs = String(res.latency_ms);
    showError("");
  }

  async function predict() {
    if (!inked) { showError("Draw a digit first."); return; }
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const t0 = performance.now();
    try {
      const resp = await fetch("api/predict", {
        method: "POST", body: blob, headers: { "Content-Type": "image/png" }, signal: inflight.signal,
      });
      const res = await resp.json();
      if (!resp.ok) { showError(res.error || `HTTP ${resp.status}`); return; }
      render(res, performance.now() - t0);
    } catch (e) {
      if (e.name !== "AbortError") showError("Request failed: " + e.message);
    }
  }

  async function loadInfo() {
    try {
      const info = await (await fetch("api/health")).json();
      const deployed = info.deployed === true ? ", deployed" : info.deployed === false ? ", NOT the deployed one" : "";
      const precision = info.precision ? ` (${info.precision}${deployed})` : "";
      document.getElementById("model").textContent =
        `model ${info.model} · ${info.artifact}${precision} · backend ${info.backend}`;
    } catch (e) {
      document.getElementById("model").textContent = "server unreachable";
    }
  }

  document.getElementById("clear").addEventListener("click", reset);
  document.getElementById("predict").addEventListener("click", predict);
  reset();
  loadInfo();
})();
