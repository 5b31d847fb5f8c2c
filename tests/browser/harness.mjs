// What the browser scripts share: headless Debian chromium (playwright-core) started alike, and a run that
// prints one JSON line of observations and exits 1 with the reason when a check fails.
import { chromium } from 'playwright-core';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  });
}

// Runs `main(browser, fail)`: `fail(why)` records the reason in `report` and stops the run. The report is
// printed once, whether the run passed, failed a check or threw.
export async function run(report, main) {
  const browser = await launch();
  const fail = (why) => {
    report.failure = why;
    throw new Error(why);
  };
  try {
    await main(browser, fail);
  } catch (e) {
    report.failure ??= String(e);
  } finally {
    await browser.close();
  }
  if (report.failure) process.exitCode = 1;
  console.log(JSON.stringify(report));
}
