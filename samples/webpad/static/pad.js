// edgekd webpad: the drawing pad shared by the digit page (app.js) and the line page (lines.js).
// EdgekdPad(canvas, {strokeShare, idleMs, onIdle}): white strokes on black, drawn with a mouse, pen or finger
// (pointer events); onIdle() runs idleMs after the last stroke ends (a digit or a string has several strokes).
"use strict";
window.EdgekdPad = function (canvas, options) {
  const ctx = canvas.getContext("2d");
  const strokeShare = options.strokeShare;  // pen width as a share of the pad's height
  let drawing = false, inked = false, last = null, pending = null;

  function clear() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    inked = false;
    clearTimeout(pending);
  }

  function point(ev) {  // pointer position in canvas pixels, whatever the CSS size
    const r = canvas.getBoundingClientRect();
    return { x: (ev.clientX - r.left) * canvas.width / r.width, y: (ev.clientY - r.top) * canvas.height / r.height };
  }

  function stroke(a, b) {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = canvas.height * strokeShare;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
    inked = true;
  }

  canvas.addEventListener("pointerdown", (ev) => {
    ev.preventDefault();
    canvas.setPointerCapture(ev.pointerId);
    drawing = true;
    last = point(ev);
    stroke(last, last);
    clearTimeout(pending);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!drawing) return;
    const p = point(ev);
    stroke(last, p);
    last = p;
  });
  function end() {
    if (!drawing) return;
    drawing = false;
    clearTimeout(pending);
    pending = setTimeout(options.onIdle, options.idleMs);
  }
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("pointerleave", end);

  // POST the pad as a PNG to `url`; resolves to {ok, status, json, roundTripMs}; a newer post aborts an older one.
  let inflight = null;
  async function post(url) {
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const t0 = performance.now();
    const resp = await fetch(url, {
      method: "POST", body: blob, headers: { "Content-Type": "image/png" }, signal: inflight.signal,
    });
    const json = await resp.json();
    return { ok: resp.ok, status: resp.status, json: json, roundTripMs: performance.now() - t0 };
  }

  // POST the pad to `url` and hand the answer to render(json, roundTripMs), or its error text to showError; an
  // answer overtaken by a newer post is dropped.
  async function ask(url, render, showError) {
    try {
      const res = await post(url);
      if (!res.ok) { showError(res.json.error || `HTTP ${res.status}`); return; }
      render(res.json, res.roundTripMs);
    } catch (e) {
      if (e.name !== "AbortError") showError("Request failed: " + e.message);
    }
  }

  clear();
  return { clear: clear, post: post, ask: ask, isInked: () => inked };
};

// The model line in the page header, from /api/health.
window.edgekdLoadInfo = async function () {
  const el = document.getElementById("model");
  try {
    const info = await (await fetch("api/health")).json();
    const deployed = info.deployed === true ? ", deployed" : info.deployed === false ? ", NOT the deployed one" : "";
    const precision = info.precision ? ` (${info.precision}${deployed})` : "";
    el.textContent = `model ${info.model} · ${info.artifact}${precision} · backend ${info.backend}`;
    return info;
  } catch (e) {
    el.textContent = "server unreachable";
    return null;
  }
};
