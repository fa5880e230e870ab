// Preview of the local room: polls nginx-rtmp's /stat, lists the streams of application
// "push" (one per room and user) and plays the chosen one over HLS (/hls/<stream>.m3u8).
"use strict";

const POLL_MS = 2000;
const APP = "push";

const els = {
  rooms: document.getElementById("rooms"),
  noRooms: document.getElementById("no-rooms"),
  pushHint: document.getElementById("push-hint"),
  pollState: document.getElementById("poll-state"),
  title: document.getElementById("player-title"),
  video: document.getElementById("video"),
  message: document.getElementById("player-message"),
  playUrl: document.getElementById("play-url"),
  playUrlText: document.getElementById("play-url-text"),
};

let rtmpPlayBase = null; // from /room.json
let liveRooms = new Map(); // name -> parsed stream info
let publishers = new Map(); // stream name -> {Room, User, Stream}, when the room checks UserSigs
let current = null; // { room, hls }

function text(parent, tag) {
  const el = parent.querySelector(tag);
  return el ? el.textContent.trim() : "";
}

// Only direct children: <client> also has <time>, <meta> has nested <codec> elements.
function childText(parent, tag) {
  for (const el of parent.children) {
    if (el.tagName === tag) return el.textContent.trim();
  }
  return "";
}

function parseStat(xml) {
  const doc = new DOMParser().parseFromString(xml, "application/xml");
  const rooms = new Map();
  for (const app of doc.querySelectorAll("application")) {
    if (childText(app, "name") !== APP) continue;
    for (const stream of app.querySelectorAll("live > stream")) {
      const publisher = [...stream.querySelectorAll("client")].find(
        (c) => c.querySelector("publishing"),
      );
      if (!publisher) continue; // viewers waiting on a room nobody pushes to
      const video = stream.querySelector("meta > video");
      const audio = stream.querySelector("meta > audio");
      rooms.set(childText(stream, "name"), {
        uptimeS: Math.round(Number(childText(stream, "time")) / 1000),
        bitrate: Number(childText(stream, "bw_in")),
        viewers: Math.max(0, Number(childText(stream, "nclients")) - 1),
        address: text(publisher, "address"),
        flashver: text(publisher, "flashver"),
        video: video && {
          width: text(video, "width"), height: text(video, "height"),
          fps: text(video, "frame_rate"), codec: text(video, "codec"),
          profile: text(video, "profile"),
        },
        audio: audio && {
          codec: text(audio, "codec"), rate: text(audio, "sample_rate"),
          channels: text(audio, "channels"),
        },
      });
    }
  }
  return rooms;
}

function describe(info) {
  const parts = [];
  if (info.video) {
    const v = info.video;
    parts.push(`${v.width}×${v.height} ${v.fps ? v.fps + " fps " : ""}${v.codec} ${v.profile}`.trim());
  }
  if (info.audio) {
    const a = info.audio;
    parts.push(`${a.codec} ${a.rate ? a.rate / 1000 + " kHz" : ""} ${a.channels === "1" ? "mono" : ""}`.trim());
  }
  if (info.bitrate) parts.push(`${(info.bitrate / 1e6).toFixed(2)} Mbit/s`);
  parts.push(`live ${formatDuration(info.uptimeS)}`);
  if (info.viewers) parts.push(`${info.viewers} RTMP viewer${info.viewers > 1 ? "s" : ""}`);
  // nginx-rtmp's stat omits the publish arguments (userid), so name the client instead.
  parts.push(`from ${info.address} (${info.flashver})`);
  return parts;
}

function formatDuration(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
}

function renderRooms() {
  els.rooms.replaceChildren();
  const names = [...liveRooms.keys()].sort();
  els.noRooms.hidden = names.length > 0;
  for (const name of names) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    if (current && current.room === name) button.classList.add("selected");
    const title = document.createElement("div");
    title.className = "room-name";
    title.textContent = name;
    button.append(title);
    const who = publishers.get(name);
    if (who) {
      const user = document.createElement("div");
      user.className = "room-detail";
      user.textContent = `user ${who.User}` + (who.Stream !== who.Room ? ` in room ${who.Room}` : "");
      button.append(user);
    }
    for (const line of describe(liveRooms.get(name))) {
      const detail = document.createElement("div");
      detail.className = "room-detail";
      detail.textContent = line;
      button.append(detail);
    }
    button.addEventListener("click", () => { location.hash = encodeURIComponent(name); });
    li.append(button);
    els.rooms.append(li);
  }
}

function setMessage(msg, isError = false) {
  els.message.textContent = msg;
  els.message.classList.toggle("error", isError);
}

function stopPlayback() {
  if (current && current.hls) current.hls.destroy();
  els.video.removeAttribute("src");
  els.video.load();
  current = null;
}

function play(room) {
  stopPlayback();
  current = { room, hls: null };
  els.title.textContent = `Room ${room}`;
  if (rtmpPlayBase) {
    els.playUrlText.textContent = `${rtmpPlayBase}/${room}`;
    els.playUrl.hidden = false;
  }
  if (!liveRooms.has(room)) {
    setMessage("Nobody is pushing into this room yet; it starts playing when someone does.");
    return;
  }
  const src = `/hls/${encodeURIComponent(room)}.m3u8`;
  if (window.Hls && window.Hls.isSupported()) {
    const hls = new window.Hls({ liveSyncDurationCount: 2, manifestLoadingMaxRetry: 3 });
    current.hls = hls;
    hls.on(window.Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      // The first playlist appears a few seconds after a publish starts; try again.
      setMessage(`Waiting for the stream (${data.details})…`);
      setTimeout(() => { if (current && current.hls === hls) play(room); }, POLL_MS);
    });
    hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
      setMessage("Playing (muted: unmute in the controls). HLS runs a few seconds behind.");
      els.video.play().catch(() => setMessage("Press play to start."));
    });
    hls.loadSource(src);
    hls.attachMedia(els.video);
    setMessage("Loading…");
  } else if (els.video.canPlayType("application/vnd.apple.mpegurl")) {
    els.video.src = src;
    els.video.play().catch(() => setMessage("Press play to start."));
    setMessage("Playing with the browser's own HLS player.");
  } else {
    const why = window.Hls
      ? "hls.js cannot run here (no Media Source Extensions)"
      : "hls.js is missing (run scripts/setup to vendor it)";
    setMessage(
      `This browser cannot play HLS: ${why} and it has no built-in HLS player. ` +
        "Use the RTMP URL below with ffplay or VLC.",
      true,
    );
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
    els.playUrl.hidden = true;
  }
  renderRooms();
}

async function poll() {
  try {
    const resp = await fetch("/stat", { cache: "no-store" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const wasLive = current && liveRooms.has(current.room);
    liveRooms = parseStat(await resp.text());
    publishers = await fetchPublishers();
    els.pollState.textContent = `updated ${new Date().toLocaleTimeString()}`;
    els.pollState.classList.remove("error");
    if (current) {
      const isLive = liveRooms.has(current.room);
      if (isLive && !wasLive) play(current.room); // a publisher (re)appeared
      else if (!isLive && wasLive) setMessage("The publisher left this room; waiting for it to come back.");
    }
    renderRooms();
  } catch (err) {
    els.pollState.textContent = `cannot reach /stat (${err.message})`;
    els.pollState.classList.add("error");
  }
}

// Only a room with secret keys knows its publishers' user ids (nginx's /stat does not).
async function fetchPublishers() {
  try {
    const resp = await fetch("/publishers.json", { cache: "no-store" });
    if (!resp.ok) return new Map();
    return new Map((await resp.json()).map((p) => [p.Stream, p]));
  } catch (_err) {
    return new Map();
  }
}

async function init() {
  try {
    const resp = await fetch("/room.json", { cache: "no-store" });
    rtmpPlayBase = (await resp.json()).rtmp_play_base;
    els.pushHint.textContent = `${rtmpPlayBase}/<room>?sdkappid=…&userid=…&usersig=…`;
  } catch (_err) {
    // Only cosmetic: the page still lists and plays rooms.
  }
  window.addEventListener("hashchange", onHashChange);
  await poll();
  onHashChange();
  setInterval(poll, POLL_MS);
}

init();
