// roomcast console (GET /console): lists pushes, starts, stops and switches them, and plays
// what the local room receives. It calls the public API like any client. Every value shown
// comes from the API or the person and goes into the page through textContent only.
// (A module: strict mode, and loaded after the page is parsed.)

import { playWhep } from "./whep.js";

// Polling rather than the SSE endpoint: EventSource cannot send an Authorization header, and
// one listing call covers every push at once (the events endpoint is per push).
const POLL_MS = 1500;
const HLS_RETRY_MS = 2000;
const KEY_STORE = "roomcast.apiKey"; // sessionStorage: gone when the tab closes
const FINAL = new Set(["succeeded", "failed", "stopped"]);

const $ = (id) => document.getElementById(id);
const els = {
  conn: $("conn"),
  keyForm: $("key-form"),
  key: $("api-key"),
  keyForget: $("key-forget"),
  form: $("start-form"),
  startResult: $("start-result"),
  rows: document.querySelector("#pushes tbody"),
  noPushes: $("no-pushes"),
  stats: $("stats"),
  playerPanel: $("player-panel"),
  playerTitle: $("player-title"),
  video: $("player"),
  playerMessage: $("player-message"),
  previewLink: $("preview-link"),
};
const previewBase = document.querySelector('meta[name="roomcast-preview-url"]').content;
const whipBase = document.querySelector('meta[name="roomcast-whip-preview-url"]').content;

let apiKey = sessionStorage.getItem(KEY_STORE) || "";
const rows = new Map(); // request id -> { tr, cells, push }
let watched = null; // { id, hls, whep, timer }

// --- the API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.Error) || {};
    super(err.Message || `HTTP ${status}`);
    this.status = status;
    this.code = err.Code || String(status);
    this.field = err.Field || null;
  }
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  let data = null;
  try {
    data = await resp.json();
  } catch (_err) {
    // A proxy's HTML error page, say: the status tells enough.
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

// --- small DOM helpers (no innerHTML anywhere) ---------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  const total = Math.max(0, Math.floor(s));
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), sec = total % 60;
  const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
}

function setConn(text, isError = false) {
  setText(els.conn, text);
  els.conn.classList.toggle("error", isError);
}

// --- API key --------------------------------------------------------------------------------

els.key.value = apiKey;
els.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = els.key.value.trim();
  if (apiKey) sessionStorage.setItem(KEY_STORE, apiKey);
  else sessionStorage.removeItem(KEY_STORE);
  poll();
});
els.keyForget.addEventListener("click", () => {
  apiKey = "";
  els.key.value = "";
  sessionStorage.removeItem(KEY_STORE);
  poll();
});

// --- the list of pushes ----------------------------------------------------------------------

function roomOf(push) {
  const room = push.Room || {};
  return room.RtmpRoom || room.StrRoomId || String(room.RoomId ?? "");
}

// Where a push's picture can be watched: the room's HLS, or the WHIP ingest's WHEP for a push
// with "Whip": "trtc" (another endpoint's pushes: nowhere here).
function previewOf(push) {
  if (push.Whip) return push.Whip === "trtc" ? whipBase : "";
  return previewBase;
}

function makeRow(id) {
  const cells = {
    state: el("span", { class: "state" }),
    id: el("code", { text: id.slice(0, 8), title: id }),
    created: el("div", { class: "muted" }),
    room: el("div"),
    user: el("div", { class: "muted" }),
    source: el("div", { class: "source" }),
    clip: el("div", { class: "muted source" }),
    bar: el("progress", { max: "1", value: "0" }),
    progress: el("div", { class: "muted" }),
    note: el("div"),
    actions: el("div", { class: "actions" }),
  };
  const stop = el("button", { type: "button", class: "stop", text: "Stop" });
  stop.addEventListener("click", () => stopPush(id, stop));
  const watch = el("button", { type: "button", class: "watch", text: "Watch" });
  watch.addEventListener("click", () => startWatching(rows.get(id).push));
  const switchUrl = el("input", {
    type: "url", class: "switch-url", placeholder: "switch to URL", "aria-label": "switch to URL",
  });
  const switchWhen = el("select", { class: "switch-when", "aria-label": "when" },
    el("option", { value: "now", text: "now" }), el("option", { value: "end", text: "at end" }));
  const switchForm = el("form", { class: "switch" }, switchUrl, switchWhen,
    el("button", { type: "submit", text: "Switch" }));
  switchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    switchClip(id, switchUrl, switchWhen.value);
  });
  // A fan-out push's rooms: each with its state and a remove button, and a form to add one.
  const targetList = el("ul", { class: "targets" });
  const targetRoom = el("input", { class: "target-room", placeholder: "room", "aria-label": "room to add" });
  const targetUser = el("input", { class: "target-user", placeholder: "user id", "aria-label": "its user id" });
  const targetSig = el("input", {
    type: "password", class: "target-sig", placeholder: "UserSig", "aria-label": "its UserSig",
    autocomplete: "off",
  });
  const targetForm = el("form", { class: "target-add" }, targetRoom, targetUser, targetSig,
    el("button", { type: "submit", text: "Add room" }));
  targetForm.addEventListener("submit", (event) => {
    event.preventDefault();
    addTarget(id, targetRoom, targetUser, targetSig);
  });
  cells.actions.append(stop, watch, switchForm, targetList, targetForm);
  Object.assign(cells, { stop, watch, switchForm, targetList, targetForm });
  const tr = el("tr", { "data-request-id": id },
    el("td", {}, cells.state),
    el("td", {}, cells.id, cells.created),
    el("td", {}, cells.room, cells.user),
    el("td", {}, cells.source, cells.clip),
    el("td", {}, cells.bar, cells.progress),
    el("td", {}, cells.note),
    el("td", {}, cells.actions));
  return { tr, cells, push: null, message: null };
}

function updateRow(row, push) {
  row.push = push;
  const c = row.cells;
  const state = push.State;
  row.tr.dataset.state = state;
  setText(c.state, state);
  c.state.className = `state state-${state}`;
  setText(c.created, push.CreatedAt ? new Date(push.CreatedAt).toLocaleTimeString() : "");
  setText(c.room, `${roomOf(push)} · ${push.Mode}` + (push.Whip ? ` · WHIP ${push.Whip}` : ""));
  setText(c.user, `${push.UserId} · app ${push.SdkAppId}`);
  setText(c.source, push.VideoSrc || "");
  c.source.title = push.VideoSrc || "";
  const p = push.Progress || {};
  // Only a switchable push reports a Player (the status has no Switchable field).
  const switchable = Boolean(p.Player);
  const clip = switchable && p.Player.Clip;
  setText(c.clip, clip ? `playing clip ${clip.Index + 1}: ${clip.VideoSrc}` : "");
  const position = p.Position ?? null;
  if (p.Duration) {
    c.bar.max = p.Duration;
    c.bar.value = Math.min(position || 0, p.Duration);
  } else {
    c.bar.removeAttribute("value"); // indeterminate: live, or not started
  }
  c.bar.hidden = FINAL.has(state) && !p.Duration;
  const parts = [`${seconds(position)} / ${p.Duration ? seconds(p.Duration) : state === "running" ? "live" : "–"}`];
  if (p.Bitrate) parts.push(`${(p.Bitrate / 1e6).toFixed(2)} Mbit/s`);
  if (p.Paused) parts.push("paused");
  setText(c.progress, parts.join(" · "));
  let note = push.Error ? `${push.Error.Code}: ${push.Error.Message}` : push.Reason || "";
  if (row.message) note = row.message;
  setText(c.note, note);
  c.note.classList.toggle("error", Boolean(push.Error) || Boolean(row.messageIsError));
  const running = state === "running";
  c.stop.hidden = FINAL.has(state);
  c.watch.hidden = !(previewOf(push) && running);
  c.switchForm.hidden = !(running && switchable);
  const fanout = Array.isArray(push.Targets);
  c.targetForm.hidden = !(running && fanout);
  c.targetList.hidden = !fanout;
  if (fanout) renderTargets(row, push, running);
  row.tr.classList.toggle("watched", Boolean(watched && watched.id === push.RequestId));
}

function renderTargets(row, push, running) {
  const states = (push.Progress || {}).Targets || {};
  const shown = push.Targets.map((t) => [t.TargetId, roomOf(t), t.UserId, (states[t.TargetId] || {}).State]);
  const key = JSON.stringify([shown, running]);
  if (row.targetsKey === key) return; // unchanged: keep the list (and any focus) as it is
  row.targetsKey = key;
  const id = push.RequestId;
  row.cells.targetList.replaceChildren(...shown.map(([targetId, room, user, state]) => {
    const item = el("li", { "data-target-id": targetId, text: `${targetId}: ${room} · ${user} · ${state || "…"}` });
    if (running) {
      const remove = el("button", { type: "button", class: "target-remove", text: "Remove", "aria-label": `remove ${targetId}` });
      remove.addEventListener("click", () => removeTarget(id, targetId, remove));
      item.append(" ", remove);
    }
    return item;
  }));
}

function render(list) {
  const seen = new Set();
  let previous = null;
  for (const push of list.Pushes) {
    const id = push.RequestId;
    seen.add(id);
    let row = rows.get(id);
    if (!row) {
      row = makeRow(id);
      rows.set(id, row);
    }
    updateRow(row, push);
    // Keep the API's order (newest first) without rebuilding rows: inputs keep focus.
    const want = previous ? previous.nextSibling : els.rows.firstChild;
    if (want !== row.tr) els.rows.insertBefore(row.tr, want);
    previous = row.tr;
  }
  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  }
  els.noPushes.hidden = list.Pushes.length > 0;
  const stats = Object.entries(list.Stats || {}).filter(([, n]) => n > 0);
  setText(els.stats, stats.map(([s, n]) => `${n} ${s}`).join(" · "));
  if (watched) {
    const row = rows.get(watched.id);
    if (row && FINAL.has(row.push.State)) stopWatching(`The push ended (${row.push.State}).`);
  }
}

let polling = false;
async function poll() {
  if (polling) return; // a slow answer must not pile calls up
  polling = true;
  try {
    render(await call("GET", "v1/pushes?Limit=50"));
    setConn(`updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    if (err.status === 401) {
      setConn("This API needs a key: enter it above.", true);
      els.key.focus();
    } else {
      setConn(`cannot list pushes: ${err.message}`, true);
    }
  } finally {
    polling = false;
  }
}

// --- actions --------------------------------------------------------------------------------

function rowMessage(id, text, isError) {
  const row = rows.get(id);
  if (!row) return;
  row.message = text;
  row.messageIsError = isError;
  // Shown until the next state change speaks for itself.
  setTimeout(() => { if (row.message === text) { row.message = null; row.messageIsError = false; } }, 5000);
  if (row.push) updateRow(row, row.push);
}

async function stopPush(id, button) {
  button.disabled = true;
  try {
    const status = await call("POST", `v1/pushes/${encodeURIComponent(id)}/stop`);
    rowMessage(id, status.State === "stopped" ? "stopped" : "stopping…", false);
  } catch (err) {
    rowMessage(id, `stop: ${err.message}`, true);
  } finally {
    button.disabled = false;
    poll();
  }
}

async function switchClip(id, input, when) {
  const url = input.value.trim();
  if (!url) return;
  try {
    await call("POST", `v1/pushes/${encodeURIComponent(id)}/switch`, { VideoSrc: url, When: when });
    input.value = "";
    rowMessage(id, when === "now" ? "switching…" : "queued for the end of this clip", false);
  } catch (err) {
    rowMessage(id, `switch: ${err.message}`, true);
  }
}

async function addTarget(id, room, user, sig) {
  const name = room.value.trim();
  const body = /^\d+$/.test(name) ? { RoomId: Number(name) } : { StrRoomId: name };
  body.UserId = user.value.trim();
  if (sig.value.trim()) body.UserSig = sig.value.trim();
  try {
    const answer = await call("POST", `v1/pushes/${encodeURIComponent(id)}/targets`, body);
    room.value = user.value = sig.value = ""; // the UserSig is a secret: not kept in the page
    rowMessage(id, `room ${answer.TargetId} added: it joins at the next keyframe`, false);
  } catch (err) {
    rowMessage(id, `add room: ${err.message}`, true);
  }
  poll();
}

async function removeTarget(id, targetId, button) {
  button.disabled = true;
  try {
    await call("DELETE", `v1/pushes/${encodeURIComponent(id)}/targets/${encodeURIComponent(targetId)}`);
    rowMessage(id, `room ${targetId} removed`, false);
  } catch (err) {
    rowMessage(id, `remove room: ${err.message}`, true);
    button.disabled = false;
  }
  poll();
}

function formBody(form) {
  const data = new FormData(form);
  const body = {};
  const text = (name) => (data.get(name) || "").toString().trim();
  body.VideoSrc = text("VideoSrc");
  if (text("SdkAppId")) body.SdkAppId = Number(text("SdkAppId"));
  if (text("StrRoomId")) body.StrRoomId = text("StrRoomId");
  if (text("RoomId")) body.RoomId = Number(text("RoomId"));
  body.UserId = text("UserId");
  if (text("UserSig")) body.UserSig = text("UserSig");
  body.Mode = text("Mode") || "vod";
  if (text("MaxDuration")) body.MaxDuration = Number(text("MaxDuration"));
  for (const flag of ["Switchable", "Redis", "Replace"]) if (data.get(flag)) body[flag] = true;
  if (text("Loop")) body.Loop = text("Loop");
  const playlist = text("Playlist").split("\n").map((s) => s.trim()).filter(Boolean);
  if (playlist.length) body.Playlist = playlist;
  return body;
}

els.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  for (const input of els.form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  els.startResult.className = "";
  setText(els.startResult, "sending…");
  delete els.startResult.dataset.requestId;
  try {
    const answer = await call("POST", "v1/pushes", formBody(els.form));
    // The UserSig is a secret: do not keep it in the page once used.
    els.form.elements.UserSig.value = "";
    els.startResult.dataset.requestId = answer.RequestId;
    setText(els.startResult, `${answer.Message}: ${answer.RequestId}`);
    await poll();
    const row = rows.get(answer.RequestId);
    if (row && previewOf(row.push)) startWatching(row.push);
  } catch (err) {
    els.startResult.className = "error";
    setText(els.startResult, `${err.code}: ${err.message}`);
    const field = err.field && els.form.elements[err.field];
    if (field && field.setAttribute) {
      field.setAttribute("aria-invalid", "true");
      field.focus();
    }
  }
});

// --- the player (the local room's HLS preview) --------------------------------------------

function hlsUrl(stream) {
  return new URL(`hls/${encodeURIComponent(stream)}.m3u8`, previewBase).href;
}

// The local room names a room's first publisher's stream after the room and a later user's
// "<room>__<userid>" (devstack/publish_auth.py): try the per-user name first.
async function findStream(push) {
  const room = roomOf(push);
  for (const stream of [`${room}__${push.UserId}`, room]) {
    try {
      const resp = await fetch(hlsUrl(stream), { method: "HEAD", cache: "no-store" });
      if (resp.ok) return stream;
    } catch (_err) {
      // A 404 carries no CORS header, so it fails as a network error: not there (yet).
    }
  }
  return null;
}

function setPlayerMessage(text, isError = false) {
  setText(els.playerMessage, text);
  els.playerMessage.classList.toggle("error", isError);
}

function stopWatching(message) {
  if (!watched) return;
  clearTimeout(watched.timer);
  if (watched.hls) watched.hls.destroy();
  if (watched.whep) watched.whep.close();
  els.video.srcObject = null;
  els.video.removeAttribute("src");
  els.video.load();
  const row = rows.get(watched.id);
  if (row) row.tr.classList.remove("watched");
  watched = null;
  if (message) setPlayerMessage(message);
}

function startWatching(push) {
  stopWatching();
  if (!push || !previewOf(push)) return;
  const room = roomOf(push);
  watched = { id: push.RequestId, hls: null, whep: null, timer: null };
  els.playerPanel.hidden = false;
  setText(els.playerTitle, `Room ${room} · ${push.UserId}`);
  els.previewLink.href = new URL(`#${encodeURIComponent(room)}`, previewOf(push)).href;
  const row = rows.get(push.RequestId);
  if (row) row.tr.classList.add("watched");
  attach(watched);
}

async function attach(session) {
  if (watched !== session) return;
  const row = rows.get(session.id);
  const push = row ? row.push : null;
  if (!push || FINAL.has(push.State)) return;
  if (push.Whip) return attachWhep(session, push);
  const stream = push.State === "running" ? await findStream(push) : null;
  if (watched !== session) return;
  if (!stream) {
    setPlayerMessage("Waiting for the room's picture (HLS starts a few seconds after the push)…");
    session.timer = setTimeout(() => attach(session), HLS_RETRY_MS);
    return;
  }
  const src = hlsUrl(stream);
  if (window.Hls && window.Hls.isSupported()) {
    const hls = new window.Hls({ liveSyncDurationCount: 2, manifestLoadingMaxRetry: 3 });
    session.hls = hls;
    hls.on(window.Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal || watched !== session) return;
      setPlayerMessage(`Waiting for the stream (${data.details})…`);
      hls.destroy();
      session.hls = null;
      session.timer = setTimeout(() => attach(session), HLS_RETRY_MS);
    });
    hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
      setPlayerMessage("Playing what the room receives (muted; HLS runs a few seconds behind).");
      els.video.play().catch(() => setPlayerMessage("Press play to start."));
    });
    hls.loadSource(src);
    hls.attachMedia(els.video);
    setPlayerMessage("Loading…");
  } else if (els.video.canPlayType("application/vnd.apple.mpegurl")) {
    els.video.src = src;
    els.video.play().catch(() => setPlayerMessage("Press play to start."));
    setPlayerMessage("Playing with the browser's own HLS player.");
  } else {
    const why = window.Hls ? "this browser has no Media Source Extensions" : "hls.js is missing (run scripts/setup)";
    setPlayerMessage(`Cannot play HLS here: ${why}.`, true);
  }
}

// A push over WHIP into the dev stack's ingest: its WHEP playback, well under a second behind.
async function attachWhep(session, push) {
  const path = `v2/sub/${push.SdkAppId}/${encodeURIComponent(roomOf(push))}`;
  const url = new URL(`${path}?SessionID=${encodeURIComponent(push.UserId)}`, whipBase).href;
  const retry = (message) => {
    if (watched !== session) return;
    session.whep = null;
    setPlayerMessage(message);
    session.timer = setTimeout(() => attach(session), HLS_RETRY_MS);
  };
  try {
    const whep = await playWhep(url, els.video, (state) => retry(`The connection is ${state}; trying again…`));
    if (watched !== session) return whep.close();
    session.whep = whep;
    setPlayerMessage("Playing what the room receives over WebRTC (muted).");
    els.video.play().catch(() => setPlayerMessage("Press play to start."));
  } catch (err) {
    retry(err.status === 404 ? "Waiting for the push to publish over WHIP…" : `Waiting for the room's picture (${err.message})…`);
  }
}

// --- start -----------------------------------------------------------------------------------

if (!previewBase && !whipBase) {
  // No preview server configured (ROOMCAST_CONSOLE_PREVIEW_URL, _WHIP_PREVIEW_URL): no player,
  // no Watch buttons.
  els.playerPanel.hidden = true;
}
poll();
setInterval(poll, POLL_MS);
