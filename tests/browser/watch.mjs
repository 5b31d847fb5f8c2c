// Opens the stream list in headless Debian chromium (playwright-core), follows the live stream's link to
// /watch/<stream>, and checks what a viewer gets:
//   0. the list shows the stream as live;
//   1. playback time advances for at least 10 s;
//   2. a forced switch to each rendition plays that rendition (the video's own height changes);
//   3. after the publisher reconnects (a discontinuity, hls.js's `cc` goes up), playback continues;
//   and all along hls.js plays in low-latency mode, loading parts, and the page reports the latency from each
//   frame's EXT-X-PROGRAM-DATE-TIME (its arrival at ingest) to the moment it is on screen.
// Prints one JSON line of observations and exits 1 with the reason if a check fails.
// Usage: node watch.mjs http://127.0.0.1:PORT/ STREAM
import { run, sleep } from './harness.mjs';

const [url, stream] = process.argv.slice(2);
const deadline = (seconds) => Date.now() + seconds * 1000;
const report = { url, phases: [] };

async function main(browser, fail) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => (report.pageErrors ??= []).push(String(e)));
  await page.goto(url);
  const entry = page.locator('#streams li', { has: page.locator(`a[href="/watch/${stream}"]`) });
  await entry.getByText('● live').waitFor({ timeout: 15_000 }).catch(() => fail(`${url} does not list ${stream} as live`));
  await entry.locator(`a[href="/watch/${stream}"]`).click();
  await page.waitForURL(`**/watch/${stream}`);
  const state = () => page.evaluate(() => ({
    time: document.querySelector('video').currentTime,
    paused: document.querySelector('video').paused,
    height: document.querySelector('video').videoHeight,
    level: window.ladder.hls ? window.ladder.hls.currentLevel : null,
    levels: window.ladder.hls ? window.ladder.hls.levels.map((l) => l.height) : [],
    cc: window.ladder.fragments.length ? window.ladder.fragments[window.ladder.fragments.length - 1].cc : null,
    fragments: window.ladder.fragments.length,
    latency: document.getElementById('latency').textContent,
    seconds: window.ladder.latency,
    parts: window.ladder.parts,
    segments: window.ladder.segments,
    lowLatency: !!(window.ladder.hls && window.ladder.hls.lowLatencyMode),
    partTarget: window.ladder.hls && window.ladder.hls.levels[Math.max(0, window.ladder.hls.currentLevel)]?.details?.partTarget,
    rendition: document.getElementById('rendition').textContent,
    options: document.getElementById('picker').options.length,
    errors: window.ladder.errors,
  }));

  // 1. Playback starts and advances for 10 s or more.
  let start;
  for (const end = deadline(60); !start; await sleep(250)) {
    const s = await state();
    if (s.time > 0 && !s.paused) start = s;
    else if (Date.now() > end) fail(`playback did not start in 60 s: ${JSON.stringify(s)}`);
  }
  // 10 s of media played, within 40 s of wall clock: a busy machine (the transcoders behind real time at the
  // live edge) may stall it a little, but it must keep going. At least 12 s, for the checks below.
  let after;
  const began = Date.now();
  for (const end = deadline(40); ; await sleep(500)) {
    after = await state();
    if (after.time - start.time >= 10 && Date.now() - began >= 12_000) break;
    if (Date.now() > end) fail(`playback advanced ${after.time - start.time} s in 40 s: ${JSON.stringify(after)}`);
  }
  report.phases.push({ phase: 'advance', from: start.time, to: after.time, seconds: (Date.now() - began) / 1000 });
  if (!/^\d+\.\d s$/.test(after.latency)) fail(`the page shows no latency: ${after.latency}`);
  if (!/\d+x\d+/.test(after.rendition)) fail(`the page shows no rendition: ${after.rendition}`);
  if (after.options !== after.levels.length + 1) fail(`the picker offers ${after.options} for ${after.levels}`);
  report.latency = after.latency;
  report.levels = after.levels;
  if (!after.lowLatency || !(after.partTarget > 0)) fail(`hls.js is not in low-latency mode: ${JSON.stringify(after)}`);
  if (after.parts < 4) fail(`hls.js loaded ${after.parts} parts in ${(Date.now() - began) / 1000} s of low-latency playback`);
  // The latency, sampled every second for 10 s while playing.
  const latencies = [];
  for (let i = 0; i < 10; i++) {
    const s = await state();
    if (typeof s.seconds === 'number') latencies.push(s.seconds);
    await sleep(1000);
  }
  if (latencies.length < 5 || latencies.some((l) => !(l > 0 && l < 30))) fail(`no sane latency: ${latencies}`);
  report.latencies = latencies;
  report.parts = after.parts;

  // 2. Forced switches: pick each rendition in the picker, as a viewer would, and watch it play.
  for (let i = 0; i < after.levels.length; i++) {
    await page.selectOption('#picker', String(i));
    const want = after.levels[i];
    let switched;
    for (const end = deadline(30); !switched; await sleep(250)) {
      const s = await state();
      if (s.height === want && s.level === i) switched = s;
      else if (Date.now() > end) fail(`no switch to ${want}p in 30 s: ${JSON.stringify(s)}`);
    }
    await sleep(3000);
    const played = await state();
    report.phases.push({ phase: `${want}p`, from: switched.time, to: played.time, height: played.height });
    if (played.height !== want || played.time - switched.time < 2) fail(`${want}p did not play: ${JSON.stringify(played)}`);
  }
  await page.selectOption('#picker', '-1');

  // 3. The publisher reconnects (the test does it): playback crosses the discontinuity and goes on.
  let crossed;
  for (const end = deadline(120); !crossed; await sleep(250)) {
    const s = await state();
    if (s.cc !== null && s.cc >= 1) crossed = s;
    else if (Date.now() > end) fail(`playback never reached the reconnected session: ${JSON.stringify(s)}`);
  }
  await sleep(5000);
  const continued = await state();
  report.phases.push({ phase: 'reconnect', from: crossed.time, to: continued.time, cc: continued.cc });
  if (continued.time - crossed.time < 4 || continued.paused) {
    fail(`playback stalled after the reconnect: ${JSON.stringify(continued)}`);
  }
  report.errors = continued.errors;
}

await run(report, main);
