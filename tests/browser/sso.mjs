// Single sign-on in headless Chromium, at desktop and phone width: the sign-in page's "Sign in
// with …" button, the real OpenID provider's sign-in and consent pages, the way back to Coffer
// (the provider is another site, `localhost`, so the session's SameSite=Strict cookie must be
// sent by a page of Coffer's own), the Single sign-on page, a refused sign-in (a provider account
// whose address a Coffer account has: never joined by address) explained on the sign-in page, and signing out at Coffer and at the provider. Every page is saved as a
// screenshot; console messages are watched for Content-Security-Policy violations.
//
// Usage: node sso.mjs <coffer-base-url> <artifacts-dir> <provider-login> <conflicting-login>
// (`<conflicting-login>-desktop` and `-phone` are the provider accounts with a taken address)
// Prints {"report": …} at the end.
import path from 'node:path';
import { launch } from './launch.mjs';

const [base, artifacts, login, conflicting] = process.argv.slice(2);
if (!conflicting) {
  console.error('usage: node sso.mjs <base-url> <artifacts-dir> <provider-login> <conflicting-login>');
  process.exit(2);
}

const screenshots = [];
const cspViolations = [];
const visited = [];
let step = 0;

const browser = await launch();
try {
  for (const [label, viewport] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 844 }]]) {
    const context = await browser.newContext({ viewport, isMobile: label === 'phone' });
    const page = await context.newPage();
    page.on('console', (msg) => {
      if (/Content[- ]Security[- ]Policy|Refused to/i.test(msg.text())) cspViolations.push(msg.text());
    });
    page.on('pageerror', (err) => cspViolations.push(`page error: ${err.message}`));
    const shot = async (name) => {
      step += 1;
      const file = path.join(artifacts, `${String(step).padStart(2, '0')}-${label}-${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      screenshots.push(file);
    };
    const signInAtProvider = async (who) => {
      await page.waitForURL(/localhost:\d+\/interaction\//);
      await shot('provider-sign-in');
      await page.fill('input[name="login"]', who);
      await page.fill('input[name="password"]', 'any password');
      await page.click('button[type="submit"]');
      await page.waitForURL(/localhost:\d+\/interaction\//);
      await shot('provider-consent');
      await page.click('button[type="submit"]');
    };

    await page.goto(`${base}/app/signin`);
    await shot('signin');
    await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
    await signInAtProvider(login);
    // Back at Coffer: through its own page, on to the files, signed in.
    await page.waitForURL(`${base}/app/files`);
    visited.push(page.url());
    await shot('files-signed-in');
    if (!(await page.getByRole('button', { name: 'Sign out' }).isVisible())) {
      throw new Error('signed in with the provider, but the page shows no session');
    }
    await page.goto(`${base}/app/sso`);
    if (!(await page.getByText('is connected').isVisible())) {
      throw new Error('the Single sign-on page does not say the account is connected');
    }
    await shot('sso-page');

    // Signing out: Coffer's session ends, then the provider asks to end its own.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/localhost:\d+\/session\/end/);
    await shot('provider-sign-out');
    await page.click('button[autofocus], button[type="submit"]');
    await page.waitForURL(`${base}/app/signin`);
    visited.push(page.url());
    await page.goto(`${base}/app/files`);
    if (!page.url().endsWith('/app/signin')) throw new Error(`signed out, yet ${page.url()} opened`);

    // A provider account with the address of a Coffer account it is not linked to: refused,
    // and the sign-in page says why.
    await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
    await signInAtProvider(`${conflicting}-${label}`);
    await page.waitForURL(/\/app\/signin\?sso=address-taken/);
    if (!(await page.getByRole('alert').textContent()).includes('never joined by address')) {
      throw new Error('the refused sign-in is not explained');
    }
    await shot('signin-refused');
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ report: { screenshots, cspViolations, visited } }));
