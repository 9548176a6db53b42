#!/usr/bin/env node
// Drives the "Get Secret Token" page in headless Chromium, as a person would.
//
//   node tests/browser/reveal.mjs URL [SCREENSHOT_DIR]
//
// Opens URL, reads #tenant-url, clicks #reveal (the submit button of a
// <form method="post">), waits for the POST's page, reads #token, clicks
// #copy if there is one, and prints one JSON line on stdout:
//
//   {"tenantUrl":"…","token":"…","copied":true|false|null,
//    "consoleErrors":[…],"cspViolations":[…]}
//
// consoleErrors: console.error messages, uncaught exceptions and failed
// loads of the page, except CSP messages (in cspViolations) and the 404 of
// the /favicon.ico that Chromium asks for by itself. cspViolations: the
// page's 'securitypolicyviolation' events and Chromium's CSP console
// messages ("Executing inline script violates …"), both reported for one
// violation. copied: whether the clipboard held the token
// after clicking #copy (null without a #copy button); informational only.
// CSP is enforced (not bypassed): Playwright clicks without page scripts.
//
// With SCREENSHOT_DIR, saves reveal-before.png (the GET page) and
// reveal-after.png (the token page) there, full page at a 390x844 viewport.
//
// Chromium is Debian's: $CHROMIUM, default /usr/bin/chromium (scripts/lib.sh
// ensure_browser installs it). Every step times out after 20 s; any failure
// is a message on stderr and exit status 1 (2 for a usage error).

import { chromium } from 'playwright-core';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

const STEP_TIMEOUT_MS = 20_000;
// Starting Chromium on a loaded 2-core CI machine (the whole suite runs in
// parallel) can take far longer than any page step.
const LAUNCH_TIMEOUT_MS = 120_000;
// A last resort if something hangs outside Playwright's own timeouts.
const OVERALL_TIMEOUT_MS = 240_000;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  // Without these Chromium keeps trying to reach Google's services, and the
  // closed network refuses those connections.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function fail(message) {
  // Playwright colours its call logs even when stderr is not a terminal.
  process.stderr.write(`reveal.mjs: ${String(message).replace(/\x1b\[[0-9;]*m/g, '')}\n`);
  process.exit(1);
}

const [url, screenshotDir] = process.argv.slice(2);
if (!url || process.argv.length > 4 || url.startsWith('-')) {
  process.stderr.write('usage: node tests/browser/reveal.mjs URL [SCREENSHOT_DIR]\n');
  process.exit(2);
}

const watchdog = setTimeout(
  () => fail(`gave up after ${OVERALL_TIMEOUT_MS / 1000} s`),
  OVERALL_TIMEOUT_MS,
);
watchdog.unref();

const isCspMessage = (text) =>
  /Content[- ]Security[- ]Policy/i.test(text) || /^Refused to /.test(text);

// Chromium asks for /favicon.ico by itself (unless the CSP forbids it); a
// 404 there is the browser's doing, not the page's.
const isFaviconMiss = (text, loc) => {
  if (!/^Failed to load resource/.test(text) || !loc || !loc.url) return false;
  try {
    return new URL(loc.url).pathname === '/favicon.ico';
  } catch {
    return false;
  }
};

async function main() {
  const consoleErrors = [];
  const cspViolations = [];
  const userDataDir = await mkdtemp(path.join(tmpdir(), 'scim-browser-'));
  if (screenshotDir) await mkdir(screenshotDir, { recursive: true });

  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: LAUNCH_TIMEOUT_MS,
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 1,
      bypassCSP: false,
    });
    context.setDefaultTimeout(STEP_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
    // The copy button writes to the clipboard; granted so that it can, and
    // so that a refusal does not show up as a page error.
    await context
      .grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(url).origin })
      .catch(() => {});

    // Reported from the page through a CDP binding and an injected script,
    // neither of which the page's CSP governs.
    await context.exposeBinding('__scimReportCsp', (_source, v) => {
      cspViolations.push(
        `securitypolicyviolation: ${v.directive} blocked ${v.blocked || '(inline)'}` +
          ` at ${v.source || v.document}${v.line ? `:${v.line}` : ''}` +
          (v.sample ? ` sample=${JSON.stringify(v.sample)}` : ''),
      );
    });
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__scimReportCsp({
          directive: e.effectiveDirective || e.violatedDirective,
          blocked: e.blockedURI,
          document: e.documentURI,
          source: e.sourceFile,
          line: e.lineNumber,
          sample: e.sample,
        });
      });
    });

    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (msg) => {
      const text = msg.text();
      if (isCspMessage(text)) {
        cspViolations.push(`console: ${text}`);
      } else if (msg.type() === 'error') {
        const loc = msg.location();
        if (isFaviconMiss(text, loc)) return;
        consoleErrors.push(loc && loc.url ? `${text} (${loc.url}:${loc.lineNumber})` : text);
      }
    });
    page.on('pageerror', (err) => consoleErrors.push(`uncaught: ${err.message}`));

    // The GET page.
    const getResponse = await page.goto(url, { waitUntil: 'load' });
    if (!getResponse) throw new Error(`GET ${url}: no response`);
    if (getResponse.status() >= 400) throw new Error(`GET ${url}: HTTP ${getResponse.status()}`);

    const tenantUrlEl = page.locator('#tenant-url');
    await tenantUrlEl.waitFor({ state: 'visible' }).catch(() => {
      throw new Error(`GET ${url}: no visible #tenant-url`);
    });
    const tenantUrl = ((await tenantUrlEl.textContent()) ?? '').trim();
    if (!tenantUrl) throw new Error(`GET ${url}: #tenant-url is empty`);

    const revealButton = page.locator('#reveal');
    await revealButton.waitFor({ state: 'visible' }).catch(() => {
      throw new Error(`GET ${url}: no visible #reveal button`);
    });
    if (screenshotDir) {
      await page.screenshot({ path: path.join(screenshotDir, 'reveal-before.png'), fullPage: true });
    }

    // Reveal: the form's POST, and the page it answers with.
    const navigation = page.waitForNavigation({ waitUntil: 'load' });
    navigation.catch(() => {}); // awaited below; no unhandled rejection meanwhile
    await revealButton.click();
    const postResponse = await navigation.catch((e) => {
      throw new Error(`clicking #reveal did not load a page: ${e.message}`);
    });
    if (!postResponse) throw new Error('clicking #reveal: no response');
    // The first request of the navigation (a POST answered with a redirect
    // to a GET is fine too).
    let first = postResponse.request();
    while (first.redirectedFrom()) first = first.redirectedFrom();
    const method = first.method();
    if (method !== 'POST') throw new Error(`clicking #reveal sent ${method}, not POST`);
    if (postResponse.status() >= 400) {
      throw new Error(`POST ${postResponse.url()}: HTTP ${postResponse.status()}`);
    }

    const tokenEl = page.locator('#token');
    await tokenEl.waitFor({ state: 'attached' }).catch(() => {
      throw new Error(`POST ${postResponse.url()}: no #token on the page`);
    });
    const token = ((await tokenEl.textContent()) ?? '').trim();
    if (!token) throw new Error(`POST ${postResponse.url()}: #token is empty`);

    if (screenshotDir) {
      await page.screenshot({ path: path.join(screenshotDir, 'reveal-after.png'), fullPage: true });
    }

    // Copy, if offered. Clipboard trouble is not a failure.
    let copied = null;
    const copyButton = page.locator('#copy');
    if ((await copyButton.count()) > 0) {
      copied = false;
      try {
        await copyButton.click({ timeout: 5_000 });
        for (let i = 0; i < 20 && !copied; i++) {
          const text = await page.evaluate(() => navigator.clipboard.readText()).catch(() => null);
          copied = text !== null && text.trim() === token;
          if (!copied) await page.waitForTimeout(100);
        }
      } catch {
        // ignore
      }
    }

    // Let late console messages and violation reports arrive.
    await page.waitForTimeout(200);
    return { tenantUrl, token, copied, consoleErrors, cspViolations };
  } finally {
    if (context) await context.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  }
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (err) => fail(err && err.message ? err.message : String(err)),
);
