// edgekd webpad, digit mode: draw on the pad, POST it as a PNG to /api/predict, show the top-3 and the latency.
"use strict";
(function () {
  const labelEl = document.getElementById("label");
  const topkEl = document.getElementById("topk");
  const latencyEl = document.getElementById("latency");
  const errorEl = document.getElementById("error");
  const pad = window.EdgekdPad(document.getElementById("pad"), { strokeShare: 1 / 14, idleMs: 150, onIdle: predict });

  function reset() {
    pad.clear();
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
    if (!pad.isInked()) { showError("Draw a digit first."); return; }
    await pad.ask("api/predict", render, showError);
  }

  document.getElementById("clear").addEventListener("click", reset);
  document.getElementById("predict").addEventListener("click", predict);
  reset();
  window.edgekdLoadInfo();
})();
