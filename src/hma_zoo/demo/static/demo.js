// hma_zoo demo page: one websocket to the server, one session per tab (see hma_zoo/demo/app.py).
// The page asks for the next frame when the last one has arrived and the frame interval has passed, so a slow
// machine lowers the frame rate instead of queueing work. FPS = frames received per second (last 2 s);
// latency = the round trip of a step request (median of the last 30).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  ws: null, session: null, models: [], embodiments: [], started: null,
  playing: false, inflight: false, sentAt: 0, lastSend: 0, timer: null, nextId: 1,
  keys: new Set(), action: [], recvTimes: [], latencies: [], recording: false,
};

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

function send(msg) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) { showMessage("not connected to the server; reload the page"); return false; }
  msg.id = state.nextId++;
  state.ws.send(JSON.stringify(msg));
  return true;
}

// ------------------------------------------------------------------ connection
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  state.ws = ws;
  ws.onopen = () => { $("conn").textContent = "connected"; };
  ws.onclose = () => { $("conn").textContent = "disconnected (reload the page)"; stop(); setEnabled(false); };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { showMessage("bad message from the server"); return; }
    (handlers[msg.type] || (() => showMessage(`unexpected message ${msg.type}`)))(msg);
  };
}

const handlers = {
  hello(msg) {
    state.session = msg.session;
    state.models = msg.models;
    $("models").innerHTML = msg.models.map((m) => `<option value="${m}">`).join("");
    $("model").value = msg.default_model;
    $("dl-gif").href = `/recording/${msg.session}/gif`;
    $("dl-mp4").href = `/recording/${msg.session}/mp4`;
    describe();
  },
  model(msg) {
    showMessage("");
    state.embodiments = msg.embodiments;
    $("embodiments").innerHTML = msg.embodiments.map((e) => `<option value="${e.name}">`).join("");
    const names = msg.embodiments.map((e) => e.name);
    if (!names.includes($("embodiment").value)) {
      const withPrompt = msg.embodiments.find((e) => e.prompts.length) || msg.embodiments[0];
      $("embodiment").value = withPrompt ? withPrompt.name : "";
    }
    $("mode-policy").disabled = !msg.policy;
    fillPrompts();
  },
  started(msg) {
    state.started = msg;
    showMessage("");
    buildSliders(msg);
    $("real-fig").hidden = !msg.real;
    $("mode-replay").disabled = !msg.replay;
    $("mode-policy").disabled = !msg.policy;
    if (!msg.replay && currentMode() === "replay") setMode("manual");
    setEnabled(true);
    state.recvTimes = []; state.latencies = [];
    handlers.frame(msg);
    $("note").textContent = `prompt: ${msg.source}` + (msg.frame_hz ? ` · recorded at ${msg.frame_hz} FPS` : "");
  },
  frame(msg) {
    const now = performance.now();
    if (state.inflight && msg.id !== undefined) state.latencies.push(now - state.sentAt);
    if (state.latencies.length > 30) state.latencies.shift();
    state.inflight = false;
    if (msg.step > 0) { state.recvTimes.push(now); } else { state.recvTimes = []; if (state.started) buildSliders(state.started); }
    while (state.recvTimes.length && now - state.recvTimes[0] > 2000) state.recvTimes.shift();
    $("pred").src = msg.image;
    if (msg.real_image) $("real-img").src = msg.real_image;
    $("stepno").textContent = `frame ${msg.step}`;
    $("server").textContent = `step ${msg.server_ms.toFixed(1)} ms`;
    if (msg.action) {
      $("action").textContent = "[" + msg.action.map((x) => x.toFixed(2)).join(", ") + "]";
      if (currentMode() !== "manual") syncSliders(msg.action);
    }
    if (msg.note) $("note").textContent = msg.note;
    updateStats();
    updateRecording(msg.recording, msg.recorded);
    schedule();
  },
  recording(msg) { updateRecording(msg.recording, msg.recorded); },
  error(msg) {
    showMessage(msg.message);
    state.inflight = false;
    if (state.playing) stop();
    if (msg.fatal) { setEnabled(false); $("start").disabled = true; }
  },
};

// ------------------------------------------------------------------ setup
function describe() {
  const model = $("model").value.trim();
  if (model) send({ type: "describe", model });
}

function currentEmbodiment() { return state.embodiments.find((e) => e.name === $("embodiment").value.trim()); }

function fillPrompts() {
  const emb = currentEmbodiment();
  const sel = $("prompt");
  sel.innerHTML = "";
  const prompts = emb ? emb.prompts : [];
  for (const p of prompts) {
    const opt = document.createElement("option");
    opt.value = p;
    opt.textContent = p === "example" ? "built-in example" : p.replace("episode:", "episode ");
    sel.appendChild(opt);
  }
  $("real").disabled = !(emb && emb.real);
  if (!(emb && emb.real)) $("real").checked = false;
  if (emb && !prompts.length && emb.real) $("real").checked = true;
  $("real-note").textContent = emb ? `(${emb.real_note})` : "";
  $("prompt").disabled = $("real").checked;  // the real simulator's first frame is the prompt
}

function start() {
  stop();
  send({
    type: "start", model: $("model").value.trim(), embodiment: $("embodiment").value.trim(),
    prompt: $("prompt").value || "example", real: $("real").checked,
    seed: Number($("seed").value), steps: Number($("steps").value), temperature: Number($("temperature").value),
  });
}

// ------------------------------------------------------------------ actions
function currentMode() { return document.querySelector('input[name="mode"]:checked').value; }
function setMode(m) { document.querySelector(`input[name="mode"][value="${m}"]`).checked = true; }

function buildSliders(msg) {
  const box = $("sliders");
  box.innerHTML = "";
  state.action = msg.neutral.slice();
  for (let i = 0; i < msg.action_dim; i++) {
    const lo = msg.low[i], hi = msg.high[i];
    const label = document.createElement("label");
    const name = msg.action_names[i] || `a${i}`;
    label.innerHTML = `<span>${name}</span><input type="range" id="slider-${i}" min="${lo}" max="${hi}" ` +
      `step="${(hi - lo) / 200}" value="${state.action[i]}"><output id="value-${i}">${state.action[i].toFixed(2)}</output>`;
    box.appendChild(label);
    label.querySelector("input").addEventListener("input", (ev) => {
      state.action[i] = Number(ev.target.value);
      $(`value-${i}`).textContent = state.action[i].toFixed(2);
    });
  }
  $("keyhelp").textContent = msg.control === "position"
    ? "arrow keys move the target (x, y); click the frame to place it"
    : `arrow keys push ${msg.action_dim > 1 ? "the first two action dimensions" : "the action"} to its limits while held`;
}

function syncSliders(values) {
  values.forEach((v, i) => {
    const s = $(`slider-${i}`);
    if (s) { s.value = v; $(`value-${i}`).textContent = Number(v).toFixed(2); }
  });
}

// The action of the next frame: sliders, with the arrow keys held overriding (velocity) or moving (position)
// the first two dimensions.
function actionFromControls() {
  const m = state.started;
  const a = state.action.slice();
  const dirs = [["ArrowLeft", 0, -1], ["ArrowRight", 0, 1], ["ArrowDown", 1, -1], ["ArrowUp", 1, 1]];
  for (const [key, dim, sign] of dirs) {
    if (!state.keys.has(key) || dim >= m.action_dim) continue;
    const lo = m.low[dim], hi = m.high[dim];
    if (m.control === "position") {
      const moveSign = dim === 1 ? -sign : sign; // image y grows downwards: up = smaller y
      state.action[dim] = Math.min(hi, Math.max(lo, state.action[dim] + moveSign * (hi - lo) / 40));
      a[dim] = state.action[dim];
      syncSliders(state.action);
    } else {
      a[dim] = sign > 0 ? hi : lo;
    }
  }
  return a;
}

function step() {
  if (!state.started || state.inflight) return;
  const msg = { type: "step", mode: currentMode() };
  if (msg.mode === "manual") msg.action = actionFromControls();
  state.inflight = true;
  state.sentAt = state.lastSend = performance.now();
  if (!send(msg)) state.inflight = false;
}

// ------------------------------------------------------------------ play loop
function interval() {
  const r = $("rate").value;
  if (r === "max") return 0;
  if (r === "model") return state.started && state.started.frame_hz ? 1000 / state.started.frame_hz : 0;
  return 1000 / Number(r);
}

function schedule() {
  if (!state.playing || state.inflight) return;
  clearTimeout(state.timer);
  const wait = Math.max(0, state.lastSend + interval() - performance.now());
  state.timer = setTimeout(() => { if (state.playing) step(); }, wait);
}

function play() {
  state.playing = true;
  $("play").textContent = "Pause";
  schedule();
}

function stop() {
  state.playing = false;
  clearTimeout(state.timer);
  $("play").textContent = "Play";
}

function updateStats() {
  const t = state.recvTimes;
  let fps = 0;
  if (t.length >= 2) fps = (1000 * (t.length - 1)) / (t[t.length - 1] - t[0]);
  const target = interval() ? ` (target ${(1000 / interval()).toFixed(0)})` : "";
  $("fps").textContent = t.length >= 2 ? `FPS ${fps.toFixed(1)}${target}` : `FPS –${target}`;
  const lat = state.latencies.slice().sort((x, y) => x - y);
  if (lat.length) $("latency").textContent = `latency ${lat[Math.floor(lat.length / 2)].toFixed(0)} ms`;
}

// ------------------------------------------------------------------ recording
function updateRecording(on, n) {
  state.recording = on;
  $("record").textContent = on ? "Stop recording" : "Record";
  $("record").classList.toggle("on", on);
  $("rec-status").textContent = on ? `recording: ${n} frames` : (n ? `${n} frames recorded` : "");
  for (const id of ["dl-gif", "dl-mp4"]) $(id).classList.toggle("disabled", !n || on);
}

// ------------------------------------------------------------------ wiring
function setEnabled(on) {
  for (const id of ["play", "step", "reset", "record"]) $(id).disabled = !on;
}

function isTyping(ev) { return ["INPUT", "SELECT", "TEXTAREA"].includes(ev.target.tagName) && ev.target.type !== "range" && ev.target.type !== "radio" && ev.target.type !== "checkbox"; }

document.addEventListener("keydown", (ev) => {
  if (!ev.key.startsWith("Arrow") || isTyping(ev)) return;
  ev.preventDefault();
  state.keys.add(ev.key);
  document.querySelector(`.key[data-key="${ev.key}"]`)?.classList.add("held");
});
document.addEventListener("keyup", (ev) => {
  state.keys.delete(ev.key);
  document.querySelector(`.key[data-key="${ev.key}"]`)?.classList.remove("held");
});
for (const b of document.querySelectorAll(".key")) {
  const k = b.dataset.key;
  b.addEventListener("pointerdown", () => { state.keys.add(k); b.classList.add("held"); });
  for (const evName of ["pointerup", "pointerleave"]) b.addEventListener(evName, () => { state.keys.delete(k); b.classList.remove("held"); });
}
$("pred").addEventListener("click", (ev) => {  // a position target (Push-T): click where the pusher should go
  const m = state.started;
  if (!m || m.control !== "position" || m.action_dim < 2) return;
  const r = ev.target.getBoundingClientRect();
  state.action[0] = m.low[0] + ((ev.clientX - r.left) / r.width) * (m.high[0] - m.low[0]);
  state.action[1] = m.low[1] + ((ev.clientY - r.top) / r.height) * (m.high[1] - m.low[1]);
  syncSliders(state.action);
});
$("model").addEventListener("change", describe);
$("embodiment").addEventListener("change", fillPrompts);
$("real").addEventListener("change", () => { $("prompt").disabled = $("real").checked; });
$("start").addEventListener("click", start);
$("play").addEventListener("click", () => (state.playing ? stop() : play()));
$("step").addEventListener("click", () => { stop(); step(); });
$("reset").addEventListener("click", () => { stop(); state.inflight = false; send({ type: "reset" }); });
$("rate").addEventListener("change", () => { updateStats(); schedule(); });
$("record").addEventListener("click", () => send({ type: "record", on: !state.recording }));
window.hmaDemo = state; // for tests and the curious
connect();
