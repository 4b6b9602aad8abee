// The new capture form's pcap-filter expression (spec.bpfFilter), a rule's peers
// (spec.filters[i].peers) and the capture point (spec.capturePoint) against `capture-api --standalone`: an expression libpcap refuses comes
// back as libpcap's message at the expression field, a bad peer as the server's message at the
// rule's peers field, and valid ones round-trip: stored as typed, and shown on the capture's page.
// The capture selects no pod, so nothing is captured. Run by tests/web_ui.rs.

import assert from 'node:assert/strict';
import {
  TOKEN, api, expectNoPageErrors, expectText, expectVisible, main, newPage, screenshot, step, url,
} from './lib.mjs';

const NAMESPACE = 'default';
const CAPTURE = 'syn-only';
const EXPRESSION = 'tcp[tcpflags] & tcp-syn != 0 and net 10.244.0.0/16';

await main(async (browser) => {
  const page = await newPage(browser, { width: 1280, height: 900 });
  const field = (id) => page.locator(`#${id}`);
  const fieldError = (id) => page.locator(`#${id}-error`);

  await step('sign in and open the new capture form', async () => {
    await page.goto(url('/'));
    await page.getByLabel('API token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectVisible(page.getByRole('heading', { name: 'Captures', level: 1 }));
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'New capture', exact: true }).click();
    await expectVisible(page.getByRole('heading', { name: 'New capture' }));
    await expectVisible(page.getByLabel('pcap-filter expression (optional)'));
  });

  await step('an expression libpcap refuses shows libpcap\'s message at the field', async () => {
    await field('f-namespace').fill(NAMESPACE);
    await field('f-selector').fill('podcap.io/netns=no-such-pod');
    await field('f-name').fill(CAPTURE);
    await page.getByRole('button', { name: 'Add filter rule' }).click();
    await field('f-filter-0-protocol').selectOption('TCP');
    await field('f-duration').fill('1m');
    await field('f-bpf').fill('tcp port 99999');
    await page.getByRole('button', { name: 'Start capture' }).click();
    await expectText(fieldError('f-bpf'), 'libpcap cannot compile the expression: illegal port number 99999 > 65535');
    assert.equal(await field('f-bpf').getAttribute('aria-invalid'), 'true');
    await expectText(page.getByRole('alert'), 'Fix the field marked above.');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'f-bpf', 'the focus goes to the field to fix');
    const stored = await api(`/api/v1/namespaces/${NAMESPACE}/captures/${CAPTURE}`);
    assert.equal(stored.status, 404, 'a refused capture is not stored');
    await screenshot(page, 'bpf-refused');
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the form is ${overflow}px wider than a 390 px screen`);
    await screenshot(page, 'bpf-refused-390');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step('a peer with host bits shows the server\'s message at the rule\'s peers', async () => {
    await field('f-bpf').fill(EXPRESSION);
    await field('f-filter-0-peers').fill('10.96.0.10, 10.0.0.1/8');
    await page.getByRole('button', { name: 'Start capture' }).click();
    await expectText(fieldError('f-filter-0-peers'), '10.0.0.0/8');
    assert.equal(await field('f-filter-0-peers').getAttribute('aria-invalid'), 'true');
    assert.equal(await field('f-bpf').getAttribute('aria-invalid'), null, 'the expression is fine now');
  });

  await step('a valid expression and peers round-trip to the capture and its page', async () => {
    await field('f-filter-0-peers').fill('10.96.0.10, fd00::/8');
    await field('f-capture-point').selectOption('podNetns');
    await page.getByRole('button', { name: 'Start capture' }).click();
    await expectVisible(page.getByRole('heading', { name: new RegExp(`^${CAPTURE}`) }));
    await expectText(page.locator('code.bpf-filter'), EXPRESSION);
    await expectText(page.locator('.facts'), 'TCP with 10.96.0.10, fd00::/8');
    const stored = await api(`/api/v1/namespaces/${NAMESPACE}/captures/${CAPTURE}`);
    assert.equal(stored.status, 200);
    assert.equal(stored.body.spec.bpfFilter, EXPRESSION);
    assert.deepEqual(stored.body.spec.filters, [{ protocol: 'TCP', peers: ['10.96.0.10', 'fd00::/8'] }]);
    assert.equal(stored.body.spec.capturePoint, 'podNetns');
    await expectText(page.locator('.facts'), "inside each pod's network namespace (podNetns)");
    await screenshot(page, 'bpf-capture');
    expectNoPageErrors(page);
  });
});
