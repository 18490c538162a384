// The page in headless Chromium (Debian's, driven by playwright-core):
// served by usersd itself, then from a second origin that usersd allows by
// CORS, a third that it does not, and against a server that is down.
// Each step saves a screenshot in test-results/.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

import { createUserClient } from "../../src/index.js";
import { closedPort, distDir, env, resultsDir, serveStatic, uniqueEmail, usersdUrl, type StaticServer } from "../support.js";

const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let browser: Browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium",
    args: chromiumArgs,
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh page that fails the test on any uncaught exception in it. */
async function open(url: string): Promise<{ ctx: BrowserContext; page: Page; errors: string[] }> {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(10_000);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  return { ctx, page, errors };
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(resultsDir, `${name}.png`), fullPage: true });
}

const text = async (page: Page, selector: string) => (await page.locator(selector).textContent())?.trim() ?? "";

/** Waits until the list is idle again (its buttons are re-enabled after a call). */
async function listIdle(page: Page): Promise<void> {
  await page.waitForFunction(() => !(document.getElementById("list-reload") as HTMLButtonElement).disabled);
}

describe("the page served by usersd", () => {
  let page: Page;
  let ctx: BrowserContext;
  let errors: string[];
  const email = uniqueEmail("browser");
  let id = "";

  before(async () => {
    ({ page, ctx, errors } = await open(`${usersdUrl}/`));
  });
  after(async () => {
    await ctx?.close();
  });

  it("loads, talking to its own origin", async () => {
    assert.equal(await text(page, "h1"), "usersd");
    assert.equal(await text(page, "#api-url"), usersdUrl);
    await page.locator("#list-status", { hasText: /shown|No users yet/ }).waitFor();
    assert.equal(await page.locator("#lookup-result").isHidden(), true, "no lookup result yet");
    assert.equal(await page.locator("#banner").isHidden(), true);
    await shot(page, "01-loaded");
  });

  it("creates a user through the form over Connect", async () => {
    await page.fill("#email", email);
    await page.fill("#full-name", "Grace Hopper");
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/CreateUser")),
      page.click("#create-form button[type=submit]"),
    ]);
    assert.equal(req.headers()["content-type"], "application/json", "Connect JSON");
    await page.locator("#create-result", { hasText: "Created Grace Hopper" }).waitFor();
    const result = await text(page, "#create-result");
    const m = /with id ([0-9a-f-]{36})\./.exec(result);
    assert.ok(m?.[1], result);
    id = m[1];
    assert.equal(await page.inputValue("#user-id"), id, "the new id is ready to look up");
    assert.match(await text(page, "#last-call"), /^CreateUser over Connect: ok/);
    assert.equal(await page.locator("#users tr").first().getAttribute("data-id"), id, "the new user heads the list");
    assert.match(await text(page, "#list-status"), /\d+ users? shown/);
    await shot(page, "02-created-over-connect");
  });

  it("switches to gRPC-Web and looks the same user up", async () => {
    await page.check('input[name="protocol"][value="grpc-web"]');
    await page.fill("#user-id", id);
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/GetUser")),
      page.click("#lookup-form button[type=submit]"),
    ]);
    assert.equal(req.headers()["content-type"], "application/grpc-web+proto", "gRPC-Web");
    await page.locator("#lookup-result").waitFor({ state: "visible" });
    assert.equal(await text(page, "#found-email"), email);
    assert.equal(await text(page, "#found-name"), "Grace Hopper");
    assert.equal(await text(page, "#found-id"), id);
    assert.match(await text(page, "#last-call"), /^GetUser over gRPC-Web: ok/);
    await shot(page, "03-looked-up-over-grpc-web");
  });

  it("shows a duplicate email at the email field", async () => {
    await page.fill("#email", email.toUpperCase());
    await page.fill("#full-name", "Grace Again");
    await page.click("#create-form button[type=submit]");
    await page.locator("#email-error", { hasText: "A user with this email already exists." }).waitFor();
    assert.equal(await page.getAttribute("#email", "aria-invalid"), "true");
    assert.equal(await text(page, "#full_name-error"), "");
    assert.equal(await page.locator("#banner").isHidden(), true);
    assert.match(await text(page, "#last-call"), /^CreateUser over gRPC-Web: already_exists/);
    await shot(page, "04-duplicate-email");
  });

  it("shows validation errors at their fields", async () => {
    await page.check('input[name="protocol"][value="connect"]');
    await page.fill("#email", "not an email");
    await page.fill("#full-name", "Someone");
    await page.click("#create-form button[type=submit]");
    await page.locator("#email-error", { hasText: "Email must be a single address like name@example.com." }).waitFor();

    await page.fill("#email", uniqueEmail("valid"));
    await page.fill("#full-name", "   ");
    await page.click("#create-form button[type=submit]");
    await page.locator("#full_name-error", { hasText: "Full name is required." }).waitFor();
    assert.equal(await text(page, "#email-error"), "", "the old email error is gone");

    await page.fill("#user-id", "01900000-0000-7000-8000-000000000000");
    await page.click("#lookup-form button[type=submit]");
    await page.locator("#id-error", { hasText: "No user has this id." }).waitFor();
    assert.equal(await page.locator("#lookup-result").isHidden(), true, "the previous result is gone");
    await shot(page, "05-validation-errors");
    assert.deepEqual(errors, [], "no uncaught exceptions in the page");
  });

  it("pages through the list with More", async () => {
    // Seed more than two pages of users through the API.
    const api = createUserClient(usersdUrl);
    const seeded: string[] = [];
    for (let i = 0; i < 12; i++) {
      const { user } = await api.createUser({ email: uniqueEmail(`page${i}`), fullName: `Paged User ${i}` });
      seeded.push(user?.id ?? "");
    }
    await page.click("#list-reload");
    await listIdle(page);
    assert.equal(await page.locator("#users tr").count(), 5, "the first page has 5 users");
    assert.equal(await page.locator("#users tr").first().getAttribute("data-id"), seeded.at(-1), "newest first");
    await page.locator("#more").waitFor({ state: "visible" });
    await shot(page, "06-list-first-page");

    await page.click("#more");
    await listIdle(page);
    assert.equal(await page.locator("#users tr").count(), 10, "More appends the second page");
    await shot(page, "07-list-second-page");

    // Walk to the end: the More button disappears on the last page.
    for (let clicks = 0; await page.locator("#more").isVisible(); clicks++) {
      assert.ok(clicks < 200, "the list ends");
      await page.click("#more");
      await listIdle(page);
    }
    const ids = await page.locator("#users tr").evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset["id"] ?? ""));
    assert.equal(new Set(ids).size, ids.length, "no user is listed twice");
    for (const s of seeded) assert.ok(ids.includes(s), `seeded user ${s} is listed`);
    assert.ok(ids.includes(id), "the user created through the form is listed");
    assert.match(await text(page, "#list-status"), /\(end of list\)/);
    assert.deepEqual(errors, [], "no uncaught exceptions in the page");
  });
});

describe("the page on another origin", () => {
  let allowed: StaticServer;
  let other: StaticServer;

  before(async () => {
    allowed = await serveStatic(distDir, Number(env("CORS_ORIGIN_PORT")));
    other = await serveStatic(distDir);
  });
  after(async () => {
    await allowed?.close();
    await other?.close();
  });

  it("works when usersd allows that origin", async () => {
    const { ctx, page, errors } = await open(`${allowed.origin}/?api=${encodeURIComponent(usersdUrl)}`);
    try {
      assert.equal(await text(page, "#api-url"), usersdUrl);
      await page.locator("#list-status", { hasText: "shown" }).waitFor();
      await page.fill("#email", uniqueEmail("cors"));
      await page.fill("#full-name", "Cross Origin");
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.url() === `${usersdUrl}/users.v1.UserService/CreateUser` && r.request().method() === "POST"),
        page.click("#create-form button[type=submit]"),
      ]);
      assert.equal(res.headers()["access-control-allow-origin"], allowed.origin);
      await page.locator("#create-result", { hasText: "Created Cross Origin" }).waitFor();

      await page.check('input[name="protocol"][value="grpc-web"]');
      await page.click("#lookup-form button[type=submit]");
      await page.locator("#found-name", { hasText: "Cross Origin" }).waitFor();
      assert.equal(await page.locator("#banner").isHidden(), true);
      await shot(page, "08-cross-origin-allowed");
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
  });

  it("says the call was blocked by CORS when usersd does not allow the origin", async () => {
    const { ctx, page, errors } = await open(`${other.origin}/?api=${encodeURIComponent(usersdUrl)}`);
    try {
      const banner = page.locator("#banner");
      await banner.waitFor({ state: "visible" });
      const msg = (await banner.textContent()) ?? "";
      assert.equal(
        msg,
        `The API at ${usersdUrl} answered, but the browser blocked the call: the server does not allow requests ` +
          `from this page's origin (${other.origin}) under its CORS policy. Add ${other.origin} to usersd's CORS_ALLOWED_ORIGINS.`,
      );
      assert.equal(await page.locator("#users tr").count(), 0);
      await shot(page, "09-cross-origin-blocked");
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
  });

  it("says the server is unreachable when nothing listens", async () => {
    const port = await closedPort();
    const api = `http://127.0.0.1:${port}`;
    const { ctx, page, errors } = await open(`${other.origin}/?api=${encodeURIComponent(api)}`);
    try {
      const banner = page.locator("#banner");
      await banner.waitFor({ state: "visible" });
      assert.equal(
        await banner.textContent(),
        `Cannot reach the API at ${api}: the server is down or unreachable. Check that usersd is running and try again.`,
      );
      await shot(page, "10-server-unreachable");
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
  });
});
