// The one module that speaks cmdrd's JSON-lines protocol (README "Talking to the socket"):
// where the socket is, the handshake, requests with ids and deadlines, the event stream,
// and reconnecting with backoff while the daemon is away. No VS Code API here, so the unit
// tests drive it against a real cmdrd with plain Node.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

/** Must match `PROTOCOL_VERSION` in crates/cmdr-proto. */
export const PROTOCOL_VERSION = 1;
/**
 * The daemon's reply cap (`MAX_REPLY_LEN`): a longer line is a broken peer. Answers grow with
 * the accounts (`list_accounts` for 4,000 of them is over 1 MiB), as in cmdr-client.
 */
export const MAX_LINE = 64 << 20;

export interface SocketEnv {
  CMDR_SOCKET?: string;
  XDG_RUNTIME_DIR?: string;
  TMPDIR?: string;
  USERNAME?: string;
}

/**
 * The socket path, as crates/cmdr-client's `default_socket`: the `cmdr.socket` setting,
 * else `CMDR_SOCKET`, else `$XDG_RUNTIME_DIR/cmdr/cmdrd.sock` on Linux, else the daemon's
 * private fallback (`/tmp/cmdr-UID/`, macOS `$TMPDIR/cmdr-UID/`), a named pipe on Windows.
 */
export function socketPath(setting: string | undefined, env: SocketEnv, platform: NodeJS.Platform, uid: number): string {
  if (setting && setting.trim() !== '') {
    return setting.trim();
  }
  if (env.CMDR_SOCKET && env.CMDR_SOCKET !== '') {
    return env.CMDR_SOCKET;
  }
  if (platform === 'win32') {
    return `\\\\.\\pipe\\cmdrd-${env.USERNAME || 'user'}`;
  }
  const runtime = env.XDG_RUNTIME_DIR;
  if (platform === 'linux' && runtime && path.isAbsolute(runtime)) {
    return path.join(runtime, 'cmdr', 'cmdrd.sock');
  }
  const base = platform === 'darwin' && env.TMPDIR ? env.TMPDIR : '/tmp';
  return path.join(base, `cmdr-${uid}`, 'cmdrd.sock');
}

/**
 * Why the socket at `socket` must not be used by user `uid`, or undefined when it may: the
 * rule of crates/cmdr-client (`unix.rs`). Its directory must be a real directory (not a
 * symlink) owned by `uid` that group and others cannot write, under ancestors owned by
 * `uid` or root that others can write only when sticky (`/tmp`); the socket itself must be
 * owned by `uid`. Node cannot read a Unix socket's peer credentials, so the socket's owner
 * (the uid of the process that bound it, in a directory nobody else can write) stands in
 * for them. A directory that does not exist yet is not checked: nobody listens there.
 */
export function unsafeSocket(socket: string, uid: number): string | undefined {
  const dir = path.dirname(socket);
  let meta: fs.Stats;
  try {
    meta = fs.lstatSync(dir);
  } catch {
    return undefined;
  }
  const unsafe = (where: string, why: string): string => `refusing the socket directory ${where}: ${why}`;
  if (meta.isSymbolicLink()) {
    return unsafe(dir, 'it is a symlink');
  }
  if (!meta.isDirectory()) {
    return unsafe(dir, 'it is not a directory');
  }
  if (meta.uid !== uid) {
    return unsafe(dir, `it is owned by uid ${meta.uid}, not by uid ${uid}`);
  }
  if ((meta.mode & 0o022) !== 0) {
    return unsafe(dir, `others can write to it (mode ${(meta.mode & 0o7777).toString(8)}, owner uid ${meta.uid})`);
  }
  let ancestor: string;
  try {
    ancestor = fs.realpathSync(path.dirname(dir));
  } catch (error) {
    return unsafe(path.dirname(dir), `cannot resolve it: ${String(error)}`);
  }
  for (;;) {
    let up: fs.Stats;
    try {
      up = fs.statSync(ancestor);
    } catch (error) {
      return unsafe(ancestor, `cannot inspect it: ${String(error)}`);
    }
    if (up.uid !== uid && up.uid !== 0) {
      return unsafe(ancestor, `it is owned by uid ${up.uid}, who could replace the socket directory ${dir}`);
    }
    if ((up.mode & 0o022) !== 0 && (up.mode & 0o1000) === 0) {
      return unsafe(
        ancestor,
        `others can write to it and it is not sticky (mode ${(up.mode & 0o7777).toString(8)}, owner uid ${up.uid}): anyone could replace the socket directory ${dir}`,
      );
    }
    const parent = path.dirname(ancestor);
    if (parent === ancestor) {
      break;
    }
    ancestor = parent;
  }
  try {
    const own = fs.lstatSync(socket);
    if (own.uid !== uid) {
      return `refusing the socket ${socket}: it belongs to uid ${own.uid}, not to uid ${uid}`;
    }
  } catch {
    // No socket yet: connecting fails and the backoff retries.
  }
  return undefined;
}

/** An error reply of the daemon (`{"err": {"code", "message"}}`). */
export class DaemonError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'DaemonError';
  }
}

/** The daemon is absent, went away, or did not answer within the deadline. */
export class UnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnavailableError';
  }
}

/** Splits a byte stream into lines, refusing a line longer than `limit` bytes. */
export class LineBuffer {
  private pending: Buffer[] = [];
  private pendingLength = 0;

  constructor(private readonly limit: number = MAX_LINE) {}

  /** The complete lines in `chunk` (plus what came before); throws past the limit. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(0x0a, start);
      if (newline < 0) {
        break;
      }
      const piece = chunk.subarray(start, newline);
      if (this.pendingLength + piece.length > this.limit) {
        throw new Error(`a line from cmdrd is longer than ${this.limit} bytes`);
      }
      this.pending.push(piece);
      lines.push(Buffer.concat(this.pending).toString('utf8'));
      this.pending = [];
      this.pendingLength = 0;
      start = newline + 1;
    }
    const rest = chunk.subarray(start);
    if (rest.length > 0) {
      if (this.pendingLength + rest.length > this.limit) {
        throw new Error(`a line from cmdrd is longer than ${this.limit} bytes`);
      }
      // Copy: the socket may reuse the chunk's memory.
      this.pending.push(Buffer.from(rest));
      this.pendingLength += rest.length;
    }
    return lines;
  }
}

export interface Welcome {
  protocol: number;
  daemon_version: string;
  features: string[];
}

/** An event exactly as `cmdrctl watch --json` prints it; unknown types pass through. */
export interface DaemonEvent {
  type: string;
  at: string;
  account?: string;
  profile?: string;
  [field: string]: unknown;
}

export interface ConnectionListener {
  /** Handshake done and subscribed. */
  connected?(welcome: Welcome): void;
  /** The connection is gone (daemon stopped, crashed or never there). Called once per loss. */
  disconnected?(reason: string): void;
  event?(event: DaemonEvent): void;
  /** The daemon refused us (e.g. another protocol version); we keep retrying slowly. */
  refused?(message: string): void;
}

export interface ConnectionOptions {
  /** Evaluated on every attempt, so a changed setting takes effect on the next one. */
  socket: () => string;
  client: string;
  clientVersion: string;
  listener: ConnectionListener;
  /** Deadline of a request without its own, in ms. */
  requestTimeoutMs?: number;
  /** Deadline for the daemon's `Welcome`, in ms. */
  helloTimeoutMs?: number;
  /** First and largest reconnection delay, in ms. */
  backoffMs?: { initial: number; max: number };
}

type Pending = {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
};

/**
 * One connection to cmdrd that keeps itself up: connects, says hello, subscribes, and after
 * any loss retries with exponential backoff; a watch on the socket's directory retries at
 * once when the daemon creates its socket again. Never throws into its caller's event loop.
 */
export class Connection {
  private socket: net.Socket | undefined;
  private welcome: Welcome | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private retryTimer: NodeJS.Timeout | undefined;
  private helloTimer: NodeJS.Timeout | undefined;
  private delay: number;
  private watcher: fs.FSWatcher | undefined;
  private watchedDir: string | undefined;
  private stopped = true;
  private wasConnected = false;
  private readonly requestTimeoutMs: number;
  private readonly helloTimeoutMs: number;
  private readonly backoff: { initial: number; max: number };

  constructor(private readonly options: ConnectionOptions) {
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.helloTimeoutMs = options.helloTimeoutMs ?? 5_000;
    this.backoff = options.backoffMs ?? { initial: 250, max: 10_000 };
    this.delay = this.backoff.initial;
  }

  get connected(): boolean {
    return this.welcome !== undefined;
  }

  get daemonVersion(): string | undefined {
    return this.welcome?.daemon_version;
  }

  /** What the connected daemon can do (`renewals`, `pages`, …); empty while not connected. */
  get features(): string[] {
    return this.welcome?.features ?? [];
  }

  start(): void {
    if (!this.stopped) {
      return;
    }
    this.stopped = false;
    this.attempt();
  }

  /** Drops the connection and reconnects now (e.g. after the socket setting changed). */
  restart(): void {
    this.teardown('reconnecting');
    this.delay = this.backoff.initial;
    if (!this.stopped) {
      this.attempt();
    }
  }

  dispose(): void {
    this.stopped = true;
    this.teardown('closed');
    this.unwatch();
  }

  /**
   * Sends one request (`"list_accounts"`, `{accept: {name}}`, …) and resolves with the
   * `ok` value of its outcome. Rejects with `DaemonError` for an error reply and with
   * `UnavailableError` when not connected, on a lost connection or past the deadline.
   */
  request(request: unknown, timeoutMs?: number): Promise<unknown> {
    const socket = this.socket;
    if (!socket || !this.welcome) {
      return Promise.reject(new UnavailableError('cmdrd is not running (start it with `cmdrd` or `cmdrctl service install`)'));
    }
    const id = this.nextId++;
    const deadline = timeoutMs ?? this.requestTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new UnavailableError(`cmdrd did not answer within ${deadline < 1000 ? `${deadline} ms` : `${Math.round(deadline / 1000)} s`}`));
      }, deadline);
      this.pending.set(id, { resolve, reject, timer });
      socket.write(JSON.stringify({ request: { id, request } }) + '\n');
    });
  }

  private attempt(): void {
    if (this.stopped || this.socket) {
      return;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const target = this.options.socket();
    this.watch(target);
    if (process.platform !== 'win32' && typeof process.getuid === 'function') {
      const problem = unsafeSocket(target, process.geteuid?.() ?? process.getuid());
      if (problem) {
        // Another user could be listening there: never send them a request.
        this.options.listener.refused?.(problem);
        this.schedule(this.backoff.max);
        return;
      }
    }
    const socket = net.createConnection(target);
    this.socket = socket;
    const lines = new LineBuffer();
    socket.on('connect', () => {
      socket.write(
        JSON.stringify({
          hello: { protocol: PROTOCOL_VERSION, client: this.options.client, client_version: this.options.clientVersion },
        }) + '\n',
      );
      this.helloTimer = setTimeout(() => this.fail(socket, 'cmdrd did not answer the hello'), this.helloTimeoutMs);
    });
    socket.on('data', (chunk: Buffer) => {
      let received: string[];
      try {
        received = lines.push(chunk);
      } catch (error) {
        this.fail(socket, String(error));
        return;
      }
      for (const line of received) {
        this.onLine(socket, line);
      }
    });
    // 'error' is always followed by 'close'; absence of the daemon is not an error to show.
    socket.on('error', () => undefined);
    socket.on('close', () => this.fail(socket, 'connection closed'));
  }

  private onLine(socket: net.Socket, line: string): void {
    if (socket !== this.socket) {
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      return; // Not for us to crash over; the daemon only sends JSON.
    }
    if (typeof message !== 'object' || message === null) {
      return;
    }
    const m = message as Record<string, unknown>;
    if (isObject(m.welcome)) {
      clearTimeout(this.helloTimer);
      const welcome = m.welcome as unknown as Welcome;
      if (welcome.protocol !== PROTOCOL_VERSION) {
        this.options.listener.refused?.(
          `cmdrd speaks protocol ${String(welcome.protocol)}, this extension ${PROTOCOL_VERSION}: update one of them`,
        );
        this.fail(socket, 'incompatible daemon', this.backoff.max);
        return;
      }
      this.welcome = welcome;
      this.delay = this.backoff.initial;
      this.wasConnected = true;
      // Subscribe before telling the listener, so nothing between list and subscribe is lost.
      this.request('subscribe').then(
        () => this.options.listener.connected?.(welcome),
        () => undefined,
      );
    } else if (isObject(m.response)) {
      const response = m.response as { id?: unknown; outcome?: unknown };
      const pending = typeof response.id === 'number' ? this.pending.get(response.id) : undefined;
      if (!pending) {
        return;
      }
      this.pending.delete(response.id as number);
      clearTimeout(pending.timer);
      const outcome = response.outcome;
      if (isObject(outcome) && 'ok' in outcome) {
        pending.resolve(outcome.ok);
      } else if (isObject(outcome) && isObject(outcome.err)) {
        const err = outcome.err as { code?: unknown; message?: unknown };
        pending.reject(new DaemonError(String(err.code ?? 'unknown'), String(err.message ?? 'cmdrd refused the request')));
      } else {
        pending.reject(new DaemonError('unknown', 'cmdrd sent a response this extension does not understand'));
      }
    } else if (isObject(m.event)) {
      const event = m.event as DaemonEvent;
      if (typeof event.type === 'string') {
        this.options.listener.event?.(event);
      }
    } else if (isObject(m.refused)) {
      const refused = m.refused as { message?: unknown };
      this.options.listener.refused?.(String(refused.message ?? 'cmdrd refused the connection'));
      this.fail(socket, 'refused', this.backoff.max);
    }
  }

  /** Closes `socket` if it is still the current one and schedules the next attempt. */
  private fail(socket: net.Socket, reason: string, delay?: number): void {
    if (socket !== this.socket) {
      return;
    }
    this.teardown(reason);
    this.schedule(delay);
  }

  private teardown(reason: string): void {
    clearTimeout(this.helloTimer);
    const socket = this.socket;
    this.socket = undefined;
    this.welcome = undefined;
    socket?.destroy();
    for (const [, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(new UnavailableError('the connection to cmdrd closed'));
    }
    this.pending.clear();
    if (this.wasConnected) {
      this.wasConnected = false;
      this.options.listener.disconnected?.(reason);
    }
  }

  private schedule(delay?: number): void {
    if (this.stopped || this.retryTimer) {
      return;
    }
    const wait = delay ?? this.delay;
    this.delay = Math.min(this.delay * 2, this.backoff.max);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.attempt();
    }, wait);
  }

  /**
   * Watches the socket's directory (or, while that is missing, its parent): when the
   * daemon (re)creates its socket we connect at once instead of waiting out the backoff.
   */
  private watch(socket: string): void {
    if (process.platform === 'win32') {
      return; // Named pipes are not files; the backoff alone serves there.
    }
    const dir = path.dirname(socket);
    const target = fs.existsSync(dir) ? dir : path.dirname(dir);
    if (target === this.watchedDir) {
      return;
    }
    this.unwatch();
    try {
      const watcher = fs.watch(target, { persistent: false }, () => {
        if (!this.socket && !this.stopped) {
          // Give the daemon a moment between bind and listen; one retry at most.
          clearTimeout(this.retryTimer);
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.attempt();
          }, 50);
        }
      });
      watcher.on('error', () => this.unwatch());
      this.watcher = watcher;
      this.watchedDir = target;
    } catch {
      this.watchedDir = undefined; // Nothing to watch yet: backoff only.
    }
  }

  private unwatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.watchedDir = undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
