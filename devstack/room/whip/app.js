// Preview of the local WHIP endpoint (devstack/whip.py): polls /rooms, lists who publishes
// where, and plays the room named in the URL's fragment (/#demo) over WHEP (/v2/sub/…).

import { playWhep } from "/whep.js";

const POLL_MS = 2000;
const RETRY_MS = 2000;

const $ = (id) => document.getElementById(id);
const els = {
  rooms: $("rooms"),
  noRooms: $("no-rooms"),
  pushHint: $("push-hint"),
  pollState: $("poll-state"),
  title: $("player-title"),
  video: $("video"),
  message: $("player-message"),
};

let sessions = []; // GET /rooms: the latest publish first
let current = null; // { room, session, whep, timer }

function setMessage(msg, isError = false) {
  els.message.textContent = msg;
  els.message.classList.toggle("error", isError);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderRooms() {
  els.noRooms.hidden = sessions.length > 0;
  els.rooms.replaceChildren(...sessions.map((s) => {
    const button = el("button");
    button.type = "button";
    button.dataset.room = s.Room;
    if (current && current.room === s.Room) button.classList.add("selected");
    const video = s.Video ? `${s.Video}, ${s.Pictures} pictures` : "no picture yet";
    button.append(
      el("div", "room-name", s.Room),
      el("div", "room-detail", `user ${s.UserId} · app ${s.SdkAppId}`),
      el("div", "room-detail", `${video}${s.Audio ? " + sound" : ""} · ${Math.round(s.Seconds)} s`),
      el("div", "room-detail", `${s.Viewers} viewer${s.Viewers === 1 ? "" : "s"}`),
    );
    button.addEventListener("click", () => { location.hash = encodeURIComponent(s.Room); });
    return el("li", null, button);
  }));
}

function stopPlayback() {
  if (!current) return;
  clearTimeout(current.timer);
  if (current.whep) current.whep.close();
  current = null;
}

// The room's latest publisher, or undefined.
const publisherOf = (room) => sessions.find((s) => s.Room === room);

async function play(room) {
  stopPlayback();
  const watching = { room, session: null, whep: null, timer: null };
  current = watching;
  els.title.textContent = `Room ${room}`;
  const target = publisherOf(room);
  if (!target) {
    setMessage("Nobody publishes into this room over WHIP yet; it plays when someone does.");
    return;
  }
  watching.session = target.Session;
  const url = `/v2/sub/${target.SdkAppId}/${encodeURIComponent(room)}` +
    `?SessionID=${encodeURIComponent(target.UserId)}`;
  setMessage("Connecting…");
  try {
    const whep = await playWhep(url, els.video, (state) => {
      if (current !== watching) return;
      setMessage(`The connection is ${state}; trying again…`);
      watching.whep = null;
      watching.timer = setTimeout(() => { if (current === watching) play(room); }, RETRY_MS);
    });
    if (current !== watching) return whep.close();
    watching.whep = whep;
    setMessage(`Playing ${target.UserId} over WebRTC (muted: unmute in the controls).`);
    els.video.play().catch(() => setMessage("Press play to start."));
  } catch (err) {
    if (current !== watching) return;
    setMessage(`Cannot play: ${err.message}; trying again…`, true);
    watching.timer = setTimeout(() => { if (current === watching) play(room); }, RETRY_MS);
  }
}

function roomFromHash() {
  const raw = location.hash.replace(/^#/, "");
  return raw ? decodeURIComponent(raw) : null;
}

function onHashChange() {
  const room = roomFromHash();
  if (room) play(room);
  else {
    stopPlayback();
    els.title.textContent = "Pick a room";
  }
  renderRooms();
}

async function poll() {
  try {
    const resp = await fetch("/rooms", { cache: "no-store" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    sessions = await resp.json();
    els.pollState.textContent = `updated ${new Date().toLocaleTimeString()}`;
    els.pollState.classList.remove("error");
    // A new publisher in the watched room (a new session, or the first one): play it.
    if (current) {
      const target = publisherOf(current.room);
      if (target && target.Session !== current.session) play(current.room);
      else if (!target && current.session) setMessage("The publisher left this room; waiting for it to come back.");
    }
    renderRooms();
  } catch (err) {
    els.pollState.textContent = `cannot reach /rooms (${err.message})`;
    els.pollState.classList.add("error");
  }
}

els.pushHint.textContent = `${location.origin}/v2/pub/<SdkAppId>/<room>?SessionID=<UserId>`;
window.addEventListener("hashchange", onHashChange);
window.addEventListener("pagehide", stopPlayback);
await poll();
onHashChange();
setInterval(poll, POLL_MS);
