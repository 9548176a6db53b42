#!/usr/bin/env node
// Renders a local HTML file (an email body) to a PNG, for the docs.
//
//   node tests/browser/email.mjs HTML_FILE PNG_OUT
//
// 600 px wide (the usual email width), full page, light colour scheme, in
// headless Debian Chromium ($CHROMIUM, default /usr/bin/chromium). The file
// is served from its own folder on a loopback port as UTF-8 (so relative
// images work and a body without <meta charset> is not misread); requests
// anywhere else are blocked, as a mail client blocks remote images by
// default. Prints {"png": PNG_OUT, "width": 600, "height": H,
// "scrollWidth": W} on stdout: W > 600 means the email is wider than 600 px
// (also warned on stderr) and the PNG cuts it. Any failure is a message on
// stderr and exit status 1 (2 for usage).

import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

const STEP_TIMEOUT_MS = 20_000;
const WIDTH = 600;

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

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.svg': 'image/svg+xml',
  '.webp': 'image/webp',
};

function fail(message) {
  process.stderr.write(`email.mjs: ${String(message).replace(/\x1b\[[0-9;]*m/g, '')}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
if (args.length !== 2 || args.some((a) => a.startsWith('-'))) {
  process.stderr.write('usage: node tests/browser/email.mjs HTML_FILE PNG_OUT\n');
  process.exit(2);
}
const htmlFile = path.resolve(args[0]);
const pngOut = path.resolve(args[1]);
const root = path.dirname(htmlFile);

// Serves files under `root` only.
function serve() {
  const server = createServer(async (req, res) => {
    try {
      const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      const file = path.resolve(root, `.${rel}`);
      if (file !== root && !file.startsWith(root + path.sep)) throw new Error('outside');
      const body = await readFile(file);
      res.writeHead(200, {
        'Content-Type': TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream',
        'Cache-Control': 'no-store',
      });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function main() {
  await readFile(htmlFile); // a clear error for a missing file
  await mkdir(path.dirname(pngOut), { recursive: true });
  const server = await serve();
  const origin = `http://127.0.0.1:${server.address().port}`;
  const userDataDir = await mkdtemp(path.join(tmpdir(), 'scim-browser-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: STEP_TIMEOUT_MS,
      // Short, so that the full page is the email's own height.
      viewport: { width: WIDTH, height: 100 },
      deviceScaleFactor: 1,
      colorScheme: 'light',
    });
    context.setDefaultTimeout(STEP_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
    await context.route(
      (u) => u.origin !== origin && u.protocol !== 'data:',
      (route) => route.abort('blockedbyclient'),
    );
    const page = context.pages()[0] ?? (await context.newPage());
    const response = await page.goto(`${origin}/${encodeURIComponent(path.basename(htmlFile))}`, {
      waitUntil: 'load',
    });
    if (!response || !response.ok()) throw new Error(`could not load ${htmlFile}`);
    await page.evaluate(() => document.fonts.ready.then(() => undefined)).catch(() => {});
    const { scrollWidth, scrollHeight } = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      scrollHeight: document.documentElement.scrollHeight,
    }));
    if (scrollWidth > WIDTH) {
      process.stderr.write(`email.mjs: warning: the email is ${scrollWidth} px wide; cut to ${WIDTH}\n`);
    }
    const png = await page.screenshot({
      path: pngOut,
      fullPage: true,
      clip: { x: 0, y: 0, width: WIDTH, height: scrollHeight },
    });
    // The PNG's own size, from its IHDR chunk.
    return { png: pngOut, width: png.readUInt32BE(16), height: png.readUInt32BE(20), scrollWidth };
  } finally {
    if (context) await context.close().catch(() => {});
    server.close();
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
