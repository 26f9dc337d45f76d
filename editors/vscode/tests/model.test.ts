// The extension's state logic, table-driven: time left as `cmdrctl prompt` prints it,
// colours by state, which account the status bar shows, notification texts and buttons
// (unknown event types ignored), control characters dropped, and the cmdrctl command lines
// and their JSON.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Account, describeAccount, envCommand, formatDuration, left, loginCommand, notice, parseEnv, pickAccount, portalClock, renewCommand, renewsItself, sanitize, severity, statusText, withRenewals } from '../src/model';

const NOW = new Date('2026-11-20T10:00:00Z');

function account(name: string, state: string, expiresAt: string | null, extra: Partial<Account> = {}): Account {
  return { name, profile: name, region: 'eu-west-1', target: 'aws', on_change: 'ask', state, expires_at: expiresAt, ...extra };
}

describe('time left', () => {
  const durations: [number, string][] = [
    [0, '0s'],
    [45_000, '45s'],
    [15 * 60_000, '15m'],
    [3 * 3600_000 + 7 * 60_000 + 59_000, '3h07m'],
    [(2 * 86_400 + 4 * 3600 + 5 * 60) * 1000, '2d4h'],
  ];
  for (const [ms, text] of durations) {
    test(`format ${ms} ms`, () => assert.equal(formatDuration(ms), text));
  }
  const cases: [string, Account, string][] = [
    ['ok with expiry', account('acme', 'ok', '2026-11-20T13:12:00Z'), '3h12m'],
    ['expiring', account('acme', 'expiring', '2026-11-20T10:09:30Z'), '9m'],
    ['past expiry but not yet told', account('acme', 'ok', '2026-11-20T09:59:00Z'), 'EXPIRED'],
    ['expired', account('acme', 'expired', '2026-11-20T09:00:00Z'), 'EXPIRED'],
    ['changed wins over time', account('acme', 'changed', '2026-11-20T13:12:00Z'), 'CHANGED'],
    ['invalid', account('acme', 'invalid', null), 'INVALID'],
    ['missing', account('acme', 'missing', null), 'MISSING'],
    ['never expires', account('acme', 'ok', null), ''],
    ['unparsable expiry', account('acme', 'ok', 'tomorrow'), ''],
  ];
  for (const [name, a, expected] of cases) {
    test(name, () => assert.equal(left(a, NOW), expected));
  }
  test('status text', () => assert.equal(statusText(account('acme', 'ok', '2026-11-20T13:12:00Z'), NOW), 'acme 3h12m'));
});

describe('colour by state', () => {
  const cases: [string, string | null, string][] = [
    ['ok', '2026-11-20T13:00:00Z', 'ok'],
    ['unvalidated', null, 'ok'],
    ['expiring', '2026-11-20T10:05:00Z', 'warning'],
    ['expired', '2026-11-20T09:00:00Z', 'error'],
    ['invalid', null, 'error'],
    ['changed', '2026-11-20T13:00:00Z', 'error'],
    ['missing', null, 'error'],
    ['misconfigured', null, 'error'],
    ['ok', '2026-11-20T09:00:00Z', 'error'],
  ];
  for (const [state, at, expected] of cases) {
    test(`${state} ${at}`, () => assert.equal(severity(account('a', state, at), NOW), expected));
  }
});

describe('accounts that renew themselves (issue 25)', () => {
  const token = '2026-11-20T10:09:00Z';
  const renewing = account('acme', 'expiring', token, { auto_renew: true, session: 'corp', signin_expires_at: '2026-11-20T18:00:00Z' });
  test('renew themselves while the sign-in outlasts the token', () => {
    assert.equal(renewsItself(renewing), true);
    assert.equal(renewsItself({ ...renewing, signin_expires_at: '2026-11-20T10:05:00Z' }), false);
    assert.equal(renewsItself({ ...renewing, signin_expires_at: null }), false);
    assert.equal(renewsItself({ ...renewing, auto_renew: false }), false);
    assert.equal(renewsItself(undefined), false);
  });
  test('the daemon says whether it renews itself (renewal_plans)', () => {
    // An SSO account: its token is the portal's, refreshed by cmdrd before it ends.
    const sso = { ...renewing, signin_expires_at: token, renews_at: '2026-11-20T10:05:00Z' };
    assert.equal(renewsItself(sso), true);
    assert.equal(renewsItself({ ...sso, renews_at: null }), false);
    assert.equal(renewsItself({ ...sso, auto_renew: false }), false);
    const merged = withRenewals([account('acme', 'ok', token)], [{ account: 'acme', auto_renew: true, session: 'corp', signin_expires_at: null, renews_at: null }]);
    assert.equal(merged[0].renews_at, null);
    assert.equal(renewsItself(merged[0]), false);
    const older = withRenewals([account('acme', 'ok', token)], [{ account: 'acme', auto_renew: true, session: 'corp', signin_expires_at: null }]);
    assert.equal(older[0].renews_at, undefined);
  });
  test('expiring is not yellow when it renews itself', () => {
    assert.equal(severity(renewing, NOW), 'ok');
    assert.equal(severity({ ...renewing, auto_renew: false }, NOW), 'warning');
  });
  test('expiring_soon is informational, without Renew', () => {
    const n = notice({ type: 'expiring_soon', at: '', account: 'acme', expires_at: token }, 'ask', NOW, true);
    assert.equal(n?.level, 'info');
    assert.deepEqual(n?.actions, []);
    assert.match(n?.message ?? '', /renews it/);
  });
  test('signin_required offers Sign in for its sso-session', () => {
    const n = notice({ type: 'signin_required', at: '', portal: 'https://corp.awsapps.com/start', session: 'corp', reason: 'the refresh token was refused' }, undefined, NOW);
    assert.equal(n?.level, 'warning');
    assert.deepEqual(n?.actions, ['signin']);
    assert.equal(n?.session, 'corp');
    assert.match(n?.message ?? '', /corp\.awsapps\.com.*sso-session corp.*refused/);
  });
  test('signed_in and token_renewed only refresh the view', () => {
    assert.equal(notice({ type: 'signed_in', at: '', portal: 'https://corp.awsapps.com/start', session: 'corp' }, undefined, NOW), undefined);
    assert.equal(notice({ type: 'token_renewed', at: '', account: 'acme', expires_at: token }, 'ask', NOW), undefined);
  });
  test('the portal clock in the tooltip and quick pick', () => {
    const at = new Date('2026-11-20T18:00:00Z');
    const hhmm = `${String(at.getHours()).padStart(2, '0')}:${String(at.getMinutes()).padStart(2, '0')}`;
    assert.equal(portalClock(renewing), `signed in until ${hhmm}`);
    assert.match(describeAccount(renewing, NOW), new RegExp(`renews itself, signed in until ${hhmm}`));
    assert.equal(portalClock(account('b', 'ok', null)), '');
  });
  test('renewal facts merge into the accounts', () => {
    const merged = withRenewals([account('acme', 'ok', token), account('b', 'ok', null)], [{ account: 'acme', auto_renew: true, session: 'corp', signin_expires_at: '2026-11-20T18:00:00Z' }]);
    assert.equal(merged[0].auto_renew, true);
    assert.equal(merged[0].session, 'corp');
    assert.equal(merged[1].auto_renew, undefined);
  });
  test('login command line', () => {
    assert.deepEqual(loginCommand('', '/run/s.sock', 'corp'), { command: 'cmdrctl', args: ['login', 'corp'], env: { CMDR_SOCKET: '/run/s.sock' } });
    assert.throws(() => loginCommand('cmdrctl', '/s', '--portal'), /not an account name/);
  });
});

describe('status-bar account', () => {
  const accounts = [
    account('zeta', 'ok', '2026-11-20T11:00:00Z'),
    account('acme', 'ok', '2026-11-20T15:00:00Z'),
    account('static', 'ok', null),
  ];
  test('the configured account', () => assert.equal(pickAccount(accounts, 'acme')?.name, 'acme'));
  test('the one expiring first', () => assert.equal(pickAccount(accounts, undefined)?.name, 'zeta'));
  test('an unknown configured account falls back', () => assert.equal(pickAccount(accounts, 'gone')?.name, 'zeta'));
  test('without expiries: by name', () => assert.equal(pickAccount([account('b', 'ok', null), account('a', 'ok', null)], undefined)?.name, 'a'));
  test('none', () => assert.equal(pickAccount([], undefined), undefined));
});

describe('notifications', () => {
  test('token_changed for an ask account offers Use new token / Ignore', () => {
    const n = notice({ type: 'token_changed', at: '', account: 'acme', profile: 'acme-prof' }, 'ask', NOW);
    assert.deepEqual(n?.actions, ['accept', 'ignore']);
    assert.equal(n?.level, 'warning');
    assert.match(n?.message ?? '', /acme \(profile acme-prof\)/);
  });
  test('token_changed for an auto account: nothing to ask', () =>
    assert.equal(notice({ type: 'token_changed', at: '', account: 'acme', profile: 'acme' }, 'auto', NOW), undefined));
  test('expiring_soon offers Renew with the time left', () => {
    const n = notice({ type: 'expiring_soon', at: '', account: 'acme', expires_at: '2026-11-20T10:12:00Z' }, 'ask', NOW);
    assert.deepEqual(n?.actions, ['renew']);
    assert.match(n?.message ?? '', /acme expires in 12m/);
  });
  test('expired offers Renew', () => assert.deepEqual(notice({ type: 'expired', at: '', account: 'acme' }, 'ask', NOW)?.actions, ['renew']));
  test('identity_changed is an error naming both account ids', () => {
    const n = notice({ type: 'identity_changed', at: '', account: 'acme', old_account_id: '111111111111', new_account_id: '222222222222' }, 'ask', NOW);
    assert.equal(n?.level, 'error');
    assert.match(n?.message ?? '', /222222222222.*111111111111/);
  });
  test('endpoint_moved warns that what was started before must start again', () => {
    const n = notice({ type: 'endpoint_moved', at: '', old_url: 'http://127.0.0.1:1/v1/credentials/', new_url: 'http://127.0.0.1:2/v1/credentials/\u001b[31m' }, undefined, NOW);
    assert.equal(n?.level, 'warning');
    assert.match(n?.message ?? '', /127\.0\.0\.1:1\/.*now listens on http:\/\/127\.0\.0\.1:2\/.*opened again/);
    assert.doesNotMatch(n?.message ?? '', /\u001b/);
  });
  test('file_error names path and line', () =>
    assert.match(notice({ type: 'file_error', at: '', path: '/h/.aws/credentials', line: 3, message: 'bad' }, undefined, NOW)?.message ?? '', /credentials line 3: bad/));
  test('unknown event types are ignored', () => assert.equal(notice({ type: 'brand_new_event', at: '', account: 'acme' }, 'ask', NOW), undefined));
  test('quiet events', () => {
    for (const type of ['token_accepted', 'validated', 'profile_changed', 'daemon_stopping', 'lagged']) {
      assert.equal(notice({ type, at: '', account: 'acme' }, 'ask', NOW), undefined, type);
    }
  });
  test('control characters from a file never reach the screen', () => {
    const n = notice({ type: 'file_error', at: '', path: '/x\u001b[31m', line: 1, message: 'a\u0007b\u202ec\u009b' }, undefined, NOW);
    assert.equal(n?.message.includes('\u001b'), false);
    assert.equal(sanitize('a\u0000b\u007fc\u0085d\u2066e\nf'), 'abcdef');
  });
});

describe('cmdrctl command lines', () => {
  test('renew', () =>
    assert.deepEqual(renewCommand('/opt/cmdrctl', '/run/s.sock', 'acme'), { command: '/opt/cmdrctl', args: ['renew', 'acme'], env: { CMDR_SOCKET: '/run/s.sock' } }));
  test('env --serve --json', () =>
    assert.deepEqual(envCommand('', '/run/s.sock', 'acme'), { command: 'cmdrctl', args: ['env', 'acme', '--serve', '--json'], env: { CMDR_SOCKET: '/run/s.sock' } }));
  test('a name that looks like an option is refused', () => {
    assert.throws(() => renewCommand('cmdrctl', '/s', '--help'), /not an account name/);
    assert.throws(() => envCommand('cmdrctl', '/s', ''), /not an account name/);
    assert.throws(() => envCommand('cmdrctl', '/s', 'a\nb'), /not an account name/);
  });
});

describe('env --json', () => {
  test('variables to set and to unset', () => {
    const env = parseEnv(
      JSON.stringify({
        AWS_CONTAINER_CREDENTIALS_FULL_URI: 'http://127.0.0.1:4321/acme',
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: '/run/user/1/cmdr/endpoint-token',
        AWS_REGION: 'eu-west-1',
        AWS_ACCESS_KEY_ID: null,
        AWS_PROFILE: null,
      }),
    );
    assert.equal(env.AWS_REGION, 'eu-west-1');
    assert.equal(env.AWS_ACCESS_KEY_ID, null);
    assert.ok('AWS_PROFILE' in env);
  });
  const bad: [string, string, RegExp][] = [
    ['not JSON', 'export AWS_REGION=x', /did not print JSON/],
    ['an array', '[]', /not print a JSON object/],
    ['null', 'null', /not print a JSON object/],
    ['a number value', '{"AWS_REGION": 3}', /non-string value for AWS_REGION/],
    ['a bad name', '{"A B": "x"}', /invalid variable name/],
    ['a name with a newline', '{"A\\nB": "x"}', /invalid variable name/],
  ];
  for (const [name, text, error] of bad) {
    test(`refuses ${name}`, () => assert.throws(() => parseEnv(text), error));
  }
});
