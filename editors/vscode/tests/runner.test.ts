// The command lines of Renew and Open Terminal run through the real cmdrctl against a real
// cmdrd: their output is parsed into a terminal environment, their failures become clear
// messages. Where this cmdrctl predates `renew` or `env --serve`, the test checks the
// error the user would see instead, and says so.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';

import { envCommand, parseEnv, renewCommand } from '../src/model';
import { CmdrctlError, run } from '../src/runner';
import { Sandbox, binDir } from './sandbox';

const LIMIT = { timeout: 60_000 };

function supports(sb: Sandbox, args: string[], flag?: string): boolean {
  const out = sb.ctl([...args, '--help']);
  return out.status === 0 && (flag === undefined || out.stdout.includes(flag));
}

describe('cmdrctl runner', () => {
  const sandboxes: Sandbox[] = [];
  after(async () => Promise.all(sandboxes.map((s) => s.cleanup())));
  async function setup(): Promise<Sandbox> {
    const sb = new Sandbox();
    sandboxes.push(sb);
    await sb.start();
    sb.addAccount('acme');
    return sb;
  }
  const cmdrctl = () => path.join(binDir(), 'cmdrctl');

  test('a missing cmdrctl says how to fix it', LIMIT, async () => {
    await assert.rejects(run(renewCommand('/nonexistent/cmdrctl', '/nonexistent.sock', 'acme'), 10_000), /not found: install cmdr, or set "cmdr.cmdrctlPath"/);
  });

  test('the daemon being away is exit 3, with a hint', LIMIT, async () => {
    const sb = new Sandbox();
    sandboxes.push(sb);
    const line = envCommand(cmdrctl(), sb.socket(), 'acme');
    // `accounts list` exists in every cmdrctl: the same runner, the daemon absent.
    line.args = ['accounts', 'list'];
    await assert.rejects(run(line, 10_000, sb.env()), (e: unknown) => {
      assert.ok(e instanceof CmdrctlError);
      const error = e as CmdrctlError;
      assert.equal(error.exitCode, 3);
      assert.match(error.message, /is cmdrd running\?/);
      assert.equal(/[\u0000-\u001f]/.test(error.message), false);
      return true;
    });
  });

  test('open terminal: env --serve --json becomes the terminal environment', LIMIT, async (t) => {
    const sb = await setup();
    const line = envCommand(cmdrctl(), sb.socket(), 'acme');
    if (supports(sb, ['env'], '--serve')) {
      const env = parseEnv((await run(line, 15_000, sb.env())).stdout);
      assert.match(env.AWS_CONTAINER_CREDENTIALS_FULL_URI ?? '', /^http:\/\/127\.0\.0\.1:\d+\//);
      assert.ok(env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE);
      assert.equal(env.AWS_ACCESS_KEY_ID, null);
      assert.equal(env.CMDR_ACCOUNT, 'acme');
      // Secrets stay out of a terminal that follows the account.
      assert.equal(env.AWS_SECRET_ACCESS_KEY, null);
      const text = JSON.stringify(env);
      assert.equal(text.includes('wJalrXUtnFEMI') || text.includes('TOKEN-ONE'), false);
    } else {
      t.diagnostic('this cmdrctl has no `env --serve` yet: checking the error the user sees');
      await assert.rejects(run(line, 15_000, sb.env()), (e: unknown) => {
        assert.ok(e instanceof CmdrctlError);
        const error = e as CmdrctlError;
        assert.equal(error.exitCode, 2);
        assert.match(error.message, /`.*cmdrctl env acme --serve --json` failed: .*--serve/);
        return true;
      });
    }
  });

  test('renew: cmdrctl renew NAME opens the portal', LIMIT, async (t) => {
    // xdg-open (and macOS `open`) replaced by a recorder on PATH, for whichever of cmdrctl
    // and the daemon opens the browser: it must receive the portal URL.
    const sb = new Sandbox();
    sandboxes.push(sb);
    const bin = path.join(sb.root, 'bin');
    const record = path.join(sb.root, 'opened');
    fs.mkdirSync(bin);
    for (const opener of ['xdg-open', 'open']) {
      fs.writeFileSync(path.join(bin, opener), `#!/bin/sh\nprintf '%s\\n' "$@" >> '${record}'\n`, { mode: 0o755 });
    }
    sb.pathPrefix = bin;
    await sb.start();
    sb.addAccount('acme');
    const line = renewCommand(cmdrctl(), sb.socket(), 'acme');
    if (supports(sb, ['renew'])) {
      const portal = 'https://example.awsapps.com/start';
      const edit = sb.ctl(['accounts', 'edit', 'acme', '--portal', portal]);
      assert.equal(edit.status, 0, edit.stderr);
      await run(line, 30_000, sb.env());
      assert.equal(fs.readFileSync(record, 'utf8').trim(), portal);
    } else {
      t.diagnostic('this cmdrctl has no `renew` yet: checking the error the user sees');
      await assert.rejects(run(line, 15_000, sb.env()), (e: unknown) => {
        assert.ok(e instanceof CmdrctlError);
        const error = e as CmdrctlError;
        assert.equal(error.exitCode, 2);
        assert.match(error.message, /cmdrctl renew acme` failed: .*renew/);
        assert.equal(fs.existsSync(record), false);
        return true;
      });
    }
  });
});
