// The packets-per-second chart of a capture: an SVG area chart drawn from the server's
// timeline (counts per bucket), with a time axis, a rate axis and a text summary for screen
// readers. Plain SVG, no library: a few dozen lines keep the page free of outside code.

const NS = 'http://www.w3.org/2000/svg';
const HEIGHT = 180;
const PAD = { left: 56, right: 12, top: 12, bottom: 28 };

function svg(tag, attributes = {}, text) {
  const element = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** A "nice" axis maximum: 1, 2 or 5 times a power of ten, at least `value`. */
export function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= value);
}

function formatRate(value) {
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(value >= 1e4 ? 0 : 1)}k`;
  return value >= 10 || value === 0 ? String(Math.round(value)) : value.toFixed(1);
}

/** An <svg> for `timeline` ({start, bucketSeconds, packets[]}), `width` CSS pixels wide (drawn at its
 * real size so text is never stretched). */
export function packetRateChart(timeline, width = 720) {
  const chartWidth = Math.max(320, Math.round(width));
  const bucket = timeline.bucketSeconds || 1;
  const rates = (timeline.packets || []).map((count) => count / bucket);
  const start = Date.parse(timeline.start);
  const peak = Math.max(0, ...rates);
  const total = (timeline.packets || []).reduce((a, b) => a + b, 0);
  const peakIndex = rates.indexOf(peak);
  const summary = rates.length === 0 || total === 0
    ? 'No packets captured yet.'
    : `${total} packets over ${rates.length * bucket} seconds; peak ${formatRate(peak)} packets per second at ${new Date(start + peakIndex * bucket * 1000).toLocaleTimeString()}.`;
  const root = svg('svg', { viewBox: `0 0 ${chartWidth} ${HEIGHT}`, role: 'img', 'aria-label': `Packets per second. ${summary}`, class: 'chart', width: chartWidth, height: HEIGHT });
  const plotWidth = chartWidth - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const top = niceMax(peak);
  const x = (index) => PAD.left + (rates.length <= 1 ? 0 : (index / (rates.length - 1)) * plotWidth);
  const y = (rate) => PAD.top + plotHeight - (rate / top) * plotHeight;

  for (const fraction of [0, 0.5, 1]) {
    const value = top * fraction;
    root.append(svg('line', { x1: PAD.left, x2: chartWidth - PAD.right, y1: y(value), y2: y(value), class: 'grid-line' }));
    root.append(svg('text', { x: PAD.left - 6, y: y(value) + 4, 'text-anchor': 'end', class: 'axis-label' }, formatRate(value)));
  }
  if (rates.length > 0) {
    const points = rates.map((rate, index) => `${x(index).toFixed(1)},${y(rate).toFixed(1)}`);
    const baseline = y(0).toFixed(1);
    root.append(svg('polygon', { points: `${x(0).toFixed(1)},${baseline} ${points.join(' ')} ${x(rates.length - 1).toFixed(1)},${baseline}`, class: 'area' }));
    root.append(svg('polyline', { points: points.join(' '), class: 'line' }));
    const end = start + rates.length * bucket * 1000;
    const label = (time) => new Date(time).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    root.append(svg('text', { x: PAD.left, y: HEIGHT - 8, class: 'axis-label' }, label(start)));
    root.append(svg('text', { x: chartWidth - PAD.right, y: HEIGHT - 8, 'text-anchor': 'end', class: 'axis-label' }, label(end)));
  }
  return root;
}
