// WHEP/WHIP-style negotiation shared by the pages (RFC 9725 shape): one offer with every candidate (no
// trickle), POSTed as application/sdp with a bearer credential (the session token, or a unit's device secret
// on the field page); the answer applied; the session's Location returned for DELETE. A refusal is an ApiError
// with the server's stable code.
import { ApiError, token } from "./api.js";

export async function negotiate(pc, path, credential = token(), gatherMs = 2000) {
  return (await negotiateSession(pc, path, credential, gatherMs)).location;
}

/** ``negotiate``, answering the session's resource and its ETag (for ICE restart by PATCH, RFC 9725 §4.3.2),
 * and what the unit sends that is not forwarded (``Media-Not-Forwarded``: a GB device's AAC audio), or null. */
export async function negotiateSession(pc, path, credential = token(), gatherMs = 2000) {
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") resolve();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") resolve(); };
    setTimeout(resolve, gatherMs);
  });
  const response = await fetch(path, { method: "POST", body: pc.localDescription.sdp,
    headers: { Authorization: `Bearer ${credential}`, "Content-Type": "application/sdp" } });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const location = response.headers.get("Location");
  const etag = response.headers.get("ETag");
  const notForwarded = response.headers.get("Media-Not-Forwarded");
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  return { location, etag, notForwarded };
}

/** Ends a session (DELETE its Location). ``keepalive``: the request outlives the page (sent on pagehide, so a
 * closed tab frees its sessions at once instead of when they time out). */
export async function release(location, credential = token(), { keepalive = false } = {}) {
  if (location) {
    await fetch(location, { method: "DELETE", keepalive, headers: { Authorization: `Bearer ${credential}` } })
      .catch(() => null);
  }
}

/** A receive-only viewer of a unit (video and audio) playing into a <video> element; resolves to its close(),
 * whose ``notForwarded`` says what of the unit's media the server could not send (null: everything came). */
export async function watch(unitId, video) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.ontrack = (event) => { stream.addTrack(event.track); video.srcObject = stream; };
  let session;
  try {
    session = await negotiateSession(pc, `/api/whep/${encodeURIComponent(unitId)}`);
  } catch (exc) {
    pc.close();
    throw exc;
  }
  const close = async ({ keepalive = false } = {}) => {
    await release(session.location, token(), { keepalive });
    pc.close();
    video.srcObject = null;
  };
  close.notForwarded = session.notForwarded;
  return close;
}
