// What the extension shows, computed from the daemon's accounts and events: time left (as
// `cmdrctl prompt`), the status-bar account and its colour, notification texts, and the
// cmdrctl command lines for Renew and Open Terminal. Pure functions, no VS Code API.

/** One account, as `accounts list --json` prints it (fields we do not know are kept). */
export interface Account {
  name: string;
  profile: string;
  region?: string | null;
  target?: string;
  endpoint?: string | null;
  on_change?: string;
  state: string;
  fingerprint?: string | null;
  accepted_fingerprint?: string | null;
  expires_at?: string | null;
  expiry_source?: string | null;
  account_id?: string | null;
  portal?: string | null;
  /** Whether cmdrd renews the account itself (`renewals_page`, as `accounts list --json`). */
  auto_renew?: boolean;
  /** When the sign-in to the account's portal ends, while cmdrd keeps it. */
  signin_expires_at?: string | null;
  /** The sso-session (portal) it renews through. */
  session?: string | null;
  /**
   * When cmdrd renews it next by itself, before its token ends (`renewal_plans`): null when
   * it will not; unset from a daemon older than that.
   */
  renews_at?: string | null;
  [field: string]: unknown;
}

/**
 * How one account renews, as the daemon's `renewal_plans` gives it (`renewals_page` of an
 * older daemon: no `renews_at`).
 */
export interface RenewalFacts {
  account: string;
  auto_renew: boolean;
  session?: string | null;
  signin_expires_at?: string | null;
  renews_at?: string | null;
}

/** The accounts with how each renews merged in (fields of a daemon that says nothing stay unset). */
export function withRenewals(accounts: Account[], facts: RenewalFacts[]): Account[] {
  const by = new Map(facts.map((f) => [f.account, f]));
  return accounts.map((a) => {
    const f = by.get(a.name);
    if (!f) {
      return a;
    }
    const merged: Account = { ...a, auto_renew: f.auto_renew, session: f.session ?? null, signin_expires_at: f.signin_expires_at ?? null };
    if (f.renews_at !== undefined) {
      merged.renews_at = f.renews_at;
    }
    return merged;
  });
}

/**
 * Whether the account renews itself before its token ends, with nobody's help. Its
 * `expiring_soon` is then no alarm. The daemon says so (`renews_at`); from an older one
 * that only says it renews it, the portal's sign-in must also last beyond the token (else
 * the token is the last one until someone signs in).
 */
export function renewsItself(account: Account | undefined): boolean {
  if (!account || account.auto_renew !== true) {
    return false;
  }
  if (account.renews_at !== undefined) {
    return account.renews_at !== null;
  }
  const signin = remaining(account.signin_expires_at, new Date(0));
  const token = remaining(account.expires_at, new Date(0));
  return signin !== undefined && token !== undefined && signin > token;
}

/** `HH:MM` in local time, or undefined when unparsable. */
export function clock(at: string | null | undefined): string | undefined {
  const ms = at ? Date.parse(at) : NaN;
  if (Number.isNaN(ms)) {
    return undefined;
  }
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/** `signed in until 18:00` for an account on a kept portal; empty otherwise. */
export function portalClock(account: Account): string {
  const at = clock(account.signin_expires_at);
  return at ? `signed in until ${at}` : '';
}

export type Severity = 'ok' | 'warning' | 'error';

/** States that need the user, shown instead of the time left (as `cmdrctl prompt`). */
const ATTENTION: Record<string, string> = {
  changed: 'CHANGED',
  missing: 'MISSING',
  invalid: 'INVALID',
  expired: 'EXPIRED',
};

/**
 * Drops control characters (C0, DEL, C1) and bidi overrides: account names, paths and
 * messages come from files and other clients, and must not steer what the user sees.
 */
export function sanitize(text: unknown): string {
  // eslint-disable-next-line no-control-regex
  return String(text ?? '').replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, '');
}

/** Milliseconds until `expiresAt`, or undefined when unknown or unparsable. */
export function remaining(expiresAt: string | null | undefined, now: Date): number | undefined {
  if (!expiresAt) {
    return undefined;
  }
  const at = Date.parse(expiresAt);
  return Number.isNaN(at) ? undefined : at - now.getTime();
}

/** `45s`, `15m`, `3h07m`, `2d4h`: the same as cmdr-core's `format_duration`. */
export function formatDuration(ms: number): string {
  const secs = Math.max(0, Math.floor(ms / 1000));
  const days = Math.floor(secs / 86_400);
  const hours = Math.floor((secs % 86_400) / 3600);
  const mins = Math.floor((secs % 3600) / 60);
  if (days > 0) {
    return `${days}d${hours}h`;
  }
  if (hours > 0) {
    return `${hours}h${String(mins).padStart(2, '0')}m`;
  }
  if (mins > 0) {
    return `${mins}m`;
  }
  return `${secs}s`;
}

/** `3h12m`, `EXPIRED`, or the state when it needs attention; empty when unknown. */
export function left(account: Account, now: Date): string {
  const attention = ATTENTION[account.state];
  if (attention) {
    return attention;
  }
  const ms = remaining(account.expires_at, now);
  if (ms === undefined) {
    return '';
  }
  return ms <= 0 ? 'EXPIRED' : formatDuration(ms);
}

/** Warning while expiring; error when expired, invalid, changed, missing or misconfigured. */
export function severity(account: Account, now: Date): Severity {
  switch (account.state) {
    case 'expired':
    case 'invalid':
    case 'changed':
    case 'missing':
    case 'misconfigured':
      return 'error';
    case 'expiring':
      // Renewed before it ends, by cmdrd: informational, not yellow.
      return renewsItself(account) ? 'ok' : 'warning';
  }
  const ms = remaining(account.expires_at, now);
  return ms !== undefined && ms <= 0 ? 'error' : 'ok';
}

/** The status-bar account: the configured one if it exists, else the one expiring first. */
export function pickAccount(accounts: Account[], wanted: string | undefined): Account | undefined {
  if (wanted) {
    const match = accounts.find((a) => a.name === wanted);
    if (match) {
      return match;
    }
  }
  const byExpiry = (a: Account) => {
    const at = a.expires_at ? Date.parse(a.expires_at) : NaN;
    return Number.isNaN(at) ? Number.POSITIVE_INFINITY : at;
  };
  return [...accounts].sort((a, b) => byExpiry(a) - byExpiry(b) || a.name.localeCompare(b.name))[0];
}

/** The status-bar text without icon: `acme 3h12m`. */
export function statusText(account: Account, now: Date): string {
  return `${sanitize(account.name)} ${left(account, now)}`.trim();
}

/** One line per account, for the tooltip, the quick pick and `cmdr.status`. */
export function describeAccount(account: Account, now: Date): string {
  const parts = [`${sanitize(account.name)}: ${sanitize(account.state)}`];
  const l = left(account, now);
  if (l && l !== ATTENTION[account.state]) {
    parts.push(l);
  }
  const where = [sanitize(account.profile), account.region ? sanitize(account.region) : undefined, account.target ? sanitize(account.target) : undefined]
    .filter((p) => p)
    .join(', ');
  const portal = portalClock(account);
  if (portal) {
    parts.push(renewsItself(account) ? `renews itself, ${portal}` : portal);
  }
  return `${parts.join(' · ')} (profile ${where})`;
}

/** What a notification offers. */
export type Action = 'accept' | 'ignore' | 'renew' | 'signin';

export interface Notice {
  level: 'info' | 'warning' | 'error';
  message: string;
  actions: Action[];
  account?: string;
  /** The sso-session to sign in to on **Sign in** (`cmdrctl login SESSION`). */
  session?: string;
}

/** Button labels, as the desktop notifications of cmdrd name them. */
export const ACTION_LABELS: Record<Action, string> = {
  accept: 'Use new token',
  ignore: 'Ignore',
  renew: 'Renew',
  signin: 'Sign in',
};

/**
 * The notification for an event, or undefined for events that only refresh the view
 * (and for types this extension does not know: more may appear within a protocol version).
 * `onChange` is the account's policy: an `auto` account accepts by itself; `renews` whether
 * it renews itself before its token ends (`renewsItself`): its expiry is then no alarm.
 * `signed_in` and `token_renewed` only refresh the view.
 */
export function notice(event: { type: string; [field: string]: unknown }, onChange: string | undefined, now: Date, renews = false): Notice | undefined {
  const account = event.account === undefined ? undefined : sanitize(event.account);
  switch (event.type) {
    case 'token_changed':
      if (onChange === 'auto' || account === undefined) {
        return undefined;
      }
      return {
        level: 'warning',
        message: `cmdr: the token for ${account} (profile ${sanitize(event.profile)}) changed. Use it?`,
        actions: ['accept', 'ignore'],
        account,
      };
    case 'expiring_soon': {
      const ms = remaining(event.expires_at as string | undefined, now);
      const when = ms !== undefined && ms > 0 ? `in ${formatDuration(ms)}` : 'soon';
      if (renews) {
        return { level: 'info', message: `cmdr: ${account} expires ${when}; cmdrd renews it before then`, actions: [], account };
      }
      return { level: 'warning', message: `cmdr: ${account} expires ${when}`, actions: ['renew'], account };
    }
    case 'signin_required': {
      const session = typeof event.session === 'string' && event.session !== '' ? event.session : undefined;
      const reason = event.reason ? ` (${sanitize(event.reason)})` : '';
      return {
        level: 'warning',
        message: `cmdr: the sign-in to ${sanitize(event.portal)}${session ? ` (sso-session ${sanitize(session)})` : ''} ended${reason}; its accounts renew themselves again once you sign in`,
        actions: session ? ['signin'] : [],
        session,
      };
    }
    case 'expired':
      return { level: 'warning', message: `cmdr: the session of ${account} has expired`, actions: ['renew'], account };
    case 'identity_changed':
      return {
        level: 'error',
        message: `cmdr: ${account} now holds AWS account ${sanitize(event.new_account_id)}, not ${sanitize(event.old_account_id)}. Accept it only if that is intended.`,
        actions: ['accept'],
        account,
      };
    case 'endpoint_moved':
      return {
        level: 'warning',
        message: `cmdr: another program held the credentials endpoint's port (${sanitize(event.old_url)}) when cmdrd started; it now listens on ${sanitize(event.new_url)}. Terminals opened before (cmdr: Open Terminal) and programs started with \`cmdrctl exec\` get no credentials until opened again.`,
        actions: [],
      };
    case 'file_error':
      return {
        level: 'warning',
        message: `cmdr: ${sanitize(event.path)}${event.line ? ` line ${sanitize(event.line)}` : ''}: ${sanitize(event.message)} (the last good version is kept)`,
        actions: [],
      };
    default:
      return undefined;
  }
}

/** A command line to run without a shell. */
export interface CommandLine {
  command: string;
  args: string[];
  /** Extra environment for the child (the socket the extension talks to). */
  env: Record<string, string>;
}

/** Account names go to cmdrctl as arguments; one that looks like an option is refused. */
function checkName(name: string): void {
  if (name === '' || name.startsWith('-') || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new Error(`not an account name: ${JSON.stringify(sanitize(name))}`);
  }
}

/** `cmdrctl renew NAME`, against the same daemon as the extension. */
export function renewCommand(cmdrctl: string, socket: string, name: string): CommandLine {
  checkName(name);
  return { command: cmdrctl || 'cmdrctl', args: ['renew', name], env: { CMDR_SOCKET: socket } };
}

/** `cmdrctl login SESSION`, against the same daemon as the extension (run in a terminal: the
 * browser or the device code needs a person). */
export function loginCommand(cmdrctl: string, socket: string, session: string): CommandLine {
  checkName(session);
  return { command: cmdrctl || 'cmdrctl', args: ['login', session], env: { CMDR_SOCKET: socket } };
}

/** `cmdrctl env NAME --serve --json`, against the same daemon as the extension. */
export function envCommand(cmdrctl: string, socket: string, name: string): CommandLine {
  checkName(name);
  return { command: cmdrctl || 'cmdrctl', args: ['env', name, '--serve', '--json'], env: { CMDR_SOCKET: socket } };
}

/**
 * Parses `env --json` output: an object of variable name -> value, null to unset. The
 * result is what VS Code's `TerminalOptions.env` takes (null deletes a variable there).
 */
export function parseEnv(stdout: string): Record<string, string | null> {
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch {
    throw new Error('cmdrctl env did not print JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error('cmdrctl env did not print a JSON object');
  }
  const env: Record<string, string | null> = {};
  for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new Error(`cmdrctl env printed an invalid variable name: ${JSON.stringify(sanitize(name))}`);
    }
    if (v !== null && typeof v !== 'string') {
      throw new Error(`cmdrctl env printed a non-string value for ${name}`);
    }
    env[name] = v;
  }
  return env;
}
