// Browser scenarios of the web UI, one per run: `node browser.mjs NAME`.
// tests/ui.rs starts a real `sluice server` with the deployments each
// scenario needs and runs it; any failed check exits non-zero.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { launch, signIn, base, check } from "./lib.mjs";

const token = process.env.SLUICE_UI_TOKEN;

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (process.env.SLUICE_API_TOKEN) headers.Authorization = "Bearer " + process.env.SLUICE_API_TOKEN;
  const response = await fetch(base + "/api/v1" + path, { headers, ...options });
  const body = await response.text();
  return { status: response.status, json: body ? JSON.parse(body) : null };
}

/** Waits until the run page shows `state`; counts navigations so "live" can be checked. */
async function waitForState(page, state, timeout = 20000) {
  await page.waitForSelector(`#run-state [data-state="${state}"]`, { timeout });
}

async function quickRun(page, deployment) {
  await page.goto(base + "/deployments");
  await page.click(`tr[data-deployment="${deployment}"] button.run`);
  await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
  return page.url().split("/runs/")[1];
}

function countNavigations(page) {
  const counter = { n: 0 };
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) counter.n += 1;
  });
  return counter;
}

/** Starts `sluice server` (for scenarios that stop and restart it); resolves with the process and its URL. */
function startServer(args) {
  const child = spawn(process.env.SLUICE_BIN, ["server", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    createInterface({ input: child.stdout }).once("line", (line) => {
      resolve({ child, url: line.match(/http:\/\/(\S+)/)[0] });
    });
  });
}

const scenarios = {
  // Both deployments listed; the toggle pauses and resumes (checked through
  // the API); Run starts a run whose page completes live with its log line.
  async deployments(browser) {
    const { page } = await signIn(browser, token);
    await page.goto(base + "/deployments");
    for (const name of ["hello/leo", "hello/marvin"]) {
      check(await page.locator(`tr[data-deployment="${name}"]`).count() === 1, `${name} is listed`);
    }
    check((await page.textContent(`tr[data-deployment="hello/marvin"]`)).includes("at 02:00 Europe/Paris"), "cron in words");
    check((await page.textContent(`tr[data-deployment="hello/leo"]`)).includes("every 60 s"), "interval in words");
    const toggle = `tr[data-deployment="hello/leo"] button[role=switch]`;
    check(await page.getAttribute(toggle, "aria-checked") === "true", "hello/leo starts active");
    await page.click(toggle);
    await page.waitForSelector(`${toggle}[aria-checked="false"]`);
    check((await api("/deployments/hello/leo")).json.paused === true, "the API says paused after the toggle");
    await page.focus(toggle);
    await page.keyboard.press("Enter");
    await page.waitForSelector(`${toggle}[aria-checked="true"]`);
    check((await api("/deployments/hello/leo")).json.paused === false, "the API says active again");

    const id = await quickRun(page, "hello/leo");
    const navigations = countNavigations(page);
    await waitForState(page, "Completed");
    await page.waitForSelector("#logs td.message:text-is('Hello Leo!')");
    check(navigations.n === 0, "the run page reached Completed without a reload");
    check((await api("/flow-runs/" + id)).json.flow_run.state === "Completed", "the API agrees");

    // An API error is shown on the page: the deployment goes away while the page is open.
    await page.goto(base + "/deployments");
    const marvin = `tr[data-deployment="hello/marvin"] button[role=switch]`;
    check((await api("/deployments/hello/marvin", { method: "DELETE" })).status === 204, "deleted through the API");
    await page.click(marvin);
    await page.waitForSelector("#flash:not([hidden])");
    const flash = await page.textContent("#flash");
    check(flash.includes("hello/marvin"), "the error names what is missing: " + flash);

    await page.goto(base + "/work-pools");
    const queue = `[data-pool="default"] tr[data-queue="default"] button[role=switch]`;
    await page.click(queue);
    await page.waitForSelector(`${queue}[aria-checked="false"]`);
    check((await api("/work-pools/default/queues")).json[0].paused === true, "the queue is paused through the UI");
    await page.click(queue);
    await page.waitForSelector(`${queue}[aria-checked="true"]`);
    check((await api("/work-pools/default/queues")).json[0].paused === false, "and resumed");

    const missing = await page.goto(base + "/runs/00000000-0000-0000-0000-000000000000");
    check(missing.status() === 404, "an unknown run id is a 404 page");
    check((await page.textContent(".error-message")).includes("no flow run"), "the 404 page says why");
  },

  // A slow run's page follows it: states and log lines arrive while it runs.
  async live(browser) {
    const { context, page } = await signIn(browser, token);
    const list = await context.newPage();
    await list.goto(base + "/runs");
    await list.waitForSelector("[data-live][data-connected]");
    const listNavigations = countNavigations(list);
    const id = await quickRun(page, "slow/steps");
    await list.waitForSelector(`tr[data-run="${id}"]`, { timeout: 10000 });
    check(listNavigations.n === 0, "the runs list showed the new run without a reload");
    const navigations = countNavigations(page);
    await waitForState(page, "Running");
    await page.waitForSelector("#logs td.message:text-is('step 1 done')");
    check(await page.locator("#logs td.message:text-is('step 5 done')").count() === 0, "log lines arrive one by one");
    await waitForState(page, "Completed");
    await page.waitForSelector("#logs td.message:text-is('step 5 done')");
    check(await page.locator("#logs td.message").count() === 5, "each line once, none repeated");
    check(navigations.n === 0, "no reload");
    await list.waitForSelector(`tr[data-run="${id}"] [data-state="Completed"]`, { timeout: 10000 });
  },

  // A wrong-typed value is refused next to its field and creates no run.
  async custom(browser) {
    const { page } = await signIn(browser, token);
    await page.goto(base + "/deployments");
    await page.click(`tr[data-deployment="typed/form"] a:text-is("Custom run")`);
    await page.waitForURL(/custom-run$/);
    check(await page.inputValue("#p-times") === "2", "the default is filled in");
    check(await page.inputValue("#p-target-host") === "localhost", "nested defaults too");
    check(await page.locator("#p-volume option").count() === 4, "an enum is a select (with a default choice)");
    await page.fill("#p-times", "many");
    const [response] = await Promise.all([page.waitForNavigation(), page.click("form.card button[type=submit]")]);
    check(response.status() === 422, "refused with 422");
    const error = await page.textContent(`[data-field="times"] .field-error`);
    check(error.includes("times") && error.includes("not a whole number"), "the error names the field: " + error);
    check(await page.getAttribute("#p-times", "aria-invalid") === "true", "the field is marked invalid");
    check(await page.inputValue("#p-times") === "many", "what was typed is kept");
    check((await api("/flow-runs?deployment=typed/form")).json.length === 0, "no run was created");

    await page.fill("#p-times", "3");
    await page.fill("#p-target-port", "70000");
    await Promise.all([page.waitForNavigation(), page.click("form.card button[type=submit]")]);
    check((await page.textContent(`[data-field="target.port"] .field-error`)).includes("port"), "schema limits too");
    check((await api("/flow-runs?deployment=typed/form")).json.length === 0, "still no run");

    await page.fill("#p-target-port", "9090");
    await page.selectOption("#p-volume", "loud");
    await Promise.all([page.waitForURL(/\/runs\//), page.click("form.card button[type=submit]")]);
    await waitForState(page, "Completed");
    const lines = await page.locator("#logs td.message").allTextContents();
    check(lines.filter((l) => l.startsWith("Loud hello Ada via localhost:9090")).length === 3, "ran with them: " + lines);
  },

  // A run paused for input shows a link to a form generated from the pause's
  // schema: a wrong type is refused inline (422, the run stays paused), then
  // the run resumes with the typed input and completes.
  async resume(browser) {
    const { page } = await signIn(browser, token);
    const started = await api("/deployments/gate/release/runs", { method: "POST", body: "{}" });
    check(started.status === 201, "run started: " + JSON.stringify(started.json));
    await page.goto(base + "/runs/" + started.json.id);
    await waitForState(page, "Paused");
    await Promise.all([page.waitForURL(/\/resume$/), page.click("#resume-link")]);
    check((await page.textContent("#pause-prompt")).includes("Release how many copies?"), "the prompt is shown");
    await page.check("#p-approve");
    await page.fill("#p-copies", "many");
    const [response] = await Promise.all([page.waitForNavigation(), page.click("form.card button[type=submit]")]);
    check(response.status() === 422, "refused with 422");
    const error = await page.textContent(`[data-field="copies"] .field-error`);
    check(error.includes("copies"), "the error names the field: " + error);
    check((await api("/flow-runs/" + started.json.id)).json.flow_run.state === "Paused", "still paused");

    await page.fill("#p-copies", "3");
    await Promise.all([page.waitForURL(/\/runs\/[0-9a-f-]{36}$/), page.click("form.card button[type=submit]")]);
    await waitForState(page, "Completed");
    const run = (await api("/flow-runs/" + started.json.id)).json.flow_run;
    check(run.result === "approve=true copies=3", "resumed with the input: " + JSON.stringify(run.result));
  },

  // The pipeline's timeline shows its subflows and the retried task.
  async pipeline(browser) {
    const { page } = await signIn(browser, token);
    await quickRun(page, "pipeline/classic");
    await waitForState(page, "Completed");
    await page.waitForSelector(`.timeline [data-label="subflow_2 (subflow)"]`);
    for (const label of ["subflow_1 (subflow)", "subflow_2 (subflow)", "flaky-0"]) {
      check(await page.locator(`.timeline [data-label="${label}"]`).count() === 1, `timeline row ${label}`);
    }
    check(await page.locator(`.timeline [data-label="laugh-0"]`).count() === 2, "each subflow's tasks");
    const flaky = await page.textContent(`.timeline [data-label="flaky-0"]`);
    check(flaky.includes("×3 attempts"), "the retried task shows its attempts: " + flaky);
    check(await page.locator(`.timeline [data-label="flaky-0"] + svg rect.state-AwaitingRetry`).count() === 2, "both waits drawn");
    check(await page.locator("ul.tree > li").count() === 2, "the subflow tree");
  },

  // Cancel stops a flow that loops forever.
  async cancel(browser) {
    const { page } = await signIn(browser, token);
    const id = await quickRun(page, "spin_flow/forever");
    await waitForState(page, "Running");
    await page.click("button:text-is('Cancel run')");
    await waitForState(page, "Cancelled");
    check((await api("/flow-runs/" + id)).json.flow_run.state === "Cancelled", "the API says Cancelled");
    check(await page.locator("button:text-is('Cancel run')").count() === 0, "no Cancel button on an ended run");
  },

  // Markup a guest logs or returns is shown as text and never runs.
  async markup(browser) {
    const { page } = await signIn(browser, token);
    const dialogs = [];
    page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
    await quickRun(page, "xss/markup");
    await waitForState(page, "Completed");
    await page.waitForSelector("#logs td.message >> text=<script>");
    const lines = await page.locator("#logs td.message").allTextContents();
    check(lines.includes("<script>window.__pwned = 'script'</script>"), "the script line is text: " + lines);
    check(lines.includes(`<img src=x onerror="window.__pwned = 'img'">`), "the img line is text");
    check(lines.includes("task says <b>bold</b>"), "a task's markup is text");
    check((await page.textContent("#result + pre")).includes("<script>window.__pwned = 'result'</script>"), "the result is text");
    // Inline scripts run, and images fail (firing onerror), before "load".
    await page.reload({ waitUntil: "load" });
    check(await page.evaluate(() => document.readyState) === "complete", "the page finished loading");
    check(await page.evaluate(() => window.__pwned) === undefined, "no injected script ran");
    check(await page.locator("#logs img, #logs script, #logs b, pre img, pre script").count() === 0, "no element was created");
    check(dialogs.length === 0, "no dialog");
    const csp = (await page.goto(page.url())).headers()["content-security-policy"];
    check(csp.includes("script-src 'self'") && !csp.includes("unsafe-inline"), "the CSP forbids inline scripts");
  },

  // Signing in needs a real token; signed out, pages send you to sign in.
  async signin(browser) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(base + "/runs");
    check(new URL(page.url()).pathname === "/signin", "signed out, a page asks to sign in");
    await page.fill("#token", "sluice_nope_nope");
    const [response] = await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    check(response.status() === 401, "a wrong token is refused");
    check((await page.textContent(".error-message")).includes("not valid"), "and says so");
    await page.fill("#token", token);
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    check(new URL(page.url()).pathname === "/runs", "back where it was going");
    const cookie = (await context.cookies()).find((c) => c.name === "sluice_session");
    check(cookie && cookie.httpOnly && cookie.sameSite === "Strict", "an HttpOnly, SameSite=Strict cookie");
    await page.click("text=Sign out");
    await page.waitForURL(/\/signin/);
    await page.goto(base + "/");
    check(new URL(page.url()).pathname === "/signin", "signed out again");
  },

  // A viewer token gets no button that would change anything, and posting anyway is refused.
  async viewer(browser) {
    const { page } = await signIn(browser, process.env.SLUICE_UI_VIEWER_TOKEN);
    await page.goto(base + "/deployments");
    check(await page.locator(`tr[data-deployment="hello/leo"]`).count() === 1, "a viewer sees the deployments");
    check(await page.locator("main button").count() === 0, "but no buttons");
    const csrf = await page.inputValue("input[name=_csrf]");
    const status = await page.evaluate(async (csrf) => {
      const r = await fetch("/deployments/hello/leo/pause", { method: "POST", body: new URLSearchParams({ _csrf: csrf }) });
      return r.status;
    }, csrf);
    check(status === 403, "a viewer's pause is refused: " + status);
    check((await api("/deployments/hello/leo")).json.paused === false, "and changed nothing");
    const forged = await page.evaluate(async () => (await fetch("/deployments/hello/leo/pause", { method: "POST", body: new URLSearchParams({}) })).status);
    check(forged === 403, "a post without the CSRF token is refused");
  },

  // The run page's stream survives a server restart: it reconnects and
  // catches up. The run waits (no worker) until the server comes back with one.
  async reconnect(browser) {
    let server = await startServer(["--port", "0", "--workers", "0"]);
    const port = new URL(server.url).port;
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(server.url + "/signin");
    await page.fill("#token", token);
    await page.click("button[type=submit]");
    await page.waitForURL((url) => !url.pathname.startsWith("/signin"));
    await page.goto(server.url + "/deployments");
    await page.click(`tr[data-deployment="hello/leo"] button.run`);
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    await page.waitForSelector("#stream-status:text-is('Live')");
    const navigations = countNavigations(page);
    server.child.kill("SIGKILL");
    await page.waitForSelector("#stream-status:text-is('Reconnecting…')");
    server = await startServer(["--port", port, "--workers", "1"]);
    try {
      await waitForState(page, "Completed");
      await page.waitForSelector("#logs td.message:text-is('Hello Leo!')");
      check(navigations.n === 0, "caught up without a reload");
    } finally {
      server.child.kill("SIGKILL");
    }
  },

  // Another tenant's token sees none of the first tenant's objects.
  async tenants(browser) {
    const { page } = await signIn(browser, process.env.SLUICE_UI_OTHER_TOKEN);
    await page.goto(base + "/deployments");
    check(await page.locator("tr[data-deployment]").count() === 0, "no deployments of the other tenant");
    await page.goto(base + "/runs");
    check(await page.locator("tr[data-run]").count() === 0, "no runs of the other tenant");
    await page.goto(base + "/artifacts");
    check(await page.locator("#artifacts tbody tr").count() === 0, "no artifacts of the other tenant");
    // The first tenant's run, by id: not found for this one.
    const created = await api("/deployments/hello/leo/runs", { method: "POST", body: "{}" });
    check(created.status === 201, "the first tenant made a run: " + JSON.stringify(created.json));
    const response = await page.goto(base + "/runs/" + created.json.id);
    check(response.status() === 404, "another tenant's run is a 404");
    const deployment = await page.goto(base + "/deployments/hello/leo");
    check(deployment.status() === 404, "another tenant's deployment is a 404");
    await page.goto(base + "/deployments");
    const csrf = await page.inputValue("input[name=_csrf]");
    const status = await page.evaluate(async (csrf) => {
      const r = await fetch("/deployments/hello/leo/pause", { method: "POST", body: new URLSearchParams({ _csrf: csrf }) });
      return r.status;
    }, csrf);
    check(status === 404, "pausing another tenant's deployment finds nothing: " + status);
    check((await api("/deployments/hello/leo")).json.paused === false, "and changed nothing");
    await page.goto(base + "/");
    check((await page.textContent("#day")).includes(": 0"), "its dashboard counts none of the first tenant's runs");
  },

  // Issue 22's rough edges: the sign-in form names SLUICE_API_TOKEN; the
  // run page's timeline shows durations; the dashboard charts runs per hour
  // by state in server-drawn SVG; a deployment's schedule is set, refused
  // when wrong (as the CLI refuses it) and removed from its page.
  async firsthour(browser) {
    const context = await browser.newContext();
    const signinPage = await context.newPage();
    await signinPage.goto(base + "/signin");
    const help = await signinPage.textContent("#token-help");
    check(help.includes("SLUICE_API_TOKEN") && !help.includes("SLUICE_TOKEN)"), "the sign-in form names the variable: " + help);
    await context.close();

    const { page } = await signIn(browser, token);
    await quickRun(page, "pipeline/classic");
    await waitForState(page, "Completed");
    await page.waitForSelector(`.timeline [data-label="flaky-0"] .duration`);
    const took = await page.textContent(`.timeline [data-label="flaky-0"] .duration`);
    check(/^\d+(\.\d)? (ms|s)$/.test(took.trim()), "the retried task shows how long it took: " + took);
    check(await page.locator(`.timeline .duration`).count() >= 7, "every finished task and subflow has a duration");

    await page.goto(base + "/");
    check(await page.locator("#runs-chart g[data-hour]").count() === 24, "24 hourly bars");
    const completed = page.locator("#runs-chart rect.state-Completed");
    check(await completed.count() >= 1, "this hour's Completed runs are drawn");
    check(Number(await completed.last().getAttribute("data-count")) >= 1, "with their count");
    check((await page.locator("script[src]").count()) === (await page.locator("script").count()), "no inline script");

    await page.goto(base + "/deployments/hello/leo");
    check((await page.textContent("#schedule-title")).includes("Edit the schedule"), "an existing schedule is edited");
    await page.check(`#schedule input[value="cron"]`);
    await page.fill("#schedule-cron", "0 3 * * *");
    await page.fill("#schedule-timezone", "Asia/Tokyo");
    await page.click("#schedule button[type=submit]");
    await page.waitForURL(base + "/deployments/hello/leo");
    check((await page.content()).includes("at 03:00 Asia/Tokyo"), "the cron schedule is shown in words");
    let stored = (await api("/deployments/hello/leo")).json.schedule;
    check(stored.kind === "cron" && stored.expression === "0 3 * * *" && stored.timezone === "Asia/Tokyo", "stored: " + JSON.stringify(stored));

    await page.check(`#schedule input[value="cron"]`);
    await page.fill("#schedule-cron", "0 3 * * *");
    await page.fill("#schedule-timezone", "Mars/Olympus");
    await page.click("#schedule button[type=submit]");
    await page.waitForSelector("#schedule-error");
    const refusal = await page.textContent("#schedule-error");
    check(refusal.includes("Mars/Olympus"), "a wrong time zone is refused, named: " + refusal);
    check(JSON.stringify((await api("/deployments/hello/leo")).json.schedule).includes("Asia/Tokyo"), "and changes nothing");

    await page.check(`#schedule input[value="interval"]`);
    await page.fill("#schedule-interval", "5m");
    await page.click("#schedule button[type=submit]");
    await page.waitForURL(base + "/deployments/hello/leo");
    stored = (await api("/deployments/hello/leo")).json.schedule;
    check(stored.kind === "interval" && stored.seconds === 300, "5m is stored as 300 s: " + JSON.stringify(stored));

    await page.click("button.remove-schedule");
    await page.waitForURL(base + "/deployments/hello/leo");
    check((await api("/deployments/hello/leo")).json.schedule === null, "the schedule is removed");
    check((await page.textContent("#schedule-title")).includes("Add a schedule"), "and can be added again");
  },
};

const name = process.argv[2];
if (!scenarios[name]) {
  console.error(`unknown scenario ${name}; one of: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const browser = await launch();
try {
  await scenarios[name](browser);
  console.log(`ui scenario ${name}: passed`);
} catch (err) {
  console.error(`ui scenario ${name}: FAILED: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
