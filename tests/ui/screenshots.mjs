// Screenshots of the main pages for the README, taken from a running
// server that has some deployments and runs (tests/ui.rs prepares one:
// `cargo test --test ui screenshots -- --ignored`).
// Writes docs/screenshots/*.png.
import { mkdirSync } from "node:fs";
import { launch, signIn, base } from "./lib.mjs";

const out = process.env.SCREENSHOT_DIR || new URL("../../docs/screenshots/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
const runId = process.env.SLUICE_UI_RUN; // a finished pipeline run
const browser = await launch();
try {
  const { page } = await signIn(browser, process.env.SLUICE_UI_TOKEN || "admin@default");
  const shots = [
    ["dashboard", "/"],
    ["deployments", "/deployments"],
    ["deployment", "/deployments/hello/leo"],
    ["custom-run", "/deployments/typed/form/custom-run"],
    ["runs", "/runs"],
    ["artifacts", "/artifacts"],
    ["work-pools", "/work-pools"],
  ];
  if (runId) shots.push(["run", "/runs/" + runId]);
  for (const [name, path] of shots) {
    await page.goto(base + path);
    await page.waitForLoadState("networkidle").catch(() => {});
    await page.screenshot({ path: `${out}/${name}.png`, fullPage: true });
    console.log(`wrote ${out}/${name}.png`);
  }
  const phone = await signIn(browser, "admin@default", { width: 390, height: 844 });
  await phone.page.goto(base + (runId ? "/runs/" + runId : "/deployments"));
  await phone.page.screenshot({ path: `${out}/phone.png`, fullPage: false });
  console.log(`wrote ${out}/phone.png`);
} finally {
  await browser.close();
}
