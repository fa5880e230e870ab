// A WHEP player (WebRTC-HTTP egress, RFC 9725) for a <video>: one recvonly offer POSTed as
// application/sdp, the 201's SDP answer applied, a DELETE on its Location to leave. Used by the
// console (console.js) and by the dev stack's WHIP preview page (devstack/whip.py serves this
// file too). The offer goes out with every candidate in it: aiortc's endpoint takes no trickle.

const GATHER_MS = 3000; // past this, send what has been gathered
// "disconnected" often recovers by itself: only these end a playback.
const ENDED = new Set(["failed", "closed"]);

export class WhepError extends Error {
  constructor(status, text) {
    super(text || `HTTP ${status}`);
    this.status = status;
  }
}

function gathered(pc) {
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    done();
    setTimeout(resolve, GATHER_MS);
  });
}

// Plays `url` into `video`; resolves once the answer is applied, to { close() }. `onEnd` is
// called once if the connection fails or closes from the far end (the publisher left, say).
export async function playWhep(url, video, onEnd = () => {}) {
  const pc = new RTCPeerConnection();
  const stream = new MediaStream();
  let location = null;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    pc.close();
    if (location) fetch(location, { method: "DELETE", keepalive: true }).catch(() => {});
    if (video.srcObject === stream) video.srcObject = null;
  };
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addEventListener("track", (event) => stream.addTrack(event.track));
  pc.addEventListener("connectionstatechange", () => {
    if (!closed && ENDED.has(pc.connectionState)) {
      close();
      onEnd(pc.connectionState);
    }
  });
  video.srcObject = stream;
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const resp = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
      cache: "no-store",
    });
    const text = await resp.text();
    if (resp.status !== 201) throw new WhepError(resp.status, text.trim());
    // resp.url: absolute, where `url` may be relative to the page.
    if (resp.headers.get("Location")) location = new URL(resp.headers.get("Location"), resp.url).href;
    await pc.setRemoteDescription({ type: "answer", sdp: text });
  } catch (err) {
    close();
    throw err;
  }
  return { close };
}
