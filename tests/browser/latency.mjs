// Measures glass-to-glass latency as a viewer of the player page sees it, for `make bench`: opens
// /watch/<stream> in headless Debian chromium (playwright-core), lets hls.js (lowLatencyMode) settle, then samples
// the page's latency (now minus the EXT-X-PROGRAM-DATE-TIME of the frame on screen, i.e. its arrival at ingest)
// every 500 ms. Prints one JSON line; exits 1 if playback never starts.
// Usage: node latency.mjs http://127.0.0.1:PORT/watch/STREAM SECONDS
import { chromium } from 'playwright-core';

const [url, seconds = '30'] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const out = { url, latencies: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
try {
  const page = await browser.newPage();
  await page.goto(url);
  const state = () => page.evaluate(() => ({
    latency: window.ladder.latency, parts: window.ladder.parts, segments: window.ladder.segments,
    time: document.querySelector('video').currentTime, errors: window.ladder.errors,
  }));
  const started = Date.now();
  while ((await state()).time <= 0) {
    if (Date.now() - started > 60_000) throw new Error('playback did not start in 60 s');
    await sleep(250);
  }
  await sleep(8000); // hls.js catches up with the live edge
  const from = await state();
  for (let i = 0; i < Number(seconds) * 2; i++) {
    const s = await state();
    if (typeof s.latency === 'number') out.latencies.push(s.latency);
    await sleep(500);
  }
  const to = await state();
  Object.assign(out, { parts: to.parts - from.parts, segments: to.segments - from.segments,
    played: to.time - from.time, errors: to.errors });
  console.log(JSON.stringify(out));
} catch (e) {
  out.failure = String(e);
  console.log(JSON.stringify(out));
  process.exitCode = 1;
} finally {
  await browser.close();
}
