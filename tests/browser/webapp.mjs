// The web app's whole journey in headless Chromium: sign up, sign in, upload through the form
// with the upload throttled (recording the progress bar as it moves), wait for `ready`, share
// with a recipient, download through the emailed link as the recipient, upload two files in
// one go, then as admin filter
// the audit log to the file and verify the chain. Every page visited is saved as a full-page
// screenshot; console messages are watched for Content-Security-Policy violations.
//
// Usage: node webapp.mjs <base-url> <artifacts-dir> <file-to-upload> <download-path>
//                        <admin-email> <admin-password>
// It prints one JSON object per line: {"need_link_for": <recipient>} when it needs the emailed
// share link, {"need_verification_link_for": <owner>} when it needs the link that confirms the
// owner's address (each to be written to its standard input, one line), and {"report": …} at
// the end.
import path from 'node:path';
import readline from 'node:readline';
import { launch } from './launch.mjs';

const [base, artifacts, uploadPath, downloadPath, adminEmail, adminPassword] = process.argv.slice(2);
if (!adminPassword) {
  console.error('usage: node webapp.mjs <base-url> <artifacts-dir> <file> <download-path> <admin-email> <admin-password>');
  process.exit(2);
}

const input = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (message) => console.log(JSON.stringify(message));
const email = `owner-${Date.now()}@example.org`;
const password = 'correct horse battery staple';
const recipient = 'recipient@example.org';
const screenshots = [];
const cspViolations = [];
let step = 0;

const browser = await launch();
try {
  const watch = (page) => {
    page.on('console', (msg) => {
      if (/Content[- ]Security[- ]Policy|Refused to/i.test(msg.text())) cspViolations.push(msg.text());
    });
    page.on('pageerror', (err) => cspViolations.push(`page error: ${err.message}`));
  };
  const shot = async (page, name) => {
    step += 1;
    const file = path.join(artifacts, `${String(step).padStart(2, '0')}-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    screenshots.push(file);
  };
  const expectStatus = (response, wanted, what) => {
    if (!response || response.status() !== wanted) {
      throw new Error(`${what}: answered ${response && response.status()}, expected ${wanted}`);
    }
  };

  // The owner, at desktop width.
  const owner = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await owner.newPage();
  watch(page);
  await page.goto(base + '/');
  if (!page.url().endsWith('/app/signin')) throw new Error(`/ led to ${page.url()}`);
  await shot(page, 'signin');

  await page.getByRole('link', { name: 'Create one' }).click();
  await page.waitForURL('**/app/signup');
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByLabel('Password, once more').fill(password);
  await shot(page, 'signup');
  await page.getByRole('button', { name: 'Create the account' }).click();
  await page.waitForURL('**/app/signin?welcome=1');
  await shot(page, 'signed-up');

  // The address is confirmed through the emailed link's page, by its button.
  say({ need_verification_link_for: email });
  const verifyLink = (await input.next()).value.trim();
  expectStatus(await page.goto(verifyLink), 200, 'the verification page');
  await shot(page, 'verify-email');
  await page.getByRole('button', { name: 'Confirm my address' }).click();
  await page.getByRole('heading', { name: 'Your address is confirmed' }).waitFor();
  await shot(page, 'verified');
  await page.goto(base + '/app/signin');

  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/app/files');
  await shot(page, 'files-empty');

  // Upload, throttled so that the progress bar has time to move.
  await page.getByRole('link', { name: 'Upload a file' }).click();
  await page.waitForURL('**/app/upload');
  await page.getByLabel('File').setInputFiles(uploadPath);
  await shot(page, 'upload-form');
  const cdp = await owner.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 300 * 1024,
  });
  // A first try, cancelled part-way: the form stays and says so; the server keeps nothing.
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  await page.waitForFunction(() => {
    const bar = document.getElementById('progress');
    return bar && bar.value > 0 && bar.value < 100;
  });
  await page.getByRole('button', { name: 'Cancel upload' }).click();
  const cancelled = (await page.getByRole('alert').textContent()).trim();
  await shot(page, 'upload-cancelled');
  if (!page.url().endsWith('/app/upload')) throw new Error('left the form after cancelling: ' + page.url());
  if (await page.getByRole('button', { name: 'Upload', exact: true }).isDisabled()) {
    throw new Error('the Upload button stayed disabled after cancelling');
  }

  const progress = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      try {
        const value = await page.evaluate(() => {
          const bar = document.getElementById('progress');
          return bar && !document.getElementById('progress-box').hidden ? bar.value : null;
        });
        if (value !== null && progress[progress.length - 1] !== value) progress.push(value);
        if (value !== null && value > 0 && value < 100 && progress.length === 3) await shot(page, 'upload-progress');
      } catch {
        // the page is navigating away
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  await page.waitForURL(/\/app\/files\/[0-9a-f-]{36}$/, { timeout: 120000 });
  sampling = false;
  await sampler;
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  const fileId = page.url().split('/').pop();
  await shot(page, 'uploaded');

  // The files page refreshes by itself until the file is ready.
  await page.goto(base + '/app/files');
  await page.locator('.item', { hasText: path.basename(uploadPath) }).locator('.badge', { hasText: 'ready' })
    .waitFor({ timeout: 60000 });
  await shot(page, 'files-ready');
  await page.setViewportSize({ width: 375, height: 800 });
  await shot(page, 'files-phone');
  await page.setViewportSize({ width: 1280, height: 900 });

  // Share it with a recipient from the file's page.
  await page.getByRole('link', { name: path.basename(uploadPath) }).click();
  await page.waitForURL(`**/app/files/${fileId}`);
  await page.getByLabel('Recipients').fill(recipient);
  await page.getByLabel('Message').fill('The annual report, as promised.');
  await shot(page, 'share-form');
  await page.getByRole('button', { name: 'Share', exact: true }).click();
  await page.locator('.share', { hasText: recipient }).waitFor();
  await shot(page, 'shared');

  // The recipient opens the emailed link (the test reads it from its SMTP server).
  say({ need_link_for: recipient });
  const link = (await input.next()).value.trim();
  const reader = await browser.newContext({ acceptDownloads: true, viewport: { width: 375, height: 800 } });
  const landing = await reader.newPage();
  watch(landing);
  expectStatus(await landing.goto(link), 200, 'the emailed link');
  await shot(landing, 'recipient-phone');
  const [download] = await Promise.all([
    landing.waitForEvent('download'),
    landing.getByRole('button', { name: 'Download' }).click(),
  ]);
  await download.saveAs(downloadPath);
  await reader.close();

  // The owner sees the recipient's state, and signs out.
  // (the job records the email a moment after sending it: reload until the page says so)
  const emailed = page.locator('.share .badge', { hasText: 'emailed' });
  for (let tries = 0; (await emailed.count()) === 0; tries += 1) {
    if (tries > 300) throw new Error('the share never showed as emailed');
    await new Promise((resolve) => setTimeout(resolve, 100));
    await page.reload();
  }
  await shot(page, 'shares-state');

  // Two files in one go, chosen together: the form names both, and the files list says they
  // arrived.
  await page.goto(base + '/app/upload');
  await page.getByLabel('Files').setInputFiles([
    { name: 'minutes.txt', mimeType: 'text/plain', buffer: Buffer.from('Minutes of the meeting.\n') },
    { name: 'agenda.txt', mimeType: 'text/plain', buffer: Buffer.from('Agenda for the next one.\n') },
  ]);
  const chosen = (await page.locator('#file-hint').innerText()).trim();
  await shot(page, 'upload-two');
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  await page.waitForURL(/\/app\/files\?uploaded=2$/);
  const severalNotice = (await page.locator('.notice').innerText()).trim();
  await shot(page, 'uploaded-two');

  // A personal API token for a script: its secret is shown once, on the answering page.
  await page.getByRole('link', { name: 'API tokens' }).click();
  await page.waitForURL('**/app/tokens');
  await page.getByLabel('What it is for').fill('Nightly export');
  await page.getByRole('checkbox', { name: /files:read/ }).check();
  await shot(page, 'token-form');
  await page.getByRole('button', { name: 'Make a token' }).click();
  const tokenSecret = (await page.locator('#new-secret').innerText()).trim();
  await shot(page, 'token-made');
  await page.setViewportSize({ width: 375, height: 800 });
  await shot(page, 'tokens-phone');
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(base + '/app/tokens');
  if ((await page.locator('#new-secret').count()) !== 0) throw new Error('the secret was shown twice');

  // Where the owner is signed in: this browser, marked.
  await page.getByRole('link', { name: 'Sessions' }).click();
  await page.waitForURL('**/app/sessions');
  await page.locator('.badge', { hasText: 'this browser' }).waitFor();
  await shot(page, 'sessions');
  await page.setViewportSize({ width: 375, height: 800 });
  await shot(page, 'sessions-phone');
  await page.setViewportSize({ width: 1280, height: 900 });

  // The password page (the account's address in the header leads there): a wrong current
  // password is refused on the page and changes nothing.
  await page.locator('a.who').click();
  await page.waitForURL('**/app/password');
  await shot(page, 'password');
  await page.getByLabel('Current password').fill('not the password at all');
  await page.getByLabel('New password (at least 10 characters)').fill('another long password');
  await page.getByLabel('New password, again').fill('another long password');
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.getByRole('alert').waitFor();
  await shot(page, 'password-refused');
  await page.setViewportSize({ width: 375, height: 800 });
  await shot(page, 'password-phone');
  await page.setViewportSize({ width: 1280, height: 900 });

  // A second factor: the QR code Coffer draws, a first code (from pyotp, through the test), the
  // recovery codes shown once; then signing in again needs a code.
  await page.getByRole('link', { name: 'Second factor' }).click();
  await page.waitForURL('**/app/mfa');
  await shot(page, 'mfa-off');
  await page.getByRole('button', { name: 'Set up a second factor' }).click();
  await page.locator('.qr svg').waitFor();
  const totpSecret = (await page.locator('#totp-secret').innerText()).trim();
  await shot(page, 'mfa-qr');
  await page.setViewportSize({ width: 375, height: 800 });
  await shot(page, 'mfa-qr-phone');
  await page.setViewportSize({ width: 1280, height: 900 });
  say({ need_totp_for: totpSecret, ahead: 0 });
  await page.getByLabel('The code your app shows').fill((await input.next()).value.trim());
  await page.getByRole('button', { name: 'Turn it on' }).click();
  await page.locator('#recovery-codes').waitFor();
  const recoveryCodes = await page.locator('#recovery-codes li').count();
  await shot(page, 'mfa-recovery-codes');
  await page.setViewportSize({ width: 375, height: 800 });
  await shot(page, 'mfa-recovery-codes-phone');
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.getByRole('button', { name: 'Sign out', exact: true }).first().click();
  await page.waitForURL('**/app/signin');
  await page.getByLabel('Email address').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByLabel('Code').waitFor();
  await shot(page, 'signin-second-step');
  await page.setViewportSize({ width: 375, height: 800 });
  await shot(page, 'signin-second-step-phone');
  await page.setViewportSize({ width: 1280, height: 900 });
  say({ need_totp_for: totpSecret, ahead: 30 });
  await page.getByLabel('Code').fill((await input.next()).value.trim());
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/app/files');

  await page.getByRole('button', { name: 'Sign out', exact: true }).first().click();
  await page.waitForURL('**/app/signin');
  await shot(page, 'signed-out');

  // A forgotten password: the same notice whatever the address.
  await page.getByRole('link', { name: 'Forgot your password?' }).click();
  await page.waitForURL('**/app/forgot-password');
  await page.getByLabel('Email address').fill(email);
  await shot(page, 'forgot-password');
  await page.getByRole('button', { name: 'Email me a link' }).click();
  await page.getByRole('status').waitFor();
  const forgotNotice = (await page.getByRole('status').innerText()).trim();
  await shot(page, 'forgot-password-sent');
  await page.setViewportSize({ width: 375, height: 800 });
  await shot(page, 'forgot-password-phone');
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(base + '/app/signin');

  // The admin filters the audit log to the file and verifies the chain.
  await page.getByLabel('Email address').fill(adminEmail);
  await page.getByLabel('Password').fill(adminPassword);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/app/files');
  await shot(page, 'admin-files');
  await page.getByRole('link', { name: 'Audit log' }).click();
  await page.waitForURL('**/app/admin/audit');
  await shot(page, 'audit');
  await page.getByLabel('Target id').fill(fileId);
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(new RegExp(`/app/admin/audit\\?.*target_id=${fileId}`));
  const rows = await page.locator('tbody tr').count();
  if (rows < 3) throw new Error(`only ${rows} audit events for the file`);
  const others = await page.locator('tbody tr', { hasNotText: fileId }).count();
  if (others !== 0) throw new Error(`${others} events of other targets after filtering`);
  await shot(page, 'audit-filtered');
  await page.getByRole('button', { name: 'Verify chain' }).click();
  await page.locator('#verify-result').waitFor();
  const verify = (await page.locator('#verify-result').innerText()).trim();
  await shot(page, 'audit-verified');
  await page.setViewportSize({ width: 375, height: 800 });
  await shot(page, 'audit-phone');
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.getByRole('link', { name: 'Keys' }).click();
  await page.waitForURL('**/app/admin/keys');
  await shot(page, 'keys');
  await page.getByRole('link', { name: 'Users' }).click();
  await page.waitForURL('**/app/admin/users');
  await shot(page, 'users');

  say({ report: { file_id: fileId, cancelled, chosen, several_notice: severalNotice, progress, verify, csp_violations: cspViolations, screenshots, rows, token_secret: tokenSecret, forgot_notice: forgotNotice, recovery_codes: recoveryCodes } });
} finally {
  await browser.close();
}
process.exit(0);
