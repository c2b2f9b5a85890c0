// The WebSocket: one connection at a time to any node, requests matched to answers by id,
// reconnect with backoff and jitter (moving to another node when one fails), resume hooks run
// on every new connection before it counts as open, and make-before-break renewal when the
// access token is refreshed (the server closes a socket whose token expired with 4001).

import { accessTokenFresh, currentSession, refreshTokens } from "./auth";
import { currentBase, rotateBase, webSocketUrl } from "./nodes";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export class RequestFailed extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Errors worth retrying: the request may not have reached the server, or it was dropped. */
export function isTransient(error: unknown): boolean {
  const code = (error as RequestFailed)?.code;
  return code === "disconnected" || code === "timeout" || code === "unavailable" || code === "rate_limited";
}

export type Frame = { type: string; [key: string]: unknown };
export type Requester = <T = unknown>(frame: Frame, timeoutMs?: number) => Promise<T>;
type FrameHandler = (frame: Frame) => void;
type ResumeHook = (request: Requester, hello: Frame) => Promise<void>;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: RequestFailed) => void;
  timer: number;
}

const REQUEST_TIMEOUT_MS = 15_000;
const PING_EVERY_MS = 15_000;
const HELLO_TIMEOUT_MS = 10_000;
const BACKOFF_MS = [100, 500, 1_000, 2_000, 4_000, 5_000];

class Connection {
  readonly ws: WebSocket;
  readonly pending = new Map<string, Pending>();
  hello: Frame | null = null;
  closed = false;
  private nextId = 0;

  constructor(
    readonly base: string,
    token: string,
  ) {
    this.ws = new WebSocket(webSocketUrl(base, token));
  }

  request<T>(frame: Frame, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T> {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new RequestFailed("disconnected", "not connected"));
    }
    const id = `r${++this.nextId}`;
    return new Promise<T>((resolve, reject) => {
      const timer = window.setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestFailed("timeout", `no answer to ${frame.type} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  /** Routes `ok`/`error`/`pong` to their request; false for every other frame. */
  settle(frame: Frame): boolean {
    if (frame.type !== "ok" && frame.type !== "error" && frame.type !== "pong") return false;
    const id = frame.id as string | undefined;
    const pending = id ? this.pending.get(id) : undefined;
    if (!pending || !id) return true;
    this.pending.delete(id);
    window.clearTimeout(pending.timer);
    if (frame.type === "error") pending.reject(new RequestFailed(String(frame.code), String(frame.message)));
    else pending.resolve(frame.result);
    return true;
  }

  fail(): void {
    this.closed = true;
    for (const pending of this.pending.values()) {
      window.clearTimeout(pending.timer);
      pending.reject(new RequestFailed("disconnected", "the connection ended"));
    }
    this.pending.clear();
  }
}

export class LarkSocket {
  state: ConnectionState = "closed";
  nodeId = "";
  sessionId = "";
  /** Connections opened so far (1 = never reconnected). */
  connections = 0;
  lastCloseCode = 0;
  private active: Connection | null = null;
  private renewing: Connection | null = null;
  private attempt = 0;
  private retryTimer: number | undefined;
  private pingTimer: number | undefined;
  private running = false;
  private opening = false;
  private readonly handlers = new Map<string, Set<FrameHandler>>();
  private readonly resumeHooks: ResumeHook[] = [];
  private readonly stateListeners = new Set<() => void>();
  private openWaiters: (() => void)[] = [];

  constructor() {
    window.addEventListener("online", () => {
      if (this.running && this.state === "reconnecting") this.connectNow();
    });
  }

  on(type: string, handler: FrameHandler): () => void {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => set!.delete(handler);
  }

  /** Runs on every new connection, after `hello` and before the socket counts as open. */
  onResume(hook: ResumeHook): () => void {
    this.resumeHooks.push(hook);
    return () => {
      const index = this.resumeHooks.indexOf(hook);
      if (index >= 0) this.resumeHooks.splice(index, 1);
    };
  }

  onStateChange(listener: () => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.setState("connecting");
    this.connectNow();
  }

  stop(): void {
    this.running = false;
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.pingTimer);
    for (const connection of [this.active, this.renewing]) {
      if (connection) {
        connection.fail();
        connection.ws.close(1000, "signed out");
      }
    }
    this.active = this.renewing = null;
    this.setState("closed");
  }

  /** Opens a new connection with the current token, resumes on it, then drops the old one. */
  renew(): void {
    if (!this.running) return;
    if (this.state !== "open" || this.renewing) {
      if (this.state !== "open") this.connectNow();
      return;
    }
    this.open(true);
  }

  /** Closes the current connection as if the network dropped (tests, debugging). */
  dropConnection(): void {
    this.active?.ws.close(4000, "client drop");
  }

  request<T = unknown>(frame: Frame, timeoutMs?: number): Promise<T> {
    if (!this.active || this.state !== "open") {
      return Promise.reject(new RequestFailed("disconnected", "not connected"));
    }
    return this.active.request<T>(frame, timeoutMs);
  }

  /** Resolves when open (or rejects after `timeoutMs`). */
  whenOpen(timeoutMs = 30_000): Promise<void> {
    if (this.state === "open") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = window.setTimeout(() => reject(new RequestFailed("timeout", "still offline")), timeoutMs);
      this.openWaiters.push(() => {
        window.clearTimeout(timer);
        resolve();
      });
    });
  }

  private setState(state: ConnectionState): void {
    if (this.state === state) return;
    this.state = state;
    if (state === "open") {
      const waiters = this.openWaiters;
      this.openWaiters = [];
      waiters.forEach((wake) => wake());
    }
    this.stateListeners.forEach((listener) => listener());
  }

  private connectNow(): void {
    window.clearTimeout(this.retryTimer);
    if (this.active && !this.active.closed) return;
    this.open(false);
  }

  private async open(renewal: boolean): Promise<void> {
    if (this.opening) return; // one attempt at a time (retry timer, `online` event, renewal)
    this.opening = true;
    try {
      await this.openConnection(renewal);
    } finally {
      this.opening = false;
    }
  }

  private async openConnection(renewal: boolean): Promise<void> {
    if (!accessTokenFresh()) {
      try {
        await refreshTokens();
      } catch {
        if (!currentSession()) return this.stop();
        return this.scheduleRetry();
      }
    }
    const session = currentSession();
    if (!session || !this.running) return;
    const connection = new Connection(currentBase(), session.accessToken);
    if (renewal) this.renewing = connection;
    else this.active = connection;
    connection.ws.onmessage = (event) => this.onMessage(connection, event);
    connection.ws.onclose = (event) => this.onClose(connection, event);
    // A node that accepts the TCP connection but never says hello is as good as dead.
    window.setTimeout(() => {
      if (!connection.hello && !connection.closed) connection.ws.close(4000, "no hello");
    }, HELLO_TIMEOUT_MS);
  }

  private onMessage(connection: Connection, event: MessageEvent): void {
    let frame: Frame;
    try {
      frame = JSON.parse(String(event.data));
    } catch {
      return;
    }
    if (connection.settle(frame)) return;
    if (frame.type === "hello") {
      connection.hello = frame;
      void this.resume(connection, frame);
      return;
    }
    this.handlers.get(frame.type)?.forEach((handler) => handler(frame));
  }

  private async resume(connection: Connection, hello: Frame): Promise<void> {
    // A renewal takes over at once (the old connection keeps delivering until the hooks
    // are done, duplicates are dropped by seq); a reconnect counts as open only after them.
    const renewal = this.renewing === connection;
    const previous = this.active;
    if (renewal) {
      this.renewing = null;
      this.active = connection;
    }
    const requester: Requester = (frame, timeoutMs) => connection.request(frame, timeoutMs);
    try {
      for (const hook of this.resumeHooks) await hook(requester, hello);
    } catch (error) {
      console.warn("resume failed", error);
      if (renewal && previous && !previous.closed) {
        this.active = previous; // keep the old connection until its token expires (4001)
        connection.ws.onclose = null;
        connection.fail();
      }
      connection.ws.close(4000, "resume failed"); // else: start over on another connection
      return;
    }
    if (connection.closed) return;
    this.active = connection;
    if (previous && previous !== connection) {
      previous.fail();
      previous.ws.onclose = null;
      previous.ws.close(1000, "renewed");
    }
    this.attempt = 0;
    this.connections += 1;
    this.nodeId = String(hello.node_id ?? "");
    this.sessionId = String(hello.session_id ?? "");
    this.startPing();
    this.setState("open");
  }

  private onClose(connection: Connection, event: CloseEvent): void {
    const wasResumed = connection.hello !== null;
    connection.fail();
    this.lastCloseCode = event.code;
    if (this.renewing === connection) {
      this.renewing = null; // the old connection is still serving; try again later
      return;
    }
    if (this.active !== connection || !this.running) return;
    this.active = null;
    window.clearInterval(this.pingTimer);
    // A node that refused or dropped us: move on to another one for the next attempt.
    if (!wasResumed || event.code === 1006 || event.code === 1012 || event.code === 1011) {
      rotateBase(connection.base);
    }
    this.setState("reconnecting");
    if (event.code === 4001) {
      refreshTokens().then(
        () => this.connectNow(),
        () => this.scheduleRetry(),
      );
      return;
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (!this.running) return;
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    const delay = base / 2 + Math.random() * base;
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.connectNow(), delay);
  }

  private startPing(): void {
    window.clearInterval(this.pingTimer);
    this.pingTimer = window.setInterval(() => {
      const connection = this.active;
      if (!connection) return;
      connection.request({ type: "ping" }, 10_000).catch((error: RequestFailed) => {
        if (error.code === "timeout") connection.ws.close(4000, "no pong"); // a silent, dead link
      });
    }, PING_EVERY_MS);
  }
}

export const socket = new LarkSocket();
