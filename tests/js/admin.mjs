// The admin console's browser test, driven by Playwright in the system's Chromium (never a
// browser of Playwright's own).
//
//   HERALD_URL=http://127.0.0.1:8080 HERALD_ADMIN_EMAIL=… HERALD_ADMIN_PASSWORD=… \
//   HERALD_USER_EMAIL=… HERALD_USER_PASSWORD=… HERALD_MAILING_ID=… node tests/js/admin.mjs
//
// A plain user signs in and is refused. An administrator signs in, finds the running mailing
// HERALD_MAILING_ID, watches its counts move live (from its mailing:<id> stream, not by
// polling) and its four charts draw, at 1,400 px and at a phone's width; imports a CSV file with
// a bad line and sees the progress bar full and the line's error; finds an imported client by
// phone; and opens the provider and real-time panels. With HERALD_OIDC=1 the administrator also
// signs in through single sign-on (the issuer's page signs in whoever it is set to). No request
// may go to another host. Screenshots go to HERALD_SCREENSHOTS (default: the system's temp dir).
// Exit 0 on success; otherwise 1 with the failing step, the pages' console and screenshots.

import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};
const BASE = (process.env.HERALD_URL || "").replace(/\/+$/, "");
const CHROMIUM = process.env.HERALD_TEST_CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.HERALD_SCREENSHOTS || tmpdir();
const TOTAL_TIMEOUT_MS = 80_000;
const STEP_TIMEOUT_MS = 15_000;

let browser = null;
let step = "start";
const pages = {};
const consoleLines = [];
const foreign = [];

function log(text) {
  process.stdout.write(`admin.mjs: ${text}\n`);
}

async function shoot(name, page) {
  const file = join(SHOTS, `admin-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
  log(`screenshot ${file}`);
}

async function finish(code, error) {
  if (error) {
    process.stderr.write(`admin.mjs: FAILED at step "${step}": ${error?.stack || error}\n`);
    for (const [name, page] of Object.entries(pages)) {
      try {
        await shoot(`failed-${name}`, page);
      } catch {
        // the page may be gone already
      }
    }
    if (consoleLines.length) process.stderr.write(`admin.mjs: page console:\n${consoleLines.join("\n")}\n`);
  }
  try {
    await browser?.close();
  } catch {
    // closing is best effort; the process ends next
  }
  process.exit(code);
}

const watchdog = setTimeout(() => finish(1, new Error(`timed out after ${TOTAL_TIMEOUT_MS / 1000} s`)), TOTAL_TIMEOUT_MS);

async function openPage(context, name) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("console", (m) => consoleLines.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`[${name}] page error: ${e.message}`));
  // Every request and socket must stay on Herald's own origin (an SSO sign-in visits its issuer).
  const allowed = [new URL(BASE).host, process.env.HERALD_OIDC_HOST].filter(Boolean);
  const check = (url) => {
    if (url.startsWith("data:")) return;
    if (!allowed.includes(new URL(url).host)) foreign.push(url);
  };
  page.on("request", (r) => check(r.url()));
  page.on("websocket", (ws) => check(ws.url()));
  pages[name] = page;
  return page;
}

async function signIn(page, email, password) {
  await page.goto(`${BASE}/admin/`);
  await page.getByTestId("signin-email").fill(email);
  await page.getByTestId("signin-password").fill(password);
  await page.getByTestId("signin-submit").click();
}

const count = async (page, name) => Number((await page.getByTestId(`count-${name}`).textContent()).replace(/\D/g, ""));

async function main() {
  if (!BASE) throw new Error("set HERALD_URL to the Herald to test, like http://127.0.0.1:8080");
  const mailing = env("HERALD_MAILING_ID");
  mkdirSync(SHOTS, { recursive: true });

  step = `launch ${CHROMIUM}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });

  step = "a plain user is refused";
  const user = await openPage(await browser.newContext({ viewport: { width: 1400, height: 900 } }), "user");
  await signIn(user, env("HERALD_USER_EMAIL"), env("HERALD_USER_PASSWORD"));
  await user.getByTestId("refused").waitFor();
  if (await user.getByTestId("mailing-row").count()) throw new Error("a plain user sees mailings");
  await shoot("refused", user);

  step = "the administrator signs in and finds the running mailing";
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const admin = await openPage(context, "admin");
  await signIn(admin, env("HERALD_ADMIN_EMAIL"), env("HERALD_ADMIN_PASSWORD"));
  const row = admin.locator(`[data-testid="mailing-row"][data-id="${mailing}"]`);
  await row.waitFor();
  const status = (await row.getByTestId("mailing-status").textContent()).trim();
  if (status !== "running") throw new Error(`the mailing is ${status}, expected running`);
  await shoot("mailings", admin);
  await row.click();

  step = "its counts move live and its charts draw";
  await admin.locator('[data-testid="live-state"][data-state="live"]').waitFor();
  const first = await count(admin, "sent");
  // No reload and no polling of counts: a snapshot on the mailing's stream moves them.
  await admin.waitForFunction(
    ([before]) => Number(document.querySelector('[data-testid="count-sent"]').textContent.replace(/\D/g, "")) > before,
    [first],
    { timeout: STEP_TIMEOUT_MS },
  );
  const later = await count(admin, "sent");
  const total = await count(admin, "total");
  if (!(later > first && later <= total)) throw new Error(`sent went ${first} → ${later} of ${total}`);
  for (const chart of ["status", "rate", "retries", "latency"]) {
    await admin.locator(`[data-testid="chart-${chart}"] canvas`).first().waitFor();
  }
  // The status chart has points: uPlot draws a legend value for each series.
  await admin.waitForFunction(() => document.querySelectorAll('[data-testid="chart-status"] .u-legend .u-series').length >= 5);
  const progress = await admin.getByTestId("mailing-progress").evaluate((p) => [p.value, p.max]);
  if (!(progress[0] > 0)) throw new Error(`the progress bar is at ${progress}`);
  log(`sent ${first} → ${later} of ${total}, progress ${progress[0]}/${progress[1]}`);
  await shoot("mailing-1400", admin);

  step = "the mailing page at a phone's width";
  await admin.setViewportSize({ width: 390, height: 844 });
  await admin.waitForTimeout(300);
  const overflow = await admin.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error(`the page is ${overflow}px wider than a phone`);
  await shoot("mailing-phone", admin);
  await admin.setViewportSize({ width: 1400, height: 900 });

  step = "import a CSV file with a bad line";
  await admin.getByTestId("nav-clients").click();
  await admin.getByTestId("import-file").waitFor();
  const csv = "phone,tag,timezone\n79990000001,imported,Europe/Moscow\n12345,imported,UTC\n79990000002,imported,UTC\n";
  await admin.getByTestId("import-file").setInputFiles({ name: "clients.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
  await admin.getByTestId("import-submit").click();
  await admin.waitForFunction(() => /refused/.test(document.querySelector('[data-testid="import-summary"]').textContent));
  const summary = (await admin.getByTestId("import-summary").textContent()).trim();
  if (!summary.startsWith("2 created, 1 refused")) throw new Error(`import summary: ${summary}`);
  const bar = await admin.getByTestId("import-progress").evaluate((p) => [p.hidden, p.value, p.max]);
  if (bar[0] || bar[1] !== bar[2]) throw new Error(`the progress bar is ${JSON.stringify(bar)}`);
  const error = (await admin.getByTestId("import-error").first().textContent()).trim();
  if (!error.startsWith("3") || !/phone/.test(error)) throw new Error(`the error row says ${error}`);
  await shoot("import", admin);

  step = "find an imported client by phone";
  await admin.getByTestId("search-phone").fill("7999000000");
  await admin.getByTestId("search-submit").click();
  await admin.locator('[data-testid="client-row"][data-phone="79990000002"]').waitFor();
  const rows = await admin.getByTestId("client-row").count();
  if (rows !== 2) throw new Error(`the search shows ${rows} clients, expected 2`);

  step = "the provider and real-time panels";
  await admin.getByTestId("nav-provider").click();
  await admin.waitForFunction(() => /^\d/.test(document.querySelector('[data-testid="provider-calls"]')?.textContent || ""));
  const limit = (await admin.getByTestId("provider-rate-limit").textContent()).trim();
  if (limit !== "50/s") throw new Error(`the provider panel shows a rate limit of ${limit}, expected 50/s`);
  await shoot("provider", admin);
  await admin.getByTestId("nav-realtime").click();
  await admin.waitForFunction(() => /^\d/.test(document.querySelector('[data-testid="rt-sessions"]')?.textContent || ""));
  await shoot("realtime", admin);

  step = "a token in a link does not sign a browser in";
  const login = await fetch(`${BASE}/api/v1/auth/login`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: env("HERALD_ADMIN_EMAIL"), password: env("HERALD_ADMIN_PASSWORD") }),
  }).then((r) => r.json());
  const lured = await openPage(await browser.newContext(), "lured");
  await lured.goto(`${BASE}/admin/?sso=guess#access_token=${login.access_token}`);
  await lured.getByTestId("signin").waitFor();
  if (await lured.getByTestId("nav-mailings").isVisible()) throw new Error("a token from a link signed the page in");

  if (process.env.HERALD_OIDC === "1") {
    step = "sign in through single sign-on";
    const sso = await openPage(await browser.newContext({ viewport: { width: 1400, height: 900 } }), "sso");
    await sso.goto(`${BASE}/admin/`);
    await sso.getByTestId("signin-sso").click();
    await sso.getByTestId("nav-mailings").waitFor();
    const me = (await sso.getByTestId("me").textContent()).trim();
    if (!me.includes("(admin)")) throw new Error(`signed in through SSO as ${me}`);
    await sso.locator(`[data-testid="mailing-row"][data-id="${mailing}"]`).waitFor();
    await shoot("sso", sso);
  }

  step = "nothing loaded from another host";
  if (foreign.length) throw new Error(`requests to other hosts: ${foreign.join(", ")}`);
  log("ok");
}

main().then(() => { clearTimeout(watchdog); return finish(0); }, (err) => finish(1, err));
