// Opening a WebSocket without putting the session token in its URL (URLs end up in logs): the token, sent in
// a header, buys a single-use ticket that expires in 30 s (POST /api/auth/ticket), and the socket opens with it.
// A socket the server closes with code 4401 (logged out, revoked, expired, disabled) sends the user to log in.
window.ticket = {
  CLOSE_REVOKED: 4401,

  async socketUrl(path, token) {
    const response = await fetch("/api/auth/ticket", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    if (response.status === 401) { window.ticket.signOut(); throw new Error("the session has ended"); }
    if (!response.ok) throw new Error(`ticket: HTTP ${response.status}`);
    const { ticket } = await response.json();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}${path}?ticket=${encodeURIComponent(ticket)}`;
  },

  signOut() {
    sessionStorage.removeItem("token");
    location.replace("/");
  },
};
