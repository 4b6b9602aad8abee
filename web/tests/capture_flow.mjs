// The console end to end against `capture-api --standalone` with two netns pods sending UDP
// (set up by tests/web_ui.rs): sign in (a refused token first), create a
// capture through the form (bad input first: the API's messages must appear at the fields),
// watch it complete, download the merged capture with the buttons, share it, open the link in a
// fresh browser context, revoke it; a token of another namespace gets a clear 403; a cron
// schedule shows its next five runs before saving, and suspends. Every page is photographed at
// 1280 and 390 px, and every form control must have an accessible name.
//
// Extra environment: PODCAP_NAMESPACE, PODCAP_SELECTOR, PODCAP_PODS (comma-separated pod names
// the selector matches), PODCAP_PORT (the UDP port the pods send to), PODCAP_DOWNLOADS (where
// downloads are saved), PODCAP_OTHER_TOKEN (a viewer token of another namespace).

import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  TOKEN, api, expectHidden, expectNoPageErrors, expectText, expectVisible, log, main, newPage, screenshot, step, url,
} from './lib.mjs';

const NAMESPACE = process.env.PODCAP_NAMESPACE;
const SELECTOR = process.env.PODCAP_SELECTOR;
const PODS = (process.env.PODCAP_PODS || '').split(',').filter(Boolean);
const PORT = process.env.PODCAP_PORT;
const DOWNLOADS = process.env.PODCAP_DOWNLOADS;
const OTHER_TOKEN = process.env.PODCAP_OTHER_TOKEN;
const CAPTURE = 'web-udp';
for (const [name, value] of Object.entries({ NAMESPACE, SELECTOR, PORT, DOWNLOADS, OTHER_TOKEN })) {
  assert.ok(value, `PODCAP_${name} must be set`);
}
assert.ok(PODS.length > 0, 'PODCAP_PODS must name the pods');

/** Every visible input, select, textarea and button has an accessible name. */
async function expectLabelled(page, where) {
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter((element) => element.offsetParent !== null && element.type !== 'hidden')
    .filter((element) => {
      const labelled = element.labels?.length > 0 || element.getAttribute('aria-label') || element.getAttribute('aria-labelledby');
      const text = element.tagName === 'BUTTON' && element.textContent.trim();
      const radioInLabel = element.closest('label');
      return !(labelled || text || radioInLabel);
    })
    .map((element) => element.outerHTML.slice(0, 120)));
  assert.deepEqual(unnamed, [], `controls without an accessible name on ${where}`);
}

/** Photographs the page at 1280 px and at 390 px wide, then restores the size. */
async function photograph(page, name) {
  await screenshot(page, `${name}-1280`);
  const size = page.viewportSize();
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `${name} is ${overflow}px wider than a 390 px screen`);
  await screenshot(page, `${name}-390`);
  await page.setViewportSize(size);
}

/** Clicks `button` and saves the download it starts as `file` in PODCAP_DOWNLOADS. */
async function saveDownload(page, button, file) {
  const [download] = await Promise.all([page.waitForEvent('download'), button.click()]);
  const target = join(DOWNLOADS, file);
  await download.saveAs(target);
  const failure = await download.failure();
  assert.equal(failure, null, `download of ${file} failed: ${failure}`);
  log(`saved ${download.suggestedFilename()} as ${target}`);
  return download.suggestedFilename();
}

await main(async (browser) => {
  const page = await newPage(browser, { width: 1280, height: 900, acceptDownloads: true });
  const field = (id) => page.locator(`#${id}`);
  const fieldError = (id) => page.locator(`#${id}-error`);
  const nav = page.getByRole('navigation', { name: 'Main' });

  await step('signed out, the page asks for a token', async () => {
    await page.goto(url('/'));
    await expectVisible(page.getByRole('heading', { name: 'Sign in to podcap' }));
    await expectLabelled(page, 'sign-in');
    await photograph(page, 'sign-in');
  });

  await step('a wrong token is refused with the reason', async () => {
    await page.getByLabel('API token').fill('pct_not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectText(page.getByRole('alert'), /did not accept this token/);
    await screenshot(page, 'sign-in-refused');
  });

  await step('the right token signs in to the captures list, by keyboard alone', async () => {
    // The refused token left the focus in the token field, selected for retyping.
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'token');
    await page.keyboard.press('Control+A');
    await page.keyboard.type(TOKEN);
    await page.keyboard.press('Enter');
    await expectVisible(page.getByRole('heading', { name: 'Captures', level: 1 }));
    assert.equal(await page.evaluate(() => sessionStorage.getItem('podcap.token')), TOKEN);
  });

  await step('the new capture form previews the pods the selector matches', async () => {
    await nav.getByRole('link', { name: 'New capture', exact: true }).click();
    await expectVisible(page.getByRole('heading', { name: 'New capture' }));
    await field('f-namespace').fill(NAMESPACE);
    await field('f-selector').fill(SELECTOR);
    for (const pod of PODS) await expectText(page.locator('#selector-preview'), pod);
    await expectText(page.locator('#selector-preview'), `${PODS.length} pod`);
    await field('f-selector').fill('app in (web');
    await expectVisible(fieldError('f-selector'));
    await expectText(fieldError('f-selector'), /\S/);
    await field('f-selector').fill(SELECTOR);
    await expectText(page.locator('#selector-preview'), `${PODS.length} pod`);
  });

  await step('bad input shows the API\'s messages at the fields', async () => {
    await field('f-name').fill('Web_UDP');
    await page.getByRole('button', { name: 'Add filter rule' }).click();
    await page.locator('#f-filter-0-protocol').selectOption('UDP');
    await page.locator('#f-filter-0-ports').fill('99999');
    await field('f-duration').fill('8s');
    await page.getByRole('button', { name: 'Start capture' }).click();
    await expectText(fieldError('f-name'), /Web_UDP/);
    await expectText(fieldError('f-filter-0-ports'), /99999/);
    assert.equal(await field('f-name').getAttribute('aria-invalid'), 'true');
    await expectLabelled(page, 'new capture');
    await photograph(page, 'new-capture-errors');
  });

  await step('a valid capture starts and opens its page', async () => {
    await field('f-name').fill(CAPTURE);
    await page.locator('#f-filter-0-ports').fill(PORT);
    await page.getByRole('button', { name: 'Start capture' }).click();
    await expectVisible(page.getByRole('heading', { name: new RegExp(`^${CAPTURE}`) }));
    assert.match(page.url(), new RegExp(`#/captures/${NAMESPACE}/${CAPTURE}$`));
  });

  await step('the capture runs, counts packets per pod, and completes', async () => {
    await expectText(page.locator('h1 .badge'), 'Capturing', { timeout: 20_000 });
    for (const pod of PODS) await expectText(page.locator('#targets'), pod);
    await screenshot(page, 'capture-running');
    await expectText(page.locator('h1 .badge'), 'Completed', { timeout: 40_000 });
    const packets = Number((await page.locator('#stat-packets').innerText()).replace(/,/g, ''));
    assert.ok(packets > 0, `the capture counted ${packets} packets`);
    await expectText(page.locator('#stat-drops'), '0');
  });

  await step('the chart and the decoded preview show the traffic', async () => {
    await expectVisible(page.locator('#chart svg[role="img"]'));
    const label = await page.locator('#chart svg').getAttribute('aria-label');
    assert.match(label, /peak/, `chart summary: ${label}`);
    const rows = page.locator('#packet-table tbody tr');
    await expectVisible(rows.first());
    const count = await rows.count();
    assert.ok(count > 0 && count <= 100, `${count} preview rows`);
    const first = await rows.first().innerText();
    assert.match(first, /UDP/);
    assert.match(first, new RegExp(`→ ${PORT}`));
    await expectLabelled(page, 'capture detail');
    await photograph(page, 'capture-detail');
    // The top of the page on a tall screen: what the README shows.
    await page.setViewportSize({ width: 1280, height: 1600 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(page, 'capture-detail-first-screen', { fullPage: false });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step('the download buttons save the merged pcapng and pcap', async () => {
    const pcapng = await saveDownload(page, page.getByRole('button', { name: 'Download merged pcapng', exact: true }), 'merged.pcapng');
    assert.equal(pcapng, `${CAPTURE}.pcapng`);
    const pcap = await saveDownload(page, page.getByRole('button', { name: 'Download merged pcap', exact: true }), 'merged.pcap');
    assert.equal(pcap, `${CAPTURE}.pcap`);
    const fileButtons = page.getByRole('button', { name: /^Download .*\.pcapng$/ });
    assert.ok(await fileButtons.count() >= PODS.length, 'one file per pod at least');
    await saveDownload(page, fileButtons.first(), 'one-file.pcapng');
  });

  let shareUrl;
  await step('a share link is created and downloads in a fresh browser context', async () => {
    await page.getByLabel('Expires after').selectOption('1h');
    await page.getByRole('button', { name: 'Create share link' }).click();
    await expectVisible(page.locator('#share-url'));
    shareUrl = await page.locator('#share-url').inputValue();
    assert.match(shareUrl, /\/share\/pcs_[0-9a-f]+$/);
    await expectText(page.locator('#share-table'), 'Active');
    await screenshot(page, 'share-created');

    const stranger = await newPage(browser, { acceptDownloads: true });
    const [download] = await Promise.all([
      stranger.waitForEvent('download'),
      stranger.goto(shareUrl).catch((error) => {
        // Chromium reports a navigation that turns into a download as aborted.
        if (!/net::ERR_ABORTED|Download is starting/.test(error.message)) throw error;
      }),
    ]);
    await download.saveAs(join(DOWNLOADS, 'shared.pcapng'));
    assert.equal(await download.failure(), null);
    await stranger.context().close();
  });

  await step('revoking the link stops it at once', async () => {
    await page.getByRole('button', { name: /^Revoke link / }).click();
    await expectVisible(page.getByRole('dialog'));
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
    await expectText(page.locator('#share-table'), 'Revoked');
    const stranger = await newPage(browser);
    const response = await stranger.request.get(shareUrl);
    assert.equal(response.status(), 410, 'a revoked link answers 410 Gone');
    const problem = await response.json();
    assert.match(problem.detail, /revoked/);
    await stranger.context().close();
  });

  await step('the captures list shows the completed capture and filters by phase', async () => {
    await nav.getByRole('link', { name: 'Captures', exact: true }).click();
    const row = page.locator(`tr[data-name="${CAPTURE}"]`);
    await expectText(row, 'Completed');
    await expectText(row, NAMESPACE);
    await page.getByLabel('Phase').selectOption('Failed');
    await expectText(page.locator('#capture-table'), 'No captures match');
    await page.getByLabel('Phase').selectOption('Completed');
    await expectVisible(row);
    await expectLabelled(page, 'captures list');
    await photograph(page, 'captures');
  });

  await step('a cron schedule shows its next five runs before saving', async () => {
    await page.goto(url('/#/new?when=schedule'));
    await expectVisible(page.getByRole('heading', { name: 'New schedule' }));
    await field('f-namespace').fill(NAMESPACE);
    await field('f-selector').fill(SELECTOR);
    await field('f-timezone').fill('UTC');
    await field('f-cron').fill('61 * * * *');
    await expectVisible(fieldError('f-cron'));
    await field('f-cron').fill('30 2 * * *');
    const runs = page.locator('#next-runs li');
    await expectText(runs.nth(4), /\S/);
    assert.equal(await runs.count(), 5);
    await expectText(runs.first(), '(UTC)');
    await field('f-name').fill('nightly');
    await field('f-duration').fill('10m');
    await photograph(page, 'new-schedule');
    await page.getByRole('button', { name: 'Create schedule' }).click();
    await expectVisible(page.getByRole('heading', { name: /^nightly/ }));
    await expectText(page.locator('#next-runs'), /\S/);
  });

  await step('the schedule suspends, resumes and is listed', async () => {
    await page.getByRole('button', { name: 'Suspend' }).click();
    await expectText(page.locator('h1'), 'Suspended');
    await photograph(page, 'schedule-detail');
    await page.getByRole('button', { name: 'Resume' }).click();
    await expectText(page.locator('h1'), 'Active');
    await nav.getByRole('link', { name: 'Schedules', exact: true }).click();
    await expectText(page.locator('tr[data-name="nightly"]'), '30 2 * * *');
    await expectLabelled(page, 'schedules');
    await photograph(page, 'schedules');
  });

  await step('a schedule that fires lists its runs, linked to their captures', async () => {
    const created = await api(`/api/v1/namespaces/${NAMESPACE}/schedules`, {
      method: 'POST',
      body: { metadata: { name: 'every-5s' }, spec: { schedule: '*/5 * * * * *', template: { podSelector: { matchLabels: { app: 'nothing-matches' } }, duration: '2s' } } },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await page.goto(url(`/#/schedules/${NAMESPACE}/every-5s`));
    const run = page.locator('#schedule-history-table tbody tr').first();
    await expectVisible(run, { timeout: 30_000 });
    await screenshot(page, 'schedule-history');
    await run.getByRole('link').click();
    await expectVisible(page.getByRole('heading', { name: /^every-5s-/ }));
    await page.goto(url(`/#/schedules/${NAMESPACE}/every-5s`));
    await page.getByRole('button', { name: 'Delete schedule' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete schedule' }).click();
    await expectVisible(page.getByRole('heading', { name: 'Schedules', level: 1 }));
  });

  await step('a token of another namespace gets a clear 403', async () => {
    const other = await newPage(browser);
    await other.goto(url('/'));
    await other.getByLabel('API token').fill(OTHER_TOKEN);
    await other.getByRole('button', { name: 'Sign in' }).click();
    await expectVisible(other.getByRole('heading', { name: 'Captures', level: 1 }));
    await other.goto(url(`/#/captures/${NAMESPACE}/${CAPTURE}`));
    await expectVisible(other.getByRole('heading', { name: 'Not allowed' }));
    await expectText(other.getByRole('alert'), /may only be used in namespace/);
    await screenshot(other, 'forbidden');
    expectNoPageErrors(other);
    await other.context().close();
  });

  await step('stopping a running capture asks first and keeps its files', async () => {
    const created = await api(`/api/v1/namespaces/${NAMESPACE}/captures`, {
      method: 'POST',
      body: { metadata: { name: 'long-run' }, spec: { podSelector: SELECTOR, filters: [{ protocol: 'UDP', ports: [Number(PORT)] }], duration: '10m' } },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await page.goto(url(`/#/captures/${NAMESPACE}/long-run`));
    await expectText(page.locator('h1 .badge'), 'Capturing');
    await expectText(page.locator('#live'), 'Paste into a terminal');
    assert.match(await page.locator('#live-command').inputValue(), /\/live' \| wireshark -k -i -$/);
    await page.getByRole('button', { name: 'Stop capture' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Stop capture' }).click();
    await expectText(page.locator('h1 .badge'), 'Stopped');
    await expectVisible(page.getByRole('button', { name: 'Download merged pcapng', exact: true }));
    await screenshot(page, 'capture-stopped');
  });

  await step('deleting the capture asks first, then removes it', async () => {
    await page.goto(url(`/#/captures/${NAMESPACE}/${CAPTURE}`));
    await page.getByRole('button', { name: 'Delete capture' }).click();
    await expectVisible(page.getByRole('dialog'));
    await page.keyboard.press('Escape');
    await expectHidden(page.getByRole('dialog'));
    await expectVisible(page.getByRole('heading', { name: new RegExp(`^${CAPTURE}`) }));
    await page.getByRole('button', { name: 'Delete capture' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Delete capture' }).click();
    await expectVisible(page.getByRole('heading', { name: 'Captures', level: 1 }));
    await expectVisible(page.locator('tr[data-name="long-run"]'));
    assert.equal(await page.locator(`tr[data-name="${CAPTURE}"]`).count(), 0, 'the deleted capture is gone from the list');
    expectNoPageErrors(page);
  });
});
