// A real cmdrd in a temp HOME for the unit tests: its own socket under a private
// XDG_RUNTIME_DIR, its own AWS files, the real cmdrctl next to it. The binaries come from
// CMDR_BIN_DIR (editors/vscode/test sets it). Never touches the real ~/.aws.
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Connection, socketPath } from '../src/protocol';

export function binDir(): string {
  const dir = process.env.CMDR_BIN_DIR;
  if (!dir || !fs.existsSync(path.join(dir, 'cmdrd')) || !fs.existsSync(path.join(dir, 'cmdrctl'))) {
    throw new Error(`CMDR_BIN_DIR must name a directory with cmdrd and cmdrctl (got ${JSON.stringify(dir)})`);
  }
  return dir;
}

export function creds(profile: string, token: string): string {
  return `[${profile}]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-${profile}\naws_session_token = ${token}\n`;
}

export class Sandbox {
  readonly root: string;
  readonly home: string;
  readonly runDir: string;
  /** Put before PATH for the daemon and cmdrctl (recorders standing in for xdg-open). */
  pathPrefix: string | undefined;
  private daemon: ChildProcess | undefined;
  private exited: Promise<void> | undefined;

  constructor(token = 'TOKEN-ONE') {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'cmdr-vscode-'));
    this.home = path.join(this.root, 'home');
    this.runDir = path.join(this.root, 'run');
    fs.mkdirSync(path.join(this.home, '.aws'), { recursive: true });
    fs.mkdirSync(this.runDir, { mode: 0o700 });
    fs.mkdirSync(path.join(this.home, '.config', 'cmdr'), { recursive: true });
    // No test reaches real AWS.
    fs.writeFileSync(path.join(this.home, '.config', 'cmdr', 'config.toml'), '[daemon]\nvalidate_on_change = false\n');
    this.writeCredentials(creds('acme', token));
  }

  /** What cmdrd and cmdrctl see: this sandbox's HOME and XDG directories only. */
  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
      PATH: [this.pathPrefix, process.env.PATH ?? '/usr/bin:/bin'].filter((p) => p).join(':'),
      HOME: this.home,
      XDG_RUNTIME_DIR: this.runDir,
      XDG_CONFIG_HOME: path.join(this.home, '.config'),
      XDG_DATA_HOME: path.join(this.home, '.local', 'share'),
      AWS_EC2_METADATA_DISABLED: 'true',
      TZ: 'UTC',
      ...extra,
    };
  }

  /** The socket by the extension's own default logic, from this sandbox's environment. */
  socket(): string {
    return socketPath(undefined, { XDG_RUNTIME_DIR: this.runDir }, 'linux', process.getuid?.() ?? 0);
  }

  credentials(): string {
    return path.join(this.home, '.aws', 'credentials');
  }

  /** Saves by rename, as editors do. */
  writeCredentials(text: string): void {
    const temp = `${this.credentials()}.tmp`;
    fs.writeFileSync(temp, text);
    fs.renameSync(temp, this.credentials());
  }

  /** Starts cmdrd and resolves once it answers a handshake. */
  async start(): Promise<void> {
    if (this.daemon) {
      throw new Error('cmdrd already started');
    }
    const log = fs.openSync(path.join(this.root, 'cmdrd.log'), 'a');
    const child = spawn(path.join(binDir(), 'cmdrd'), [], { env: this.env(), stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.daemon = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const probe = new Connection({
        socket: () => this.socket(),
        client: 'cmdr.vscode-test',
        clientVersion: '0',
        listener: {
          connected: () => {
            probe.dispose();
            resolve();
          },
        },
      });
      child.once('exit', (code) => {
        probe.dispose();
        reject(new Error(`cmdrd exited with ${code}: ${this.log()}`));
      });
      probe.start();
    });
  }

  /** SIGTERM and wait for the exit. */
  async stop(): Promise<void> {
    const child = this.daemon;
    this.daemon = undefined;
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await this.exited;
    }
  }

  signal(signal: NodeJS.Signals): void {
    this.daemon?.kill(signal);
  }

  /**
   * SIGSTOP, resolved once every thread of the daemon is stopped: kill() returns before a
   * thread running on another core has stopped, and it could still answer. The kernel
   * offers no event for that to a non-parent, so this reads /proc/PID/stat (bounded).
   */
  async freeze(): Promise<void> {
    const pid = this.daemon?.pid;
    this.signal('SIGSTOP');
    for (let i = 0; i < 1000; i++) {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      // The state follows the parenthesised command name, which may itself contain spaces.
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    throw new Error('cmdrd did not stop on SIGSTOP');
  }

  log(): string {
    try {
      return fs.readFileSync(path.join(this.root, 'cmdrd.log'), 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }

  ctl(args: string[], extraEnv: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
    const out = spawnSync(path.join(binDir(), 'cmdrctl'), args, { env: this.env(extraEnv), encoding: 'utf8', timeout: 30_000 });
    return { status: out.status, stdout: out.stdout, stderr: out.stderr };
  }

  /** `cmdrctl ARGS --json`, parsed; throws with stderr on failure. */
  json(args: string[]): unknown {
    const out = this.ctl([...args, '--json']);
    if (out.status !== 0) {
      throw new Error(`cmdrctl ${args.join(' ')} failed (${out.status}): ${out.stderr}`);
    }
    return JSON.parse(out.stdout);
  }

  addAccount(name: string, extra: string[] = []): void {
    const out = this.ctl(['accounts', 'add', name, '--profile', 'acme', ...extra]);
    if (out.status !== 0) {
      throw new Error(`accounts add failed: ${out.stderr}`);
    }
  }

  async cleanup(): Promise<void> {
    await this.stop();
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** Resolves with the first value `next` yields that satisfies `accept`. */
export class Queue<T> {
  private readonly items: T[] = [];
  private waiters: { accept: (t: T) => boolean; resolve: (t: T) => void }[] = [];

  push(item: T): void {
    const waiter = this.waiters.find((w) => w.accept(item));
    if (waiter) {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      waiter.resolve(item);
    } else {
      this.items.push(item);
    }
  }

  next(accept: (t: T) => boolean = () => true): Promise<T> {
    const index = this.items.findIndex(accept);
    if (index >= 0) {
      return Promise.resolve(this.items.splice(index, 1)[0]);
    }
    return new Promise((resolve) => this.waiters.push({ accept, resolve }));
  }
}
