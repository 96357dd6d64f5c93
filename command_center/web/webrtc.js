// WHEP/WHIP-style negotiation shared by the pages: one offer with every candidate (no trickle), POSTed as
// application/sdp with the session token; the answer applied; the session's Location returned for DELETE.
"use strict";

window.webrtc = {
  async negotiate(pc, path, token) {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") resolve();
      pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") resolve(); };
      setTimeout(resolve, 2000);
    });
    const response = await fetch(path, { method: "POST", body: pc.localDescription.sdp,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" } });
    if (!response.ok) {
      const error = new Error((await response.json().catch(() => ({})))?.error?.message || String(response.status));
      error.status = response.status;
      throw error;
    }
    const location = response.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    return location;
  },

  async release(location, token) {
    if (location) await fetch(location, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } }).catch(() => null);
  },

  // A receive-only viewer of a unit (video and audio) playing into a <video> element; returns its close().
  async watch(unitId, video, token) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.ontrack = (event) => { stream.addTrack(event.track); video.srcObject = stream; };
    let location;
    try {
      location = await window.webrtc.negotiate(pc, `/api/whep/${encodeURIComponent(unitId)}`, token);
    } catch (exc) {
      pc.close();
      throw exc;
    }
    return async () => {
      await window.webrtc.release(location, token);
      pc.close();
      video.srcObject = null;
    };
  },
};
