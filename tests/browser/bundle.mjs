// A recipient's journey through a bundle in headless Chromium, with JavaScript off: the page asks
// them to confirm their address (a code sent by email), then lists the files; one file downloads
// on its own, "Download all" gives the ZIP, and a download of a file resumes (Range, If-Range
// with its ETag) in the same verified browser. Every page is saved as a screenshot.
//
// Usage: node bundle.mjs <link> <artifacts-dir>
// It prints one JSON object per line: {"need_code": true} when it needs the emailed code (to be
// written to its standard input, one line), and {"report": …} at the end.
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { launch } from './launch.mjs';

const [link, artifacts] = process.argv.slice(2);
if (!artifacts) {
  console.error('usage: node bundle.mjs <link> <artifacts-dir>');
  process.exit(2);
}

const lines = readline.createInterface({ input: process.stdin });
const input = lines[Symbol.asyncIterator]();
const say = (message) => console.log(JSON.stringify(message));
const shot = (page, name) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });

const browser = await launch();
try {
  const context = await browser.newContext({ acceptDownloads: true, javaScriptEnabled: false });
  const page = await context.newPage();
  const first = await page.goto(link);
  if (first.status() !== 200) throw new Error(`the page answered ${first.status()}`);
  await shot(page, 'bundle-1-confirm');
  const beforeVerified = (await page.locator('main').innerText());

  say({ step: 'page' });
  await page.getByRole('button', { name: 'Email me a code' }).click();
  await shot(page, 'bundle-2-code');
  say({ need_code: true });
  const { value: code } = await input.next();
  await page.getByLabel('Code from the email').fill(code);
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.waitForURL(link);
  await shot(page, 'bundle-3-files');
  say({ step: 'verified' });

  const names = await page.locator('table.files tbody .file-title').allInnerTexts();
  const [one] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: `Download ${names[1]}` }).click(),
  ]);
  await one.saveAs(path.join(artifacts, 'one.pdf'));
  say({ step: 'one file' });
  const [all] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download all' }).click(),
  ]);
  await all.saveAs(path.join(artifacts, 'all.zip'));
  say({ step: 'all files' });

  // The first file again, from its 1,001st byte on, as a browser resumes a download cut short:
  // with the browser's own (verified) cookie, naming the ETag it was first given.
  const action = await page.getByRole('button', { name: `Download ${names[0]}` }).getAttribute('formaction');
  const fileUrl = new URL(action, link).href;
  const head = await context.request.head(fileUrl);
  const etag = head.headers()['etag'];
  const resumed = await context.request.get(fileUrl, { headers: { Range: 'bytes=1000-', 'If-Range': etag } });
  fs.writeFileSync(path.join(artifacts, 'resumed.part'), await resumed.body());
  await shot(page, 'bundle-4-after');

  say({
    report: {
      before_verified: beforeVerified,
      names,
      one: one.suggestedFilename(),
      all: all.suggestedFilename(),
      head_status: head.status(),
      resumed_status: resumed.status(),
      content_range: resumed.headers()['content-range'],
    },
  });
} finally {
  lines.close();
  await browser.close();
}
