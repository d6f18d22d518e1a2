// What the browser tests share: the relay helper process
// (tests/src/bin/wasm-e2e-relays.rs) and Debian's headless Chromium.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

/**
 * Starts the relay helper; resolves with its first JSON line (the e2e
 * relays), `send(line)` for a command and `next()` for its next JSON answer.
 */
export async function startRelayHelper(bin) {
  const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiters = [];
  createInterface({ input: child.stdout }).on('line', (line) => waiters.shift()?.(JSON.parse(line)));
  const next = () => new Promise((resolve) => waiters.push(resolve));
  const relays = await next();
  return {
    relays,
    next,
    send: (line) => child.stdin.write(`${line}\n`),
    stop: () => {
      child.stdin.end();
      child.kill();
    },
  };
}

/** Headless Chromium at `executablePath` (never a downloaded browser). */
export function launchChromium(executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium') {
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
}
