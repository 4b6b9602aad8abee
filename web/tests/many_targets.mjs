// A capture with more pod interfaces than one answer carries (150; an answer shows the first
// 100 and says how many it left out): the capture's page shows the totals over all of them, and
// its Pods table pages through GET .../targets, 100 at a time, forwards and back.
// The test (tests/web_ui.rs) stores the capture `default/many` with 150 targets on 3 nodes first.

import assert from 'node:assert/strict';
import {
  TOKEN, expectNoPageErrors, expectText, expectVisible, main, newPage, screenshot, step, url,
} from './lib.mjs';

await main(async (browser) => {
  const page = await newPage(browser, { width: 1280, height: 900 });
  const pager = page.locator('#targets-pager');
  const rows = page.locator('#targets tbody tr');

  await step('sign in and open the capture', async () => {
    await page.goto(url('/'));
    await page.getByLabel('API token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectVisible(page.getByRole('heading', { name: 'Captures', level: 1 }));
    await page.goto(url('/#/captures/default/many'));
    await expectVisible(page.getByRole('heading', { name: /many/, level: 1 }));
  });

  await step('the totals cover every pod, the table the first 100', async () => {
    await expectText(page.locator('#stat-pods'), '150');
    await expectText(page.locator('#stat-packets'), '300');
    await expectText(pager, /Pod interfaces 1–100 of 150/);
    assert.equal(await rows.count(), 100);
    await expectText(rows.first().locator('th'), /web-000/);
    assert.ok(await pager.getByRole('button', { name: 'Previous' }).isDisabled());
    await screenshot(page, 'many-first-page');
  });

  await step('Next shows the other 50, and nothing after', async () => {
    await pager.getByRole('button', { name: 'Next' }).click();
    await expectText(pager, /Pod interfaces 101–150 of 150/);
    assert.equal(await rows.count(), 50);
    await expectText(rows.first().locator('th'), /web-002/);
    assert.ok(await pager.getByRole('button', { name: 'Next' }).isDisabled());
  });

  await step('Previous goes back to the first page', async () => {
    await pager.getByRole('button', { name: 'Previous' }).click();
    await expectText(pager, /Pod interfaces 1–100 of 150/);
    await expectText(rows.first().locator('th'), /web-000/);
    expectNoPageErrors(page);
  });
});
