// Shared by the browser scripts: launch Debian's chromium through
// playwright-core (no browser download), sign in, small assertions.
import { chromium } from "playwright-core";

export const base = process.env.SLUICE_UI_URL || "http://127.0.0.1:4200";

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // Running as root in a container: chromium's own sandbox cannot start there.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

export async function signIn(browser, token, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  await page.goto(base + "/signin");
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForURL((url) => !url.pathname.startsWith("/signin"));
  return { context, page };
}

export function check(condition, message) {
  if (!condition) throw new Error("assertion failed: " + message);
}
