// The rtclone page: enrol a voice (record the microphone, or choose a recording or voice file), type text, hear it streamed.
// Speaks protocol v1 (docs/PROTOCOL.md) over a WebSocket on the page's own host. Audio arrives
// as PCM16 frames and plays through the "pcm-player" AudioWorklet (see worklet.js).
// URL parameters: token=... (server token); auto=1&seconds=N&text=... runs record → enrol →
// speak unattended (used by the headless browser test). window.rtclone holds the page state.
"use strict";

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const state = { status: "loading", voiceId: null, enrolled: null, received: 0, chunks: 0, ttfa: null,
                done: null, errors: [], underruns: 0, played: 0, recordedSeconds: 0 };
window.rtclone = state;

let ws = null;
let playCtx = null; // 16 kHz context for playback
let player = null;
let current = null; // id of the stream whose audio we play
let started = false; // its "start" has arrived (earlier binary frames belong to a replaced stream)
let sentAt = 0;
let requestNo = 0;
const waiters = {}; // request id -> {resolve, reject}

function setStatus(s) {
  state.status = s;
  document.body.dataset.status = s;
  $("#status").textContent = s;
}

function send(msg) { ws.send(JSON.stringify(Object.assign({ v: 1 }, msg))); }
function nextId() { requestNo += 1; return "p" + requestNo; }
function request(msg) {
  return new Promise((resolve, reject) => { waiters[msg.id] = { resolve, reject }; send(msg); });
}
function settle(msg, ok) {
  const w = waiters[msg.id];
  if (!w) return;
  delete waiters[msg.id];
  ok ? w.resolve(msg) : w.reject(new Error(msg.code + ": " + msg.message));
}

async function ensurePlayer() {
  if (!playCtx) {
    playCtx = new AudioContext({ sampleRate: 16000 });
    await playCtx.audioWorklet.addModule("worklet.js");
    player = new AudioWorkletNode(playCtx, "pcm-player", { outputChannelCount: [1],
      processorOptions: { prebuffer: 1600 } });
    player.port.onmessage = (e) => { state.played = e.data.played; state.underruns = e.data.underruns; };
    player.connect(playCtx.destination);
  }
  if (playCtx.state === "suspended") await playCtx.resume();
}

function connect() {
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const token = params.get("token");
    ws = new WebSocket(scheme + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : ""));
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => onMessage(ev, resolve);
    ws.onerror = () => reject(new Error("cannot connect"));
    ws.onclose = (ev) => setStatus("disconnected (" + ev.code + ")");
  });
}

function onAudio(buf) {
  if (current === null || !started) return; // audio of a stream we cancelled or replaced
  const pcm = new Int16Array(buf);
  const f32 = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) f32[i] = pcm[i] / 32767;
  if (state.ttfa === null) state.ttfa = (performance.now() - sentAt) / 1000;
  state.received += pcm.length;
  state.chunks += 1;
  player.port.postMessage(f32, [f32.buffer]);
}

function onMessage(ev, onWelcome) {
  if (typeof ev.data !== "string") return onAudio(ev.data);
  const msg = JSON.parse(ev.data);
  switch (msg.type) {
    case "welcome": setStatus(msg.ready ? "connected" : "connected (engine loading)"); onWelcome(msg); break;
    case "voices": showVoices(msg.voices); settle(msg, true); break;
    case "enrolled": state.voiceId = msg.voice_id; state.enrolled = msg; settle(msg, true); break;
    case "deleted": settle(msg, true); break;
    case "queued": setStatus("queued (position " + msg.position + ")"); break;
    case "start": if (msg.id === current) { started = true; setStatus("streaming"); } break;
    case "progress":
      if (msg.id === current) $("#stats").textContent = msg.audio_s.toFixed(2) + " s of audio so far"; break;
    case "done":
      if (msg.id !== current) break;
      state.done = msg;
      player.port.postMessage("end");
      $("#stats").textContent = "time to first audio " + (state.ttfa * 1000).toFixed(0) + " ms (server "
        + (msg.ttfa_s * 1000).toFixed(0) + " ms), RTF " + msg.rtf + ", " + msg.audio_s.toFixed(2) + " s";
      setStatus("done");
      break;
    case "cancelled": if (msg.id === current) { current = null; setStatus("stopped"); } break;
    case "error":
      state.errors.push(msg.code);
      setStatus("error: " + msg.code + ": " + msg.message);
      settle(msg, false);
      break;
  }
}

function showVoices(voices) {
  const sel = $("#voice");
  sel.innerHTML = "";
  for (const v of voices) {
    const opt = document.createElement("option");
    opt.value = v.voice_id;
    opt.textContent = v.name + " (" + v.duration_s.toFixed(1) + " s, " + v.voice_id + ")";
    sel.appendChild(opt);
  }
  if (state.voiceId) sel.value = state.voiceId;
}

// ---- recording -----------------------------------------------------------------------------------
function wavBytes(samples, rate) {
  const buf = new ArrayBuffer(44 + samples.length * 2);
  const dv = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) dv.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); dv.setUint32(4, 36 + samples.length * 2, true); str(8, "WAVE");
  str(12, "fmt "); dv.setUint32(16, 16, true); dv.setUint16(20, 1, true); dv.setUint16(22, 1, true);
  dv.setUint32(24, rate, true); dv.setUint32(28, rate * 2, true); dv.setUint16(32, 2, true);
  dv.setUint16(34, 16, true); str(36, "data"); dv.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    dv.setInt16(44 + 2 * i, Math.round(s * 32767), true);
  }
  return new Uint8Array(buf);
}

// Record the microphone until stop() resolves (or `seconds` pass); returns {samples, rate}.
async function record(seconds, stopSignal) {
  const media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1,
    echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const ctx = new AudioContext(); // the device rate; the server resamples
  await ctx.audioWorklet.addModule("worklet.js");
  const src = ctx.createMediaStreamSource(media);
  const rec = new AudioWorkletNode(ctx, "pcm-recorder");
  const mute = ctx.createGain();
  mute.gain.value = 0;
  const parts = [];
  let total = 0;
  rec.port.onmessage = (e) => {
    parts.push(e.data);
    total += e.data.length;
    let peak = 0;
    for (const x of e.data) peak = Math.max(peak, Math.abs(x));
    $("#meter > div").style.width = Math.min(100, peak * 140) + "%";
    state.recordedSeconds = total / ctx.sampleRate;
    $("#recinfo").textContent = state.recordedSeconds.toFixed(1) + " s recorded";
  };
  src.connect(rec).connect(mute).connect(ctx.destination);
  setStatus("recording");
  await Promise.race([new Promise((r) => setTimeout(r, seconds * 1000)), stopSignal]);
  media.getTracks().forEach((t) => t.stop());
  await ctx.close();
  const samples = new Float32Array(total);
  let o = 0;
  for (const p of parts) { samples.set(p, o); o += p.length; }
  return { samples, rate: ctx.sampleRate };
}

async function enrol(samples, rate, name) {
  return enrolBytes(wavBytes(samples, rate), name);
}

// any file the server reads: a recording (wav, flac, mp3, ...) or a voice file (`rtclone embed`)
async function enrolBytes(data, name) {
  const id = nextId();
  const reply = request({ type: "enrol", id, name, size: data.length });
  for (let i = 0; i < data.length; i += 256 * 1024) ws.send(data.subarray(i, i + 256 * 1024));
  setStatus("enrolling");
  const msg = await reply;
  setStatus("enrolled " + msg.voice_id);
  await request({ type: "list_voices", id: nextId() });
  return msg.voice_id;
}

// ---- speaking ------------------------------------------------------------------------------------
async function speak(text, voiceId) {
  await ensurePlayer();
  player.port.postMessage("reset"); // barge-in: drop what is still queued
  current = nextId();
  started = false;
  Object.assign(state, { received: 0, chunks: 0, ttfa: null, done: null });
  sentAt = performance.now();
  send({ type: "synth", id: current, voice_id: voiceId, text });
}

function stop() {
  if (current !== null) send({ type: "cancel", id: current });
  if (player) player.port.postMessage("reset");
}

// ---- wiring --------------------------------------------------------------------------------------
let stopRecording = null;
$("#rec").onclick = async () => {
  $("#rec").disabled = true;
  $("#recstop").disabled = false;
  const stopped = new Promise((r) => { stopRecording = r; });
  try {
    const { samples, rate } = await record(60, stopped);
    await enrol(samples, rate, $("#name").value);
  } catch (e) { setStatus("error: " + e.message); }
  $("#rec").disabled = false;
  $("#recstop").disabled = true;
};
$("#recstop").onclick = () => stopRecording && stopRecording();
$("#upload").onclick = async () => {
  const file = $("#file").files[0];
  if (!file) { setStatus("error: choose a file first"); return; }
  try { await enrolBytes(new Uint8Array(await file.arrayBuffer()), $("#name").value); }
  catch (e) { setStatus("error: " + e.message); }
};
$("#speak").onclick = () => speak($("#text").value, $("#voice").value || state.voiceId);
$("#stop").onclick = stop;
$("#delete").onclick = async () => {
  const id = $("#voice").value;
  if (!id) return;
  await request({ type: "delete_voice", id: nextId(), voice_id: id });
  await request({ type: "list_voices", id: nextId() });
};

async function main() {
  await connect();
  await request({ type: "list_voices", id: nextId() });
  if (params.get("auto") === "1") {
    const seconds = parseFloat(params.get("seconds") || "3");
    const { samples, rate } = await record(seconds, new Promise(() => {}));
    const voiceId = await enrol(samples, rate, params.get("name") || "browser");
    await speak(params.get("text") || "Hello from the browser.", voiceId);
  }
}
main().catch((e) => setStatus("error: " + e.message));
