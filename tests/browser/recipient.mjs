// Opens an emailed share link in headless Chromium, types the password, clicks Download and
// saves the file and a screenshot of the page. Usage:
//   node recipient.mjs <link> <password> <download-path> <screenshot-path>
import { launch } from './launch.mjs';

const [link, password, downloadPath, screenshotPath] = process.argv.slice(2);
if (!screenshotPath) {
  console.error('usage: node recipient.mjs <link> <password> <download-path> <screenshot-path>');
  process.exit(2);
}

const browser = await launch();
try {
  const context = await browser.newContext({ acceptDownloads: true, javaScriptEnabled: false });
  const page = await context.newPage();
  const response = await page.goto(link);
  if (response.status() !== 200) throw new Error(`page answered ${response.status()}`);
  await page.getByLabel('Password').fill(password);
  await page.screenshot({ path: screenshotPath, fullPage: true });
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download' }).click(),
  ]);
  await download.saveAs(downloadPath);
  console.log(JSON.stringify({
    title: await page.title(),
    text: await page.locator('main').innerText(),
    suggested: download.suggestedFilename(),
  }));
} finally {
  await browser.close();
}
