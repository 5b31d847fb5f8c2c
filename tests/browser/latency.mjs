// Measures glass-to-glass latency as a viewer of the player page sees it, for `make bench`: opens
// /watch/<stream> in headless Debian chromium (playwright-core), lets hls.js settle (caught up with its target
// latency), then samples the page's latency (now minus the EXT-X-PROGRAM-DATE-TIME of the frame on screen, i.e.
// its arrival at ingest) every 500 ms. Prints one JSON line; exits 1 if playback never starts.
// Usage: node latency.mjs http://127.0.0.1:PORT/watch/STREAM SECONDS
// LATENCY_TRACE=1 also prints every sample (latency, buffer ahead, playback rate, hls.js target) to stderr.
import { launch, sleep } from './harness.mjs';

const [url, seconds = '30'] = process.argv.slice(2);
const out = { url, latencies: [] };
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(url);
  const state = () => page.evaluate(() => ({
    latency: window.ladder.latency, parts: window.ladder.parts, segments: window.ladder.segments,
    time: document.querySelector('video').currentTime, errors: window.ladder.errors,
    target: window.ladder.hls && window.ladder.hls.targetLatency, buffered: (() => {
      const v = document.querySelector('video');
      return v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0;
    })(), rate: document.querySelector('video').playbackRate,
  }));
  const started = Date.now();
  while ((await state()).time <= 0) {
    if (Date.now() - started > 60_000) throw new Error('playback did not start in 60 s');
    await sleep(250);
  }
  // hls.js joins a few seconds behind and catches up by playing faster (up to maxLiveSyncPlaybackRate): the
  // steady state is measured once it has played at normal speed for 3 s (after 8 s at least, 40 s at most).
  const joined = Date.now();
  for (let steady = 0; Date.now() - joined < 40_000 && (steady < 6 || Date.now() - joined < 8000);) {
    steady = (await state()).rate === 1 ? steady + 1 : 0;
    await sleep(500);
  }
  out.settled_after_s = (Date.now() - joined) / 1000;
  const from = await state();
  for (let i = 0; i < Number(seconds) * 2; i++) {
    const s = await state();
    if (typeof s.latency === 'number') out.latencies.push(s.latency);
    if (process.env.LATENCY_TRACE) console.error(JSON.stringify({ t: i / 2, ...s, errors: s.errors.length }));
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
