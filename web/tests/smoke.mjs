// Smoke test of the harness: the server's page opens in Debian's chromium and can be photographed.
//   PODCAP_URL=http://127.0.0.1:8080 node web/tests/smoke.mjs
import assert from 'node:assert/strict';
import { expectNoPageErrors, expectVisible, log, main, newPage, screenshot, step, url } from './lib.mjs';

await main(async (browser) => {
  const page = await newPage(browser, { width: 1280, height: 800 });

  await step('open the page at /', async () => {
    const response = await page.goto(url('/'), { waitUntil: 'load' });
    assert.ok(response, 'no response for /');
    assert.equal(response.status(), 200, `GET / answered ${response.status()}`);
    assert.match(response.headers()['content-type'] ?? '', /^text\/html/);
  });

  await step('the page renders', async () => {
    await expectVisible(page.locator('body'));
    // The page's heading, when its script has drawn one (a bounded wait: a placeholder page may have none).
    const heading = page.locator('h1').first();
    const shown = await heading
      .waitFor({ state: 'visible', timeout: 3_000 })
      .then(() => heading.innerText())
      .catch(() => null);
    log(`title ${JSON.stringify(await page.title())}, h1 ${JSON.stringify(shown)}`);
    expectNoPageErrors(page);
  });

  await step('screenshot', () => screenshot(page, 'smoke'));
});
