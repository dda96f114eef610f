// Opens Swagger UI in headless Chromium under the policy Coffer sends with it, and reports
// whether it rendered the API's operations and whether the browser refused anything.
// Usage: node docs.mjs <docs-url> <screenshot-path>
import { launch } from './launch.mjs';

const [url, screenshotPath] = process.argv.slice(2);
if (!screenshotPath) {
  console.error('usage: node docs.mjs <docs-url> <screenshot-path>');
  process.exit(2);
}

const browser = await launch();
try {
  const page = await browser.newPage();
  const refused = [];
  page.on('console', (msg) => {
    if (/Content Security Policy|Refused to/i.test(msg.text())) refused.push(msg.text());
  });
  const response = await page.goto(url);
  await page.locator('.opblock').first().waitFor({ timeout: 30000 });
  await page.screenshot({ path: screenshotPath });
  console.log(JSON.stringify({
    status: response.status(),
    csp: response.headers()['content-security-policy'] || null,
    operations: await page.locator('.opblock').count(),
    refused,
  }));
} finally {
  await browser.close();
}
