// Screenshots of the main pages for the README, taken from a running
// server with some deployments (tests/ui.rs prepares one: `make screenshots`);
// this script starts a few runs first.
// Writes $SCREENSHOT_DIR/*.png (`make screenshots` copies them to docs/screenshots);
// fails if a page does not answer 200 or overflows a phone's width.
import { mkdirSync } from "node:fs";
import { launch, signIn, base } from "./lib.mjs";

const out = process.env.SCREENSHOT_DIR || new URL("../../docs/screenshots/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
const token = process.env.SLUICE_UI_TOKEN;
const browser = await launch();
try {
  const { page } = await signIn(browser, token);
  // A few runs, started as a user would; the pipeline's page is shown last.
  let runId = null;
  for (const deployment of ["hello/leo", "hello/marvin", "trap/boom", "typed/form", "xss/markup", "pipeline/classic"]) {
    await page.goto(base + "/deployments");
    await page.click(`tr[data-deployment="${deployment}"] button.run`);
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    runId = page.url().split("/runs/")[1];
  }
  await page.waitForSelector('#run-state [data-state="Completed"]', { timeout: 30000 });
  const shots = [
    ["dashboard", "/"],
    ["deployments", "/deployments"],
    ["deployment", "/deployments/hello/leo"],
    ["custom-run", "/deployments/typed/form/custom-run"],
    ["runs", "/runs"],
    ["artifacts", "/artifacts"],
    ["work-pools", "/work-pools"],
  ];
  shots.push(["run", "/runs/" + runId]);
  for (const [name, path] of shots) {
    const response = await page.goto(base + path);
    if (!response || response.status() !== 200) throw new Error(`${path} answered ${response && response.status()}`);
    // A page that follows changes is shot once it follows them.
    if (await page.locator("[data-live]").count() > 0) await page.waitForSelector("[data-live][data-connected]");
    await page.screenshot({ path: `${out}/${name}.png`, fullPage: true });
    console.log(`wrote ${out}/${name}.png`);
  }
  const phone = await signIn(browser, token, { width: 390, height: 844 });
  for (const path of ["/", "/deployments", "/runs", "/runs/" + runId]) {
    await phone.page.goto(base + path);
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) throw new Error(`${path} is ${overflow}px wider than a 390px phone`);
  }
  await phone.page.screenshot({ path: `${out}/phone.png`, fullPage: false });
  console.log(`wrote ${out}/phone.png`);
} finally {
  await browser.close();
}
