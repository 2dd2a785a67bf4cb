// Headless Chromium and the small helpers every browser-driven e2e file needs: screenshots and
// page descriptions that point at the artifacts, a logged browser context, JupyterHub's REST API.
import { writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { artifactPath } from './harness.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic',
];

/** Debian's chromium, headless, without the sandbox or network chatter this machine lacks. */
export function launchChromium() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/**
 * `screenshot(page, name, file?)` writing `e2e/artifacts/PREFIX-NN-name.png` (numbered in order
 * taken), or `file` when given; returns the path. A page already gone is not an error.
 */
export function screenshotter(prefix) {
  let shot = 0;
  return async (page, name, file) => {
    shot += 1;
    const target = file ?? artifactPath(`${prefix}-${String(shot).padStart(2, '0')}-${name}.png`);
    try { await page.screenshot({ path: target, fullPage: true }); } catch { /* page gone */ }
    return target;
  };
}

/** Where a page is and what it says, for assertion messages. */
export async function where(page, prefix) {
  let text = '';
  try { text = (await page.textContent('body'))?.replace(/\s+/g, ' ').slice(0, 600) ?? ''; } catch { /* gone */ }
  return `at ${page.url()}: "${text}" (logs: e2e/artifacts/${prefix}-*.log)`;
}

/**
 * A fresh context (no cookies) whose console, responses and page errors are written to
 * `e2e/artifacts/PREFIX-browser-LABEL.log` on close. Web fonts are blocked: the upstream's dev
 * pages @import one, and there is no internet here.
 */
export async function loggedContext(browser, { prefix, label, baseURL }) {
  const context = await browser.newContext(baseURL ? { baseURL } : {});
  await context.route(/fonts\.(googleapis|gstatic)\.com/, (r) => r.abort());
  const page = await context.newPage();
  const log = [];
  page.on('console', (m) => log.push(`[console.${m.type()}] ${m.text()}`));
  page.on('response', (r) => log.push(`${r.request().method()} ${r.url()} -> ${r.status()}`));
  page.on('pageerror', (e) => log.push(`[pageerror] ${e.message}`));
  const close = async () => {
    writeFileSync(artifactPath(`${prefix}-browser-${label}.log`), log.join('\n') + '\n');
    await context.close();
  };
  return { context, page, log, close };
}

/** A call to JupyterHub's REST API with a service token: { status, json, text }. */
export async function jupyterhubApi(hubUrl, token, pathname, { method = 'GET', body } = {}) {
  const res = await fetch(`${hubUrl}/hub/api${pathname}`, {
    method,
    headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}
