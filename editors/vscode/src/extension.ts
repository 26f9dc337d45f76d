// The VS Code side: a status-bar item for the account expiring first (or the configured
// one), notifications for token changes and expiry, the cmdr.* commands, and a terminal
// that follows the account. Everything about the daemon goes through ./protocol.
import * as vscode from 'vscode';

import {
  ACTION_LABELS,
  Account,
  Action,
  describeAccount,
  envCommand,
  left,
  loginCommand,
  notice,
  parseEnv,
  pickAccount,
  RenewalFacts,
  renewCommand,
  renewsItself,
  portalClock,
  sanitize,
  severity,
  statusText,
  withRenewals,
} from './model';
import { Connection, DaemonEvent, socketPath } from './protocol';
import { run } from './runner';

const VERSION = '0.1.0';
/** `renew` may wait for the user to finish `aws sso login` in the browser. */
const RENEW_TIMEOUT_MS = 10 * 60_000;
const ENV_TIMEOUT_MS = 15_000;
/** STS may take the daemon's own validation timeout and then some. */
const VALIDATE_TIMEOUT_MS = 30_000;
const NOT_RUNNING = 'cmdrd is not running: start it with `cmdrd` or `cmdrctl service install` (reconnects by itself)';

class Cmdr implements vscode.Disposable {
  private accounts = new Map<string, Account>();
  private readonly item: vscode.StatusBarItem;
  private readonly output: vscode.OutputChannel;
  private readonly connection: Connection;
  private readonly tick: NodeJS.Timeout;
  private refreshing = false;
  private refreshAgain = false;
  /** Notifications on screen, by `type/account`: a burst of events shows one, not ten. */
  private readonly open = new Set<string>();

  constructor() {
    this.item = vscode.window.createStatusBarItem('cmdr.status', vscode.StatusBarAlignment.Left, 100);
    this.item.name = 'cmdr';
    this.item.command = 'cmdr.accounts';
    this.output = vscode.window.createOutputChannel('cmdr');
    this.connection = new Connection({
      socket: () => this.socket(),
      client: 'cmdr.vscode',
      clientVersion: VERSION,
      listener: {
        connected: () => this.refresh(),
        disconnected: () => {
          this.accounts.clear();
          this.render();
        },
        event: (event) => this.onEvent(event),
        refused: (message) => this.output.appendLine(`refused: ${sanitize(message)}`),
      },
    });
    // The time left is shown in minutes: redraw, never re-ask the daemon.
    this.tick = setInterval(() => this.render(), 30_000);
    this.render();
    this.item.show();
    this.connection.start();
  }

  dispose(): void {
    clearInterval(this.tick);
    this.connection.dispose();
    this.item.dispose();
    this.output.dispose();
  }

  socket(): string {
    const setting = vscode.workspace.getConfiguration('cmdr').get<string>('socket');
    const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
    return socketPath(setting, process.env, process.platform, uid);
  }

  onConfigurationChanged(change: vscode.ConfigurationChangeEvent): void {
    if (change.affectsConfiguration('cmdr.socket')) {
      this.connection.restart();
    }
    if (change.affectsConfiguration('cmdr.statusBarAccount')) {
      this.render();
    }
  }

  private refresh(): void {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    this.connection
      .request('list_accounts')
      .then(async (value) => {
        const list = (value as { accounts?: Account[] } | undefined)?.accounts;
        if (Array.isArray(list)) {
          // How each renews (the portal's clock), from a daemon that says.
          const facts = await this.renewals().catch(() => []);
          this.accounts = new Map(withRenewals(list, facts).map((a) => [a.name, a]));
        }
      })
      .then(
        () => undefined,
        () => undefined, // Lost connection: `disconnected` redraws.
      )
      .finally(() => {
        this.refreshing = false;
        this.render();
        if (this.refreshAgain) {
          this.refreshAgain = false;
          this.refresh();
        }
      });
  }

  /**
   * Every account's renewal facts, page by page: `renewal_plans` (with `renews_at`), or
   * `renewals_page` of an older daemon; none from one older still.
   */
  private async renewals(): Promise<RenewalFacts[]> {
    const features = this.connection.features;
    const kind = features.includes('renewal_plans') ? 'renewal_plans' : features.includes('renewals') ? 'renewals_page' : undefined;
    if (kind === undefined) {
      return [];
    }
    const all: RenewalFacts[] = [];
    let after: string | null = null;
    for (let pages = 0; pages < 1000; pages++) {
      const value = (await this.connection.request({ [kind]: { after, limit: 1000 } })) as
        | Record<string, { items?: RenewalFacts[]; next?: string | null } | undefined>
        | undefined;
      const page = value?.[kind];
      all.push(...(page?.items ?? []));
      const next = page?.next ?? null;
      if (next === null || (after !== null && next <= after)) {
        break;
      }
      after = next;
    }
    return all;
  }

  private onEvent(event: DaemonEvent): void {
    const account = typeof event.account === 'string' ? this.accounts.get(event.account) : undefined;
    const n = notice(event, account?.on_change, new Date(), renewsItself(account));
    if (n) {
      this.show(event.type, n.level, n.message, n.actions, n.account, n.session);
    }
    // Any event may change an account's state (a profile removed, events missed after
    // `lagged`, types added later): re-list, coalesced while a listing is in flight.
    this.refresh();
  }

  private show(type: string, level: 'info' | 'warning' | 'error', message: string, actions: Action[], account?: string, session?: string): void {
    const key = `${type}/${account ?? session ?? ''}`;
    if (this.open.has(key)) {
      return;
    }
    this.open.add(key);
    const labels = actions.map((a) => ACTION_LABELS[a]);
    const shown =
      level === 'error'
        ? vscode.window.showErrorMessage(message, ...labels)
        : level === 'warning'
          ? vscode.window.showWarningMessage(message, ...labels)
          : vscode.window.showInformationMessage(message, ...labels);
    shown.then((choice) => {
      this.open.delete(key);
      const action = actions.find((a) => ACTION_LABELS[a] === choice);
      if (account !== undefined && action === 'accept') {
        void this.accept(account);
      } else if (account !== undefined && action === 'renew') {
        void this.renew(account);
      } else if (session !== undefined && action === 'signin') {
        this.signIn(session);
      }
    });
  }

  render(): void {
    const item = this.item;
    if (!this.connection.connected) {
      item.text = '$(key) cmdr';
      item.color = new vscode.ThemeColor('disabledForeground');
      item.backgroundColor = undefined;
      item.tooltip = NOT_RUNNING;
      item.accessibilityInformation = { label: 'cmdr: daemon not running' };
      return;
    }
    item.color = undefined;
    const now = new Date();
    const accounts = [...this.accounts.values()];
    const wanted = vscode.workspace.getConfiguration('cmdr').get<string>('statusBarAccount') || undefined;
    const shown = pickAccount(accounts, wanted);
    if (!shown) {
      item.text = '$(key) cmdr';
      item.backgroundColor = undefined;
      item.tooltip = 'cmdr: no accounts yet (`cmdrctl accounts add NAME --profile P`)';
      item.accessibilityInformation = { label: 'cmdr: no accounts' };
      return;
    }
    const sev = severity(shown, now);
    item.text = `$(key) ${statusText(shown, now)}`;
    item.backgroundColor =
      sev === 'error'
        ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : sev === 'warning'
          ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
    const tooltip = new vscode.MarkdownString();
    tooltip.isTrusted = false;
    tooltip.supportHtml = false;
    tooltip.appendText(`cmdrd ${sanitize(this.connection.daemonVersion)}\n\n`);
    for (const account of accounts.sort((a, b) => a.name.localeCompare(b.name))) {
      tooltip.appendText(`${describeAccount(account, now)}\n\n`);
    }
    tooltip.appendText('Click for accounts and actions');
    item.tooltip = tooltip;
    item.accessibilityInformation = { label: `cmdr: ${statusText(shown, now)} (${sanitize(shown.state)})` };
  }

  /** An account name from the argument, else from a quick pick (preferring `prefer`). */
  private async chooseAccount(arg: unknown, title: string, prefer?: (a: Account) => boolean): Promise<string | undefined> {
    if (typeof arg === 'string' && arg !== '') {
      return arg;
    }
    if (!this.connection.connected) {
      void vscode.window.showWarningMessage(NOT_RUNNING);
      return undefined;
    }
    const now = new Date();
    let accounts = [...this.accounts.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (prefer && accounts.some(prefer)) {
      accounts = accounts.filter(prefer);
    }
    if (accounts.length === 0) {
      void vscode.window.showInformationMessage('cmdr: no accounts yet (`cmdrctl accounts add NAME --profile P`)');
      return undefined;
    }
    if (accounts.length === 1) {
      return accounts[0].name;
    }
    const picked = await vscode.window.showQuickPick(
      accounts.map((a) => ({ label: sanitize(a.name), description: `${sanitize(a.state)} ${left(a, now)} ${portalClock(a)}`.trim(), name: a.name })),
      { title, placeHolder: 'Account' },
    );
    return picked?.name;
  }

  async accept(arg?: unknown): Promise<void> {
    const name = await this.chooseAccount(arg, 'cmdr: use the new token of', (a) => a.state === 'changed');
    if (name === undefined) {
      return;
    }
    try {
      await this.connection.request({ accept: { name } });
      void vscode.window.showInformationMessage(`cmdr: ${sanitize(name)} now uses the new token`);
    } catch (error) {
      void vscode.window.showErrorMessage(`cmdr: accept ${sanitize(name)}: ${sanitize((error as Error).message)}`);
    }
    this.refresh();
  }

  async validate(arg?: unknown): Promise<void> {
    const name = await this.chooseAccount(arg, 'cmdr: validate');
    if (name === undefined) {
      return;
    }
    try {
      const value = (await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `cmdr: validating ${sanitize(name)}…` },
        () => this.connection.request({ validate: { name } }, VALIDATE_TIMEOUT_MS),
      )) as { validated?: { account_id?: string; arn?: string } };
      const id = value?.validated;
      void vscode.window.showInformationMessage(`cmdr: ${sanitize(name)} is AWS account ${sanitize(id?.account_id)} as ${sanitize(id?.arn)}`);
    } catch (error) {
      void vscode.window.showErrorMessage(`cmdr: validate ${sanitize(name)}: ${sanitize((error as Error).message)}`);
    }
    this.refresh();
  }

  private cmdrctl(): string {
    return vscode.workspace.getConfiguration('cmdr').get<string>('cmdrctlPath') || 'cmdrctl';
  }

  async renew(arg?: unknown): Promise<void> {
    const name = await this.chooseAccount(arg, 'cmdr: renew', (a) => a.state === 'expired' || a.state === 'expiring');
    if (name === undefined) {
      return;
    }
    try {
      const line = renewCommand(this.cmdrctl(), this.socket(), name);
      const result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `cmdr: renewing ${sanitize(name)}…` },
        () => run(line, RENEW_TIMEOUT_MS),
      );
      const said = sanitize(result.stdout.split('\n').find((l) => l.trim() !== '') ?? '').trim();
      void vscode.window.showInformationMessage(`cmdr: ${said || `renewing ${sanitize(name)}`}`);
    } catch (error) {
      void vscode.window.showErrorMessage(`cmdr: renew: ${sanitize((error as Error).message)}`);
    }
  }

  /**
   * **Sign in**: `cmdrctl login SESSION` in a terminal, since the browser's page or the
   * device code needs a person; cmdrd sees the new token by itself (`signed_in`).
   */
  signIn(session: string): void {
    try {
      const line = loginCommand(this.cmdrctl(), this.socket(), session);
      const terminal = vscode.window.createTerminal({
        name: `cmdr: sign in to ${sanitize(session)}`,
        shellPath: line.command,
        shellArgs: line.args,
        env: line.env,
        iconPath: new vscode.ThemeIcon('key'),
      });
      terminal.show();
    } catch (error) {
      void vscode.window.showErrorMessage(`cmdr: sign in: ${sanitize((error as Error).message)}`);
    }
  }

  /** `cmdr.signIn`: the sso-session given, else one picked from the accounts' portals. */
  async signInCommand(arg?: unknown): Promise<void> {
    if (typeof arg === 'string' && arg !== '') {
      this.signIn(arg);
      return;
    }
    const sessions = [...new Set([...this.accounts.values()].map((a) => a.session).filter((s): s is string => typeof s === 'string' && s !== ''))].sort();
    if (sessions.length === 0) {
      void vscode.window.showInformationMessage('cmdr: no account renews through a portal (`cmdrctl login --portal URL --sso-region R` signs in to one)');
      return;
    }
    const session =
      sessions.length === 1
        ? sessions[0]
        : (await vscode.window.showQuickPick(sessions.map((s) => ({ label: sanitize(s), session: s })), { title: 'cmdr: sign in to', placeHolder: 'sso-session' }))?.session;
    if (session !== undefined) {
      this.signIn(session);
    }
  }

  async openTerminal(arg?: unknown): Promise<void> {
    const name = await this.chooseAccount(arg, 'cmdr: open a terminal for');
    if (name === undefined) {
      return;
    }
    try {
      const result = await run(envCommand(this.cmdrctl(), this.socket(), name), ENV_TIMEOUT_MS);
      const env = parseEnv(result.stdout);
      const terminal = vscode.window.createTerminal({
        name: `cmdr: ${sanitize(name)}`,
        env,
        iconPath: new vscode.ThemeIcon('key'),
      });
      terminal.show();
    } catch (error) {
      void vscode.window.showErrorMessage(`cmdr: open terminal: ${sanitize((error as Error).message)}`);
    }
  }

  async status(): Promise<void> {
    const out = this.output;
    out.clear();
    out.show(true);
    if (!this.connection.connected) {
      out.appendLine(NOT_RUNNING);
      out.appendLine(`socket: ${sanitize(this.socket())}`);
      return;
    }
    try {
      const value = (await this.connection.request('status')) as { status?: Record<string, unknown> };
      const s = value.status ?? {};
      out.appendLine(`cmdrd ${sanitize(s.daemon_version)} (pid ${sanitize(s.pid)}, up ${sanitize(s.uptime_secs)} s)`);
      out.appendLine(`socket: ${sanitize(s.socket)}${s.socket_note ? ` (${sanitize(s.socket_note)})` : ''}`);
      out.appendLine(`profiles: ${sanitize(s.profiles)}`);
      for (const f of (s.files as Record<string, unknown>[] | undefined) ?? []) {
        const problem = f.error ? `: line ${sanitize(f.error_line ?? '?')}: ${sanitize(f.error)}` : '';
        out.appendLine(`${sanitize(f.kind)} ${sanitize(f.path)}: ${f.exists ? sanitize(f.health) : 'missing'}${problem}`);
      }
      for (const change of (s.changes_while_down as unknown[] | undefined) ?? []) {
        out.appendLine(`while down: ${sanitize(change)}`);
      }
      const now = new Date();
      out.appendLine('accounts:');
      for (const account of [...this.accounts.values()].sort((a, b) => a.name.localeCompare(b.name))) {
        out.appendLine(`  ${describeAccount(account, now)}`);
      }
    } catch (error) {
      out.appendLine(`status: ${sanitize((error as Error).message)}`);
    }
  }

  /** Click on the status item: every account with its state, then what to do with it. */
  async pick(): Promise<void> {
    if (!this.connection.connected) {
      await this.status();
      return;
    }
    const now = new Date();
    const accounts = [...this.accounts.values()].sort((a, b) => a.name.localeCompare(b.name));
    const items: (vscode.QuickPickItem & { name?: string })[] = accounts.map((a) => ({
      label: `$(key) ${sanitize(a.name)}`,
      description: `${sanitize(a.state)} ${left(a, now)} ${portalClock(a)}`.trim(),
      detail: describeAccount(a, now),
      name: a.name,
    }));
    items.push({ label: '$(info) Status', description: 'daemon, files and accounts' });
    const picked = await vscode.window.showQuickPick(items, { title: 'cmdr accounts', matchOnDescription: true });
    if (!picked) {
      return;
    }
    if (picked.name === undefined) {
      await this.status();
      return;
    }
    const name = picked.name;
    const account = this.accounts.get(name);
    const actions: (vscode.QuickPickItem & { run: () => Promise<void> })[] = [];
    if (account?.state === 'changed' || account?.state === 'invalid') {
      actions.push({ label: '$(check) Use new token', run: () => this.accept(name) });
    }
    const session = typeof account?.session === 'string' && account.session !== '' ? account.session : undefined;
    if (session !== undefined) {
      actions.push({ label: '$(sign-in) Sign in', description: `cmdrctl login ${sanitize(session)}`, run: async () => this.signIn(session) });
    }
    actions.push(
      { label: '$(refresh) Renew', description: 'cmdrctl renew', run: () => this.renew(name) },
      { label: '$(verified) Validate', description: 'STS GetCallerIdentity', run: () => this.validate(name) },
      { label: '$(terminal) Open terminal', description: 'follows the accepted token', run: () => this.openTerminal(name) },
    );
    const action = await vscode.window.showQuickPick(actions, { title: `cmdr: ${sanitize(name)}` });
    await action?.run();
  }
}

export function activate(context: vscode.ExtensionContext): void {
  const cmdr = new Cmdr();
  context.subscriptions.push(
    cmdr,
    vscode.workspace.onDidChangeConfiguration((change) => cmdr.onConfigurationChanged(change)),
    vscode.commands.registerCommand('cmdr.accept', (name?: unknown) => cmdr.accept(name)),
    vscode.commands.registerCommand('cmdr.validate', (name?: unknown) => cmdr.validate(name)),
    vscode.commands.registerCommand('cmdr.renew', (name?: unknown) => cmdr.renew(name)),
    vscode.commands.registerCommand('cmdr.openTerminal', (name?: unknown) => cmdr.openTerminal(name)),
    vscode.commands.registerCommand('cmdr.status', () => cmdr.status()),
    vscode.commands.registerCommand('cmdr.signIn', (session?: unknown) => cmdr.signInCommand(session)),
    vscode.commands.registerCommand('cmdr.accounts', () => cmdr.pick()),
  );
}

export function deactivate(): void {
  // Disposables registered in activate() close the connection.
}
