// The WebSocket: connects with the token, answers `ready` with `resume` so nothing sent
// while it was away is lost, reconnects with back-off, and reports its state.
//
// `lastSeq()` gives the highest seq the app has applied per channel; the app drops events
// at or below it, so a replay that overlaps what it already has shows nothing twice.

export class Live {
  constructor({ token, lastSeq, onEvent, onState, onSignedOut, checkToken }) {
    Object.assign(this, { token, lastSeq, onEvent, onState, onSignedOut, checkToken });
    this.attempt = 0;
    this.stopped = false;
    this.socket = null;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.socket) this.socket.close(1000, 'bye');
    this.socket = null;
  }

  send(type, data) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type, data }));
      return true;
    }
    return false;
  }

  connect() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/api/ws?token=${encodeURIComponent(this.token)}`);
    this.socket = socket;
    let opened = false;
    socket.addEventListener('open', () => { opened = true; });
    socket.addEventListener('message', (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame.type === 'ready') {
        // Resume at once: live events wait for the first frame, so the replay comes first.
        this.send('resume', { channels: this.lastSeq() });
        this.attempt = 0;
        this.onState('online');
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.send('ping', {}), 25000);
      }
      this.onEvent(frame);
    });
    socket.addEventListener('close', async (event) => {
      if (this.socket !== socket) return;
      clearInterval(this.pinger);
      this.socket = null;
      if (this.stopped) return;
      if (event.code === 4001) {
        this.onSignedOut('Your session has ended (signed out elsewhere or expired). Please sign in again.');
        return;
      }
      // A refused handshake looks like 1006 to a browser: ask the API whether the token
      // still holds, so an expired one sends the person to sign in instead of retrying.
      if (!opened && !(await this.checkToken())) return;
      if (this.stopped) return;
      // 4008 (slow consumer) and 1001 (server going away) reconnect at once the first
      // time; anything else, and every later attempt, backs off up to 10 s.
      const quick = this.attempt === 0 && (event.code === 4008 || event.code === 1001);
      const delay = quick ? 100 : Math.min(10000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
      this.attempt += 1;
      this.onState('reconnecting', Math.round(delay / 1000));
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }
}
