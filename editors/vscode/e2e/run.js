// @ts-check
// End to end in a real VS Code: code-server with the packaged .vsix, opened in headless
// Chromium, against a real cmdrd in a temp HOME. Checks the status bar, the "Use new token"
// notification and its effect in `cmdrctl accounts list`, dimming without popups while the
// daemon is stopped, and recovery after its restart; saves a screenshot per step.
// Usage: node run.js VSIX CODE_SERVER_BIN SCREENSHOT_DIR (CMDR_BIN_DIR names the binaries).
'use strict';

const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const puppeteer = require('puppeteer-core');

const { Sandbox, creds } = require('../out/tests/sandbox.js');
const { Connection } = require('../out/src/protocol.js');

const [vsix, codeServer, shots] = process.argv.slice(2);
if (!vsix || !codeServer || !shots) {
  console.error('usage: node run.js VSIX CODE_SERVER_BIN SCREENSHOT_DIR');
  process.exit(2);
}
/** A deadline per wait, against hanging; never an assertion about speed. */
const WAIT = 90_000;
const STATUS = '#workbench\\.parts\\.statusbar [aria-label^="cmdr: "]';

let passed = 0;
let failed = 0;
/** @type {(name: string) => Promise<unknown>} */
let failureShot = async () => undefined;
/** @param {string} name @param {() => Promise<void>} body */
async function step(name, body) {
  try {
    await body();
    passed++;
    console.log(`ok - ${name}`);
  } catch (error) {
    failed++;
    await failureShot(`failed-${passed + failed}`).catch(() => undefined);
    console.log(`not ok - ${name}\n  ${String(error && /** @type {Error} */ (error).stack || error).replace(/\n/g, '\n  ')}`);
    throw error;
  }
}

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Events of the daemon, as the extension receives them, for waiting without polling. */
function watchDaemon(/** @type {Sandbox} */ sb) {
  /** @type {{ accept: (e: any) => boolean, resolve: (e: any) => void }[]} */
  let waiters = [];
  const connection = new Connection({
    socket: () => sb.socket(),
    client: 'cmdr.vscode-e2e',
    clientVersion: '0',
    listener: {
      event: (e) => {
        const hit = waiters.filter((w) => w.accept(e));
        waiters = waiters.filter((w) => !hit.includes(w));
        hit.forEach((w) => w.resolve(e));
      },
    },
  });
  connection.start();
  return {
    connection,
    /** @param {(e: any) => boolean} accept */
    next: (accept) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no such event from cmdrd within ${WAIT / 1000} s`)), WAIT);
        waiters.push({ accept, resolve: (e) => (clearTimeout(timer), resolve(e)) });
      }),
  };
}

async function main() {
  fs.mkdirSync(shots, { recursive: true });
  const sb = new Sandbox('TOKEN-ONE');
  const userData = path.join(sb.root, 'code-user');
  const extensions = path.join(sb.root, 'code-extensions');
  const folder = path.join(sb.root, 'project');
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.mkdirSync(folder);
  fs.writeFileSync(path.join(folder, 'main.tf'), 'provider "aws" {\n  region = "eu-west-1"\n}\n');
  fs.writeFileSync(
    path.join(userData, 'User', 'settings.json'),
    JSON.stringify({
      'security.workspace.trust.enabled': false,
      'workbench.startupEditor': 'none',
      'workbench.tips.enabled': false,
      'telemetry.telemetryLevel': 'off',
      'extensions.autoCheckUpdates': false,
      'extensions.autoUpdate': false,
      'update.mode': 'none',
      'extensions.ignoreRecommendations': true,
      'workbench.enableExperiments': false,
      'chat.disableAIFeatures': true,
      'workbench.colorTheme': 'Default Dark Modern',
      'window.commandCenter': false,
      'chat.commandCenter.enabled': false,
      'workbench.secondarySideBar.defaultVisibility': 'hidden',
    }),
  );
  // The extension host takes PATH from a login shell (/etc/profile here), which lacks the
  // build directory: name cmdrctl by its setting. It is machine-scoped (a workspace must
  // not pick the program we run), so in code-server it lives in the remote settings.
  fs.mkdirSync(path.join(userData, 'Machine'), { recursive: true });
  fs.writeFileSync(path.join(userData, 'Machine', 'settings.json'), JSON.stringify({ 'cmdr.cmdrctlPath': path.join(String(process.env.CMDR_BIN_DIR), 'cmdrctl') }));
  // xdg-open (and macOS `open`) replaced by a recorder: Renew must hand it the portal URL.
  // The extension host takes PATH from a login shell, so it goes in the sandbox's profile.
  const recorders = path.join(sb.root, 'recorders');
  const opened = path.join(sb.root, 'opened');
  fs.mkdirSync(recorders);
  for (const opener of ['xdg-open', 'open']) {
    fs.writeFileSync(path.join(recorders, opener), `#!/bin/sh\nprintf '%s\\n' "$@" >> '${opened}'\n`, { mode: 0o755 });
  }
  for (const rc of ['.profile', '.bashrc']) {
    fs.writeFileSync(path.join(sb.home, rc), `PATH='${recorders}':"$PATH"\nexport PATH\n`);
  }
  // code-server, its extension host and cmdrctl see the sandbox only (HOME, XDG dirs):
  // the extension finds the socket by its default rule, $XDG_RUNTIME_DIR/cmdr/cmdrd.sock.
  const env = sb.env({
    PATH: `${recorders}:${process.env.CMDR_BIN_DIR}:${path.dirname(process.execPath)}:${process.env.PATH}`,
    // No extension gallery: code-server would ask one on the internet.
    EXTENSIONS_GALLERY: '{}',
    // What `env --serve` must unset in the account's terminal (it would shadow the endpoint).
    AWS_PROFILE: 'inherited-profile',
  });
  const cleanups = [];
  try {
    await step('the .vsix installs into code-server', async () => {
      const out = spawnSync(codeServer, ['--user-data-dir', userData, '--extensions-dir', extensions, '--install-extension', vsix], {
        env,
        encoding: 'utf8',
        timeout: 120_000,
      });
      assert.equal(out.status, 0, `${out.stdout}\n${out.stderr}`);
      assert.match(out.stdout, /was successfully installed/);
    });

    await sb.start();
    sb.addAccount('acme');
    const daemon = watchDaemon(sb);
    cleanups.push(() => daemon.connection.dispose());

    const port = await freePort();
    const server = spawn(
      codeServer,
      ['--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--user-data-dir', userData, '--extensions-dir', extensions, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', folder],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const serverLog = fs.createWriteStream(path.join(shots, 'code-server.log'));
    server.stdout.pipe(serverLog);
    server.stderr.pipe(serverLog);
    cleanups.push(() => server.kill('SIGTERM'));
    await new Promise((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(() => reject(new Error(`code-server did not start: ${seen}`)), WAIT);
      server.stdout.on('data', (chunk) => {
        seen += chunk;
        if (/HTTP server listening on/.test(seen)) {
          clearTimeout(timer);
          resolve(undefined);
        }
      });
      server.once('exit', (code) => reject(new Error(`code-server exited with ${code}: ${seen}`)));
    });

    const browser = await puppeteer.launch({
      // No network but loopback: no component updates, no pings.
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,800', '--disable-component-update', '--no-pings', '--disable-domain-reliability'],
      defaultViewport: { width: 1280, height: 800 },
    });
    cleanups.push(() => browser.close());
    const page = await browser.newPage();
    page.setDefaultTimeout(WAIT);
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(folder)}`, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('.monaco-workbench');
    // VS Code hides a warning toast by itself after about 18 s (its purge timer), which a
    // slow machine can spend between an event and the next check: every toast ever shown is
    // recorded in the page as it appears, and a button is clicked in the notification center
    // when its toast is already gone.
    /** Records every toast's text in the page as it appears (`window.cmdrToasts`). */
    const recordToasts = () => {
      const shown = /** @type {string[]} */ ([]);
      Object.assign(window, { cmdrToasts: shown });
      const start = () =>
        new MutationObserver(() => {
          for (const toast of document.querySelectorAll('.notification-toast')) {
            const text = toast.textContent || '';
            if (!shown.includes(text)) {
              shown.push(text);
            }
          }
        }).observe(document.body, { subtree: true, childList: true, characterData: true });
      if (document.body) {
        start();
      } else {
        document.addEventListener('DOMContentLoaded', start);
      }
    };
    // In this document and in any the workbench loads later (a reload after an install).
    await page.evaluateOnNewDocument(recordToasts);
    await page.evaluate(recordToasts);
    /** The recorded toasts and the notification center's items whose text matches all of `sources`. */
    const seenNotice = (/** @type {string[]} */ sources, /** @type {number} */ timeout) =>
      page.waitForFunction(
        (sources) => {
          const match = (/** @type {string} */ t) => sources.every((s) => new RegExp(s).test(t));
          const toasts = /** @type {string[]} */ (/** @type {any} */ (window).cmdrToasts || []);
          const center = [...document.querySelectorAll('.notifications-center .notification-list-item')].map((e) => e.textContent || '');
          return toasts.some(match) || center.some(match);
        },
        { polling: 100, timeout },
        sources,
      );
    /**
     * Waits until a notification whose text matches all of `res` has been shown: as a toast,
     * or, when none was seen within 20 s, in the notification center (where every notification
     * stays until dismissed, whatever happened to its toast). Says what was there if not.
     */
    const waitToast = async (/** @type {RegExp[]} */ ...res) => {
      const sources = res.map((re) => re.source);
      try {
        await seenNotice(sources, 20_000);
        return;
      } catch {
        // Not as a toast yet: the center.
      }
      await command('Notifications: Show Notifications');
      try {
        await seenNotice(sources, WAIT);
      } catch (error) {
        const toasts = await page.evaluate(() => /** @type {any} */ (window).cmdrToasts || []);
        const center = await page.$$eval('.notifications-center .notification-list-item', (els) => els.map((e) => e.textContent || ''));
        console.log(`# no notification matching ${sources.join(' & ')}; toasts seen: ${JSON.stringify(toasts)}; center: ${JSON.stringify(center)}`);
        throw error;
      } finally {
        await page.keyboard.press('Escape');
        await page.waitForFunction(() => !document.querySelector('.notifications-center.visible'), { polling: 100 });
      }
    };
    /** Runs a command by its title through the command palette. */
    const command = async (/** @type {string} */ title) => {
      await page.keyboard.press('F1');
      await page.waitForSelector('.quick-input-widget input');
      await page.keyboard.type(title);
      await page.waitForSelector(`.quick-input-list ::-p-text(${title})`);
      await page.keyboard.press('Enter');
    };
    /** Clicks `label` on the notification whose text matches `re`: on its toast, or in the center. */
    const clickNotice = async (/** @type {RegExp} */ re, /** @type {string} */ label) => {
      const onToast = await page.evaluateHandle(
        (source, text) => {
          const toast = [...document.querySelectorAll('.notification-toast')].find((t) => new RegExp(source).test(t.textContent || ''));
          return toast ? [...toast.querySelectorAll('.monaco-button')].find((b) => (b.textContent || '').trim() === text) || null : null;
        },
        re.source,
        label,
      );
      const toastButton = onToast.asElement();
      if (toastButton) {
        await /** @type {import('puppeteer-core').ElementHandle<Element>} */ (toastButton).click();
        return;
      }
      await command('Notifications: Show Notifications');
      const inCenter = await page.waitForFunction(
        (source, text) => {
          const item = [...document.querySelectorAll('.notifications-center .notification-list-item')].find((t) => new RegExp(source).test(t.textContent || ''));
          return item ? [...item.querySelectorAll('.monaco-button')].find((b) => (b.textContent || '').trim() === text) || null : null;
        },
        { polling: 100 },
        re.source,
        label,
      );
      await /** @type {import('puppeteer-core').ElementHandle<Element>} */ (inCenter.asElement()).click();
      // Escape is the center's own "hide" key (its command is not in the palette).
      await page.keyboard.press('Escape');
      await page.waitForFunction(() => !document.querySelector('.notifications-center.visible'), { polling: 100 });
    };
    const shot = (/** @type {string} */ name) => page.screenshot({ path: path.join(shots, `${name}.png`) });
    failureShot = shot;
    /** Waits until the cmdr status item's label matches (a MutationObserver, no polling). */
    const waitStatus = (/** @type {RegExp} */ re) =>
      page.waitForFunction(
        (sel, source) => {
          const el = document.querySelector(sel);
          return !!el && new RegExp(source).test(el.getAttribute('aria-label') || '');
        },
        { polling: 'mutation' },
        STATUS,
        re.source,
      );
    const itemClass = () => page.$eval(STATUS, (el) => (el.closest('.statusbar-item') || el).className);
    /** The computed colours of the item and everything in it. */
    const colours = () => page.$eval(STATUS, (el) => [el, ...el.querySelectorAll('*')].map((e) => getComputedStyle(e).color).join(' '));
    const toasts = () =>
      page.$$eval('.notification-toast', (els) =>
        els.map((el) => ({
          text: el.textContent || '',
          error: !!el.querySelector('.codicon-error'),
          warning: !!el.querySelector('.codicon-warning'),
        })),
      );

    let normal = '';
    await step('the status bar shows acme with the time left', async () => {
      await waitStatus(/^cmdr: acme \d+h\d\dm/);
      const text = await page.$eval(STATUS, (el) => (el.closest('.statusbar-item') || el).textContent || '');
      assert.match(text, /acme \d+h\d\dm/);
      normal = await colours();
      await shot('1-status-bar');
    });

    await step('a credentials change shows "Use new token", and clicking it accepts', async () => {
      const changed = daemon.next((e) => e.type === 'token_changed' && e.account === 'acme');
      sb.writeCredentials(creds('acme', 'TOKEN-TWO'));
      await changed;
      await waitToast(/the token for acme \(profile acme\) changed/, /Use new token/);
      await waitStatus(/^cmdr: acme CHANGED/);
      assert.match(await itemClass(), /error-kind/);
      await shot('2-use-new-token');
      const accepted = daemon.next((e) => e.type === 'token_accepted' && e.account === 'acme');
      await clickNotice(/the token for acme \(profile acme\) changed/, 'Use new token');
      await accepted;
      const [account] = sb.json(['accounts', 'list']);
      assert.equal(account.name, 'acme');
      assert.notEqual(account.state, 'changed');
      assert.equal(account.accepted_fingerprint, account.fingerprint);
      await waitStatus(/^cmdr: acme \d+h\d\dm/);
      await shot('3-accepted');
    });

    await step('a click on the item lists the accounts with their state and actions', async () => {
      await page.click(STATUS);
      await page.waitForSelector('.quick-input-widget .quick-input-list ::-p-text(acme)');
      const rows = await page.$$eval('.quick-input-list .monaco-list-row', (els) => els.map((e) => e.textContent || ''));
      assert.ok(rows.some((r) => /acme/.test(r) && /(ok|unvalidated) \d+h\d\dm/.test(r)), rows.join(' | '));
      assert.ok(rows.some((r) => /Status/.test(r)), rows.join(' | '));
      await shot('3b-accounts-quick-pick');
      await page.keyboard.press('Enter');
      await page.waitForSelector('.quick-input-widget .quick-input-list ::-p-text(Renew)');
      const actions = await page.$$eval('.quick-input-list .monaco-list-row', (els) => els.map((e) => e.textContent || ''));
      assert.ok(['Renew', 'Validate', 'Open terminal'].every((a) => actions.some((r) => r.includes(a))), actions.join(' | '));
      await page.keyboard.press('Escape');
      // Off the item, so later screenshots show its colour, not the hover highlight.
      await page.mouse.move(640, 300);
    });

    await step('a session about to expire turns the item yellow; Renew opens the portal', async () => {
      const soon = new Date(Date.now() + 10 * 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
      const changed = daemon.next((e) => e.type === 'token_changed' && e.account === 'acme');
      // The daemon may announce the expiry together with the change: listen from the start.
      const expiring = daemon.next((e) => e.type === 'expiring_soon' && e.account === 'acme');
      sb.writeCredentials(`${creds('acme', 'TOKEN-THREE')}x_security_token_expires = ${soon}\n`);
      await changed;
      const accept = sb.ctl(['accept', 'acme']);
      assert.equal(accept.status, 0, accept.stderr);
      await expiring;
      await waitStatus(/^cmdr: acme (9|10)m \(expiring\)$/);
      assert.match(await itemClass(), /warning-kind/);
      await waitToast(/acme expires in/, /Renew/);
      await shot('3c-expiring-renew');

      // Renew runs `cmdrctl renew acme`, which opens the account's portal.
      const portal = 'https://example.awsapps.com/start';
      const edit = sb.ctl(['accounts', 'edit', 'acme', '--portal', portal]);
      assert.equal(edit.status, 0, edit.stderr);
      const recorded = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('Renew opened nothing')), WAIT);
        const watcher = fs.watch(sb.root, () => {
          if (fs.existsSync(opened) && fs.readFileSync(opened, 'utf8').endsWith('\n')) {
            clearTimeout(timer);
            watcher.close();
            resolve(undefined);
          }
        });
      });
      await clickNotice(/acme expires in/, 'Renew');
      await recorded;
      assert.equal(fs.readFileSync(opened, 'utf8'), `${portal}\n`);
      await page.mouse.move(640, 300);
      await shot('3d-renewed');
    });

    await step('stopping the daemon dims the item without an error popup', async () => {
      // Toasts of the previous steps may still be up: only new ones count.
      const before = new Set((await toasts()).map((t) => t.text));
      await sb.stop();
      await waitStatus(/^cmdr: daemon not running$/);
      const dimmed = await colours();
      assert.notEqual(dimmed, normal, 'the item is dimmed');
      const popups = (await toasts()).filter((t) => !before.has(t.text) && (t.error || t.warning || /cmdr/.test(t.text)));
      assert.deepEqual(popups, []);
      await shot('4-daemon-stopped');
      console.log(`# colours: connected ${normal}, absent ${dimmed}`);
    });

    await step('restarting the daemon restores the item', async () => {
      await sb.start();
      await waitStatus(/^cmdr: acme \d+m \(expiring\)$/);
      const popups = (await toasts()).filter((t) => t.error);
      assert.deepEqual(popups, []);
      assert.match(await itemClass(), /warning-kind/);
      await shot('5-daemon-restarted');
    });

    await step('cmdr.openTerminal runs `cmdrctl env acme --serve --json`', async () => {
      const help = sb.ctl(['env', '--help']);
      const serves = help.status === 0 && help.stdout.includes('--serve');
      await page.keyboard.press('F1');
      await page.waitForSelector('.quick-input-widget input');
      await page.keyboard.type('cmdr: Open Terminal for Account');
      await page.waitForSelector('.quick-input-list ::-p-text(Open Terminal for Account)');
      await page.keyboard.press('Enter');
      if (serves) {
        // The terminal's shell has the account's endpoint variables: it writes them out.
        // terminal.show() focuses it, so typing goes to its shell.
        const record = path.join(sb.root, 'terminal-env');
        await page.waitForSelector('.terminal-wrapper.active .xterm-helper-textarea, .xterm-helper-textarea');
        await page.focus('.xterm-helper-textarea');
        const written = new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('the terminal wrote nothing')), WAIT);
          const watcher = fs.watch(sb.root, () => {
            if (fs.existsSync(record) && fs.readFileSync(record, 'utf8').endsWith('\n')) {
              clearTimeout(timer);
              watcher.close();
              resolve(undefined);
            }
          });
        });
        await page.keyboard.type(`echo "$CMDR_ACCOUNT $AWS_CONTAINER_CREDENTIALS_FULL_URI \${AWS_PROFILE-unset}" > '${record}'\n`);
        await written;
        assert.match(fs.readFileSync(record, 'utf8'), /^acme http:\/\/127\.0\.0\.1:\d+\/\S* unset\n$/);
      } else {
        console.log('# this cmdrctl has no `env --serve` yet: checking the error the user sees');
        await page.waitForFunction(
          () => [...document.querySelectorAll('.notification-toast')].some((t) => /open terminal/.test(t.textContent || '')),
          { polling: 'mutation' },
        );
        const toast = (await toasts()).find((t) => /open terminal/.test(t.text));
        assert.ok(toast && toast.error);
        assert.match(toast.text, /open terminal: `\S*cmdrctl env acme --serve --json` failed: error: unexpected argument '--serve'/);
      }
      await shot('6-open-terminal');
    });
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch {
        // Best effort: the sandbox goes away below anyway.
      }
    }
    await sb.cleanup();
  }
}

main().then(
  () => console.log(`e2e: ${passed} passed, ${failed} failed`),
  (error) => {
    if (failed === 0) {
      failed = 1;
      console.log(`not ok - setup\n  ${String((error && error.stack) || error)}`);
    }
    console.log(`e2e: ${passed} passed, ${failed} failed`);
    process.exitCode = 1;
  },
);
