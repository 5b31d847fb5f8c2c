// Signed playback in headless Debian chromium (playwright-core): opens the player page of a signed stream
// under a token, /t/<token>/watch/<stream>, and checks that hls.js plays it (playback advances 4 s or more, and
// every playlist, segment and part it fetched carried the token in its path); then, in the same page, a second
// hls.js is given the same master URL without the token and must fail on it with 403.
// Prints one JSON line of observations and exits 1 with the reason if a check fails.
// Usage: node signed.mjs http://127.0.0.1:PORT TOKEN STREAM
import { run, sleep } from './harness.mjs';

const [base, token, stream] = process.argv.slice(2);
const report = { requests: 0, unsigned: [] };

async function main(browser, fail) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => (report.pageErrors ??= []).push(String(e)));
  // Every media request the player makes: under the token, or (a failure) not.
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (!/\.(m3u8|ts)$/.test(path)) return;
    report.requests += 1;
    if (!path.startsWith(`/t/${token}/`)) report.unsigned.push(path);
  });
  const response = await page.goto(`${base}/t/${token}/watch/${stream}`);
  if (response.status() !== 200) fail(`the signed player page answered ${response.status()}`);
  const time = () => page.evaluate(() => document.querySelector('video').currentTime);
  let start;
  for (const end = Date.now() + 60_000; start === undefined; await sleep(250)) {
    const t = await time();
    if (t > 0) start = t;
    else if (Date.now() > end) fail('the signed stream did not start playing in 60 s');
  }
  let now = start;
  for (const end = Date.now() + 40_000; now - start < 4; await sleep(500)) {
    now = await time();
    if (Date.now() > end) fail(`the signed stream played ${now - start} s in 40 s`);
  }
  report.played = now - start;
  if (report.unsigned.length) fail(`the player fetched without the token: ${report.unsigned.slice(0, 3)}`);

  // The same master URL without the token, in a second hls.js.
  report.withoutToken = await page.evaluate((src) => new Promise((resolve) => {
    const video = document.createElement('video');
    document.body.appendChild(video);
    const hls = new Hls();
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (data.fatal) resolve({ details: data.details, code: data.response ? data.response.code : null });
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => resolve({ parsed: true }));
    hls.loadSource(src);
    hls.attachMedia(video);
    setTimeout(() => resolve({ timeout: true }), 20_000);
  }), `/live/${stream}/master.m3u8`);
  if (report.withoutToken.code !== 403) fail(`without the token, hls.js got ${JSON.stringify(report.withoutToken)}`);
  const plain = await page.goto(`${base}/watch/${stream}`);
  report.pageWithoutToken = plain.status();
  if (plain.status() !== 403) fail(`the player page without the token answered ${plain.status()}`);
}

await run(report, main);
