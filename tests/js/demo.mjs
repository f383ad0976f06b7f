// The demo page's browser test: two tabs of one person and a page of another, driven by Playwright
// in the system's Chromium (never a browser of Playwright's own).
//
//   HERALD_URL=http://127.0.0.1:8080 node tests/js/demo.mjs
//
// It registers two people over REST, logs both in through the page, then checks that a task added
// in one tab shows in the other without a reload, that a change made with a plain HTTP request
// (as curl would) shows too, that done and delete travel between tabs, and that a chat room works
// both ways: A creates it, adds B by id, B sees it appear, each sees the other's message live, and
// B leaves it.
// Exit 0 on success; otherwise 1 with the failing step, the pages' console and screenshots.
//
// With HERALD_DEMO_ADMIN_TOKEN (an admin's token) it also sends Ada a notification over REST:
// it lands in both her tabs' inboxes live, the page's ack acknowledges it (so its email step is
// cancelled), and "Mark read" marks it read.
//
// HERALD_TEST_CHROMIUM names the browser (default /usr/bin/chromium). HERALD_DEMO_TASKS_ONLY=1
// stops after the task steps (for a server without rooms).

import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const BASE = (process.env.HERALD_URL || "").replace(/\/+$/, "");
const CHROMIUM = process.env.HERALD_TEST_CHROMIUM || "/usr/bin/chromium";
const TASKS_ONLY = process.env.HERALD_DEMO_TASKS_ONLY === "1";
const ADMIN_TOKEN = process.env.HERALD_DEMO_ADMIN_TOKEN || "";
const TOTAL_TIMEOUT_MS = 60_000;
const STEP_TIMEOUT_MS = 15_000;
const PASSWORD = "password-123";

let browser = null;
let step = "start";
const pages = {};
const consoleLines = [];

function log(text) {
  process.stdout.write(`demo.mjs: ${text}\n`);
}

async function finish(code, error) {
  if (error) {
    process.stderr.write(`demo.mjs: FAILED at step "${step}": ${error?.stack || error}\n`);
    for (const [name, page] of Object.entries(pages)) {
      const file = join(tmpdir(), `herald-demo-${process.pid}-${name}.png`);
      try {
        await page.screenshot({ path: file, fullPage: true, timeout: 3000 });
        process.stderr.write(`demo.mjs: screenshot of ${name}: ${file}\n`);
      } catch {
        // the page may be gone already
      }
    }
    if (consoleLines.length) process.stderr.write(`demo.mjs: page console:\n${consoleLines.join("\n")}\n`);
  }
  try {
    await browser?.close();
  } catch {
    // closing is best effort; the process ends next
  }
  process.exit(code);
}

const watchdog = setTimeout(() => finish(1, new Error(`timed out after ${TOTAL_TIMEOUT_MS / 1000} s`)), TOTAL_TIMEOUT_MS);

async function rest(method, path, token, body, headers = {}) {
  const res = await fetch(`${BASE}/api/v1${path}`, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).catch((err) => {
    throw new Error(`${method} ${BASE}/api/v1${path}: ${err.cause?.message || err.message}`);
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function register(label) {
  const email = `${label}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.org`;
  await rest("POST", "/auth/register", null, { email, password: PASSWORD, name: label });
  const { access_token: token } = await rest("POST", "/auth/login", null, { email, password: PASSWORD });
  const me = await rest("GET", "/me", token);
  return { email, token, id: me.id };
}

async function openPage(context, name) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("console", (m) => consoleLines.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`[${name}] page error: ${e.message}`));
  pages[name] = page;
  return page;
}

/** Logs `user` in through the form and waits until the page follows its channel live. */
async function logIn(page, user) {
  step = `log in on ${Object.keys(pages).find((k) => pages[k] === page)}`;
  await page.goto(`${BASE}/demo`);
  await page.getByTestId("login-email").fill(user.email);
  await page.getByTestId("login-password").fill(PASSWORD);
  await page.getByTestId("login-submit").click();
  await page.locator('[data-testid="conn-status"][data-state="live"]').waitFor();
  const shown = (await page.getByTestId("user-id").textContent())?.trim();
  if (shown !== user.id) throw new Error(`the page shows user id ${shown}, expected ${user.id}`);
}

const task = (page, title) => page.locator('[data-testid="task"]', { hasText: title });
const message = (page, text) => page.locator('[data-testid="message"]', { hasText: text });

async function main() {
  if (!BASE) throw new Error("set HERALD_URL to the Herald to test, like http://127.0.0.1:8080");

  step = "register two people over REST";
  const ada = await register("ada");
  const bob = await register("bob");

  step = `launch ${CHROMIUM}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const adaContext = await browser.newContext();
  const bobContext = await browser.newContext();
  const tab1 = await openPage(adaContext, "ada-tab-1");
  const tab2 = await openPage(adaContext, "ada-tab-2");
  const bobPage = await openPage(bobContext, "bob");
  await logIn(tab1, ada);
  await logIn(tab2, ada);
  await logIn(bobPage, bob);

  step = "a task added in tab 1 shows in tab 2 without a reload";
  const title = `Buy milk ${Date.now()}`;
  await tab1.getByTestId("task-title").fill(title);
  await tab1.getByTestId("task-add").click();
  await task(tab1, title).waitFor();
  await task(tab2, title).waitFor();
  const taskId = await task(tab2, title).getAttribute("data-task-id");
  log(`task ${taskId} reached the second tab`);

  step = "a change made with a plain HTTP request shows in tab 1";
  const renamed = `${title} (oat)`;
  await rest("PATCH", `/tasks/${taskId}`, ada.token, { title: renamed }, { "If-Match": '"1"' });
  await task(tab1, renamed).waitFor();
  await task(tab2, renamed).waitFor();

  step = "done in tab 2 shows in tab 1";
  await task(tab2, renamed).getByTestId("task-done").check();
  await tab1.locator(`[data-testid="task"][data-task-id="${taskId}"][data-status="done"]`).waitFor();

  step = "a task deleted in tab 1 leaves tab 2";
  const doomed = `Throw away ${Date.now()}`;
  await tab1.getByTestId("task-title").fill(doomed);
  await tab1.getByTestId("task-add").click();
  await task(tab2, doomed).waitFor();
  await task(tab1, doomed).getByTestId("task-delete").click();
  await task(tab2, doomed).waitFor({ state: "detached" });
  if ((await task(bobPage, renamed).count()) !== 0) throw new Error("bob sees ada's task");
  log("tasks travel live between tabs");

  if (ADMIN_TOKEN) await notices(ada, tab1, tab2);
  if (TASKS_ONLY) return;

  step = "ada creates a room";
  const roomName = `Standup ${Date.now()}`;
  await tab1.getByTestId("room-name").fill(roomName);
  await tab1.getByTestId("room-create").click();
  await tab1.locator('[data-testid="room-view"][data-state="live"]').waitFor();
  const roomTitle = (await tab1.getByTestId("room-title").textContent())?.trim();
  if (roomTitle !== roomName) throw new Error(`the room view is titled ${roomTitle}, expected ${roomName}`);

  step = "ada adds bob by his id and bob's page learns of the room";
  const bobId = (await bobPage.getByTestId("user-id").textContent())?.trim();
  await tab1.getByTestId("member-id").fill(bobId);
  await tab1.getByTestId("member-add").click();
  const bobRoom = bobPage.locator('[data-testid="room"]', { hasText: roomName });
  await bobRoom.waitFor();
  await bobRoom.click();
  await bobPage.locator('[data-testid="room-view"][data-state="live"]').waitFor();

  step = "ada's message shows on bob's page";
  const hello = `Hello Bob ${Date.now()}`;
  await tab1.getByTestId("message-body").fill(hello);
  await tab1.getByTestId("message-send").click();
  await message(bobPage, hello).waitFor();

  step = "bob's reply shows on ada's page";
  const reply = `Hi Ada ${Date.now()}`;
  await bobPage.getByTestId("message-body").fill(reply);
  await bobPage.getByTestId("message-send").click();
  await message(tab1, reply).waitFor();
  log("room messages travel live both ways");

  step = "bob leaves the room: it closes on his page and is gone from his list";
  await bobPage.getByTestId("room-leave").click();
  await bobPage.locator('[data-testid="room-view"]').waitFor({ state: "hidden" });
  await bobRoom.waitFor({ state: "detached" });
  log("a member leaves a room");
}

/** A notice to Ada shows in her inbox live; seeing it acknowledges it; "Mark read" reads it. */
async function notices(ada, tab1, tab2) {
  step = "a notification sent over REST lands in both of ada's inboxes";
  const title = `Invoice due ${Date.now()}`;
  const made = await rest("POST", "/notifications", ADMIN_TOKEN, {
    user_id: ada.id,
    type: "invoice.due",
    title,
    body: "Invoice 42 is due tomorrow.",
    steps: [{ channel: "realtime", after: 0 }, { channel: "email", after: 300 }],
  });
  const item = (page) => page.locator(`[data-testid="inbox-item"][data-notice-id="${made.id}"]`);
  await item(tab1).waitFor();
  await item(tab2).waitFor();

  step = "the page's ack acknowledged it: its email will not go";
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let seen = null;
  while (Date.now() < deadline) {
    seen = await rest("GET", `/notifications/${made.id}`, ADMIN_TOKEN);
    if (seen.status === "acknowledged") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (seen?.status !== "acknowledged") throw new Error(`the notice is ${seen?.status}, not acknowledged`);
  if (seen.steps[1].status !== "cancelled") throw new Error(`its email step is ${seen.steps[1].status}`);

  step = "mark read in tab 1";
  await item(tab1).getByTestId("inbox-read").click();
  await tab1.locator(`[data-testid="inbox-item"][data-notice-id="${made.id}"][data-read="true"]`).waitFor();
  const inbox = await rest("GET", "/me/notifications?unread=true", ada.token);
  if (inbox.items.some((n) => n.id === made.id)) throw new Error("the notice is still unread");
  log("a notification reached the inbox live, was acknowledged by the page and read");
}

main().then(
  () => {
    clearTimeout(watchdog);
    log("all steps passed");
    return finish(0);
  },
  (error) => {
    clearTimeout(watchdog);
    return finish(1, error);
  },
);
