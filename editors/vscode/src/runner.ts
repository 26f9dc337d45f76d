// Runs cmdrctl for the two commands that need more than the socket (`renew`, which opens a
// browser or runs `aws sso login`, and `env --serve`): no shell, a deadline, bounded
// output, and errors that say what to do. No VS Code API here.
import { execFile } from 'node:child_process';

import { CommandLine, sanitize } from './model';

/** More than any cmdrctl output; a runaway child is cut off, not buffered without end. */
const MAX_OUTPUT = 1 << 20;

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class CmdrctlError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | undefined,
  ) {
    super(message);
    this.name = 'CmdrctlError';
  }
}

/** The first lines of cmdrctl's error output, without control characters. */
function summary(stderr: string): string {
  return stderr
    .split('\n')
    .map((line) => sanitize(line).trim())
    .filter((line) => line !== '')
    .slice(0, 4)
    .join(' ');
}

export function run(line: CommandLine, timeoutMs: number, baseEnv: NodeJS.ProcessEnv = process.env): Promise<RunResult> {
  const shown = [line.command, ...line.args].join(' ');
  return new Promise((resolve, reject) => {
    execFile(
      line.command,
      line.args,
      { env: { ...baseEnv, ...line.env }, timeout: timeoutMs, maxBuffer: MAX_OUTPUT, windowsHide: true, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ stdout, stderr });
          return;
        }
        const e = error as NodeJS.ErrnoException & { code?: string | number; killed?: boolean; signal?: string | null };
        if (e.code === 'ENOENT') {
          reject(new CmdrctlError(`${line.command} not found: install cmdr, or set "cmdr.cmdrctlPath"`, undefined));
        } else if (e.killed || e.signal) {
          reject(new CmdrctlError(`\`${shown}\` did not finish within ${Math.round(timeoutMs / 1000)} s`, undefined));
        } else if (typeof e.code === 'number') {
          const why = summary(stderr) || `exit code ${e.code}`;
          const hint = e.code === 3 ? ' (is cmdrd running?)' : '';
          reject(new CmdrctlError(`\`${shown}\` failed${hint}: ${why}`, e.code));
        } else {
          reject(new CmdrctlError(`\`${shown}\` failed: ${sanitize(e.message)}`, undefined));
        }
      },
    );
  });
}
