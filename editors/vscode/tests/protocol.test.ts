// The protocol module against a real cmdrd on a temp socket: handshake, requests, events,
// error replies, deadlines on a stopped (SIGSTOP) daemon, reconnecting after a restart,
// and the socket-path and line-splitting rules.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Connection, DaemonError, DaemonEvent, LineBuffer, UnavailableError, socketPath, unsafeSocket } from '../src/protocol';
import { Queue, Sandbox, creds } from './sandbox';

/** Generous: a deadline against hanging, never an assertion about speed. */
const LIMIT = { timeout: 60_000 };

type Seen = { kind: 'connected' } | { kind: 'disconnected' } | { kind: 'event'; event: DaemonEvent } | { kind: 'refused'; message: string };

function client(sb: Sandbox, options: { requestTimeoutMs?: number; helloTimeoutMs?: number } = {}): { connection: Connection; seen: Queue<Seen> } {
  const seen = new Queue<Seen>();
  const connection = new Connection({
    socket: () => sb.socket(),
    client: 'cmdr.vscode-test',
    clientVersion: '0.1.0',
    backoffMs: { initial: 100, max: 1000 },
    ...options,
    listener: {
      connected: () => seen.push({ kind: 'connected' }),
      disconnected: () => seen.push({ kind: 'disconnected' }),
      event: (event) => seen.push({ kind: 'event', event }),
      refused: (message) => seen.push({ kind: 'refused', message }),
    },
  });
  return { connection, seen };
}

interface AccountRow {
  name: string;
  state: string;
  fingerprint: string | null;
  accepted_fingerprint: string | null;
}

describe('socket path', () => {
  const cases: [string, string | undefined, Record<string, string>, NodeJS.Platform, string][] = [
    ['setting wins', '/s/custom.sock', { CMDR_SOCKET: '/env.sock', XDG_RUNTIME_DIR: '/run/user/7' }, 'linux', '/s/custom.sock'],
    ['blank setting is no setting', '  ', { CMDR_SOCKET: '/env.sock' }, 'linux', '/env.sock'],
    ['CMDR_SOCKET', undefined, { CMDR_SOCKET: '/env.sock', XDG_RUNTIME_DIR: '/run/user/7' }, 'linux', '/env.sock'],
    ['XDG_RUNTIME_DIR on Linux', undefined, { XDG_RUNTIME_DIR: '/run/user/7' }, 'linux', '/run/user/7/cmdr/cmdrd.sock'],
    ['relative XDG_RUNTIME_DIR is ignored', undefined, { XDG_RUNTIME_DIR: 'run' }, 'linux', '/tmp/cmdr-7/cmdrd.sock'],
    ['no XDG_RUNTIME_DIR', undefined, {}, 'linux', '/tmp/cmdr-7/cmdrd.sock'],
    ['macOS uses TMPDIR', undefined, { TMPDIR: '/var/folders/x/T', XDG_RUNTIME_DIR: '/run/user/7' }, 'darwin', '/var/folders/x/T/cmdr-7/cmdrd.sock'],
    ['Windows named pipe', undefined, { USERNAME: 'ada' }, 'win32', '\\\\.\\pipe\\cmdrd-ada'],
  ];
  for (const [name, setting, env, platform, expected] of cases) {
    test(name, () => assert.equal(socketPath(setting, env, platform, 7), expected));
  }
});

describe('socket trust (as cmdr-client)', { skip: process.platform === 'win32' }, () => {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cmdr-trust-'));
  const run = path.join(root, 'run');
  const dir = path.join(run, 'cmdr');
  const socket = path.join(dir, 'cmdrd.sock');
  fs.mkdirSync(dir, { recursive: true });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  test('a private directory passes; a missing one is not checked', () => {
    fs.chmodSync(run, 0o700);
    fs.chmodSync(dir, 0o700);
    assert.equal(unsafeSocket(socket, uid), undefined);
    assert.equal(unsafeSocket(path.join(run, 'absent', 'cmdrd.sock'), uid), undefined);
  });

  test('someone else\'s, writable by others, or a symlink is refused, naming path and owner', () => {
    assert.match(unsafeSocket(socket, uid + 1) ?? '', new RegExp(`${dir}: it is owned by uid ${uid}`));
    fs.chmodSync(dir, 0o777);
    assert.match(unsafeSocket(socket, uid) ?? '', /others can write to it \(mode 777/);
    fs.chmodSync(dir, 0o700);
    const link = path.join(run, 'link');
    fs.symlinkSync(dir, link);
    assert.match(unsafeSocket(path.join(link, 'cmdrd.sock'), uid) ?? '', /symlink/);
  });

  test('a runtime directory others can write is refused unless sticky', () => {
    fs.chmodSync(run, 0o777);
    assert.match(unsafeSocket(socket, uid) ?? '', new RegExp(`${fs.realpathSync(run)}: .*not sticky`));
    fs.chmodSync(run, 0o1777);
    assert.equal(unsafeSocket(socket, uid), undefined);
    fs.chmodSync(run, 0o700);
  });
});

describe('line buffer', () => {
  test('splits lines across and within chunks', () => {
    const lines = new LineBuffer(64);
    assert.deepEqual(lines.push(Buffer.from('{"a":')), []);
    assert.deepEqual(lines.push(Buffer.from('1}\n{"b":2}\n{"c"')), ['{"a":1}', '{"b":2}']);
    assert.deepEqual(lines.push(Buffer.from(':3}\n')), ['{"c":3}']);
  });
  test('keeps a multi-byte character split between chunks', () => {
    const lines = new LineBuffer(64);
    const bytes = Buffer.from('"é"\n');
    assert.deepEqual(lines.push(bytes.subarray(0, 2)), []);
    assert.deepEqual(lines.push(bytes.subarray(2)), ['"é"']);
  });
  test('refuses a line over the cap, with or without its newline', () => {
    assert.deepEqual(new LineBuffer(4).push(Buffer.from('1234\n')), ['1234']);
    assert.throws(() => new LineBuffer(4).push(Buffer.from('12345\n')), /longer than 4 bytes/);
    const lines = new LineBuffer(4);
    lines.push(Buffer.from('123'));
    assert.throws(() => lines.push(Buffer.from('45')), /longer than 4 bytes/);
  });
});

describe('against a real cmdrd', () => {
  const sandboxes: Sandbox[] = [];
  const connections: Connection[] = [];
  after(async () => {
    connections.forEach((c) => c.dispose());
    await Promise.all(sandboxes.map((s) => s.cleanup()));
  });
  async function setup(): Promise<Sandbox> {
    const sb = new Sandbox();
    sandboxes.push(sb);
    await sb.start();
    sb.addAccount('acme');
    return sb;
  }

  test('handshake, subscribe, list accounts', LIMIT, async () => {
    const sb = await setup();
    const { connection, seen } = client(sb);
    connections.push(connection);
    connection.start();
    await seen.next((s) => s.kind === 'connected');
    assert.equal(connection.connected, true);
    assert.match(connection.daemonVersion ?? '', /^\d+\.\d+\.\d+/);
    const value = (await connection.request('list_accounts')) as { accounts: AccountRow[] };
    assert.deepEqual(
      value.accounts.map((a) => a.name),
      ['acme'],
    );
  });

  test('a new token arrives as token_changed and accept takes it like cmdrctl accept', LIMIT, async () => {
    const sb = await setup();
    const { connection, seen } = client(sb);
    connections.push(connection);
    connection.start();
    await seen.next((s) => s.kind === 'connected');
    sb.writeCredentials(creds('acme', 'TOKEN-TWO'));
    const seenChange = await seen.next((s) => s.kind === 'event' && s.event.type === 'token_changed');
    assert.ok(seenChange.kind === 'event');
    const changed = seenChange as { kind: 'event'; event: DaemonEvent };
    assert.equal(changed.event.account, 'acme');
    assert.equal(changed.event.profile, 'acme');
    assert.match(changed.event.at, /^\d{4}-\d\d-\d\dT/);
    const [before] = sb.json(['accounts', 'list']) as AccountRow[];
    assert.equal(before.state, 'changed');
    assert.notEqual(before.fingerprint, before.accepted_fingerprint);

    const accepted = (await connection.request({ accept: { name: 'acme' } })) as { account: AccountRow };
    assert.equal(accepted.account.accepted_fingerprint, accepted.account.fingerprint);
    await seen.next((s) => s.kind === 'event' && s.event.type === 'token_accepted' && s.event.account === 'acme');
    const [afterwards] = sb.json(['accounts', 'list']) as AccountRow[];
    assert.notEqual(afterwards.state, 'changed');
    assert.equal(afterwards.accepted_fingerprint, afterwards.fingerprint);
  });

  test('an error reply carries the code and message', LIMIT, async () => {
    const sb = await setup();
    const { connection, seen } = client(sb);
    connections.push(connection);
    connection.start();
    await seen.next((s) => s.kind === 'connected');
    await assert.rejects(connection.request({ accept: { name: 'nobody' } }), (e: unknown) => {
      assert.ok(e instanceof DaemonError);
      const error = e as DaemonError;
      assert.equal(error.code, 'not_found');
      assert.match(error.message, /nobody/);
      return true;
    });
  });

  test('a wedged daemon: requests and the hello meet their deadline, then it recovers', LIMIT, async () => {
    const sb = await setup();
    const { connection, seen } = client(sb, { requestTimeoutMs: 300, helloTimeoutMs: 300 });
    connections.push(connection);
    connection.start();
    await seen.next((s) => s.kind === 'connected');
    await sb.freeze();
    try {
      await assert.rejects(connection.request('status'), UnavailableError);
      // A fresh connection to the stopped daemon is accepted by the kernel but never
      // welcomed: the hello deadline drops it instead of waiting for ever.
      connection.restart();
      await seen.next((s) => s.kind === 'disconnected');
      await assert.rejects(connection.request('status'), UnavailableError);
    } finally {
      sb.signal('SIGCONT');
    }
    await seen.next((s) => s.kind === 'connected');
    const value = (await connection.request('status')) as { status: { profiles: number } };
    assert.equal(value.status.profiles, 1);
  });

  test('reconnects after the daemon restarts; quiet while it is away', LIMIT, async () => {
    const sb = await setup();
    const { connection, seen } = client(sb);
    connections.push(connection);
    connection.start();
    await seen.next((s) => s.kind === 'connected');
    await sb.stop();
    const stopping = await seen.next((s) => s.kind === 'event' || s.kind === 'disconnected');
    if (stopping.kind === 'event') {
      assert.equal(stopping.event.type, 'daemon_stopping');
      await seen.next((s) => s.kind === 'disconnected');
    }
    assert.equal(connection.connected, false);
    await assert.rejects(connection.request('list_accounts'), UnavailableError);
    await sb.start();
    await seen.next((s) => s.kind === 'connected');
    const value = (await connection.request('list_accounts')) as { accounts: AccountRow[] };
    assert.equal(value.accounts[0].name, 'acme');
    // The daemon was only away: nothing was refused.
    const refused = await Promise.race([seen.next((s) => s.kind === 'refused'), Promise.resolve(undefined)]);
    assert.equal(refused, undefined);
  });

  test('started before the daemon: connects once it appears', LIMIT, async () => {
    const sb = new Sandbox();
    sandboxes.push(sb);
    const { connection, seen } = client(sb);
    connections.push(connection);
    connection.start();
    await assert.rejects(connection.request('status'), UnavailableError);
    await sb.start();
    await seen.next((s) => s.kind === 'connected');
    assert.equal(connection.connected, true);
  });
});
