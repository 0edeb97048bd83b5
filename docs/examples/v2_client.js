// A txchat.v2 client for a web page whose messages are never lost and never doubled: each
// message is kept until the server acknowledges it, and after a reconnect everything not yet
// acknowledged is sent again with the same ID (the server delivers a resend only if the first
// copy never arrived). It resumes with `since` and reconnects by itself, as the page does.
//
//   const chat = txchatV2("wss://chat.example.com/ws/general", {name: "Ada", onMessage: show});
//   chat.say("hello");  // chat.unacked: the IDs and texts not yet acknowledged
function txchatV2(url, {name = "", onMessage = () => {}, onRefused = () => {}} = {}) {
  // This client, the same across reconnects (keep it in localStorage to span page loads).
  const cid = crypto.randomUUID().replaceAll("-", "");
  const unacked = new Map();  // ID -> text, in the order sent
  let socket = null, since = null, epoch = null, last = 0, delay = 500;

  function send(id) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({type: "send", id, text: unacked.get(id)}));
    }
  }

  function connect() {
    const query = `?name=${encodeURIComponent(name)}&cid=${cid}` + (since ? `&since=${since}` : "");
    socket = new WebSocket(url + query, ["txchat.v2"]);
    socket.onopen = () => unacked.forEach((text, id) => send(id));  // lost, or not: the server knows
    socket.onmessage = (event) => {
      for (const line of event.data.split("\n").map((text) => JSON.parse(text))) {
        if (line.type === "welcome") {
          [epoch, last, delay] = [line.epoch, line.seq, 500];
        } else if (line.type === "message") {
          last = line.seq ?? last;  // (unnumbered while a server has lost Redis)
          onMessage(line, line.from === `a:${cid}`);
        } else if (line.type === "ack") {
          unacked.delete(line.id);
        } else if (line.type === "error" && unacked.has(line.id)) {
          if (line.code === "rate-limited" || line.code === "unavailable") {
            setTimeout(() => send(line.id), line.retryAfter ?? 1000);  // the same ID again
          } else {  // too-long, empty, bad-request: sending it again would not help
            onRefused(unacked.get(line.id), line);
            unacked.delete(line.id);
          }
        }
        since = `${epoch}:${last}`;
      }
    };
    socket.onclose = () => {
      setTimeout(connect, delay * (0.5 + Math.random() / 2));
      delay = Math.min(delay * 2, 10000);
    };
  }

  connect();
  return {
    unacked,
    say(text) {
      const id = crypto.randomUUID();  // unique: an ID used again within 10 minutes is a resend
      unacked.set(id, text);
      send(id);
      return id;
    },
  };
}
