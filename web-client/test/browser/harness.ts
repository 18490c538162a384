// The harness of the browser tests: Debian's Chromium driven by
// playwright-core, a fresh page per context that records uncaught
// exceptions and Content-Security-Policy violations, screenshots into
// test-results/, and signing in at the development issuer.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before } from "node:test";

import { chromium, type Browser, type BrowserContext, type Page, type Request, type Route } from "playwright-core";

import { issuerUrl, resultsDir } from "../support.js";

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

let browser: Browser | undefined;

/**
 * useBrowser launches Chromium before the tests of the calling file and
 * closes it after them; call it once at the top level of a test file.
 */
export function useBrowser(): void {
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
}

/**
 * A fresh page (in a context of its own: its own sessionStorage) that
 * collects uncaught exceptions and Content-Security-Policy violations in
 * errors, for the tests to assert there are none.
 */
export async function open(url: string, setup?: (page: Page) => Promise<void>): Promise<{ ctx: BrowserContext; page: Page; errors: string[] }> {
  if (browser === undefined) throw new Error("open: call useBrowser() in the test file first");
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(10_000);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) errors.push(`CSP: ${m.text()}`);
  });
  await setup?.(page);
  await page.goto(url);
  return { ctx, page, errors };
}

export async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(resultsDir, `${name}.png`), fullPage: true });
}

export const text = async (page: Page, selector: string) => (await page.locator(selector).textContent())?.trim() ?? "";

/** The ids of the list's rows, top to bottom. */
export const rowIds = (page: Page) => page.locator("#users tr").evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset["id"] ?? ""));

/** Waits until the list is idle again (its buttons are re-enabled after a call). */
export async function listIdle(page: Page): Promise<void> {
  await page.waitForFunction(() => !(document.getElementById("list-reload") as HTMLButtonElement).disabled);
}

export const SIGNED_OUT = "Signed out: sign in to call the API.";
export const SIGN_IN_PLEASE = "You are signed out: sign in to call the API.";

/** The access token the page keeps in sessionStorage, "" when none. */
export async function storedToken(page: Page): Promise<string> {
  const raw = await page.evaluate(() => sessionStorage.getItem("usersd.token"));
  return raw === null ? "" : ((JSON.parse(raw) as { accessToken?: string }).accessToken ?? "");
}

/** The Authorization header of a request the page sent ("" when none). */
export async function authorization(req: Request): Promise<string> {
  return (await req.allHeaders())["authorization"] ?? "";
}

/**
 * signIn clicks the page's Sign in button, signs in as subject at the
 * development issuer's form (which must have both scopes checked, as the
 * page asks for them), keeping both scopes or none, and waits until the
 * page is back and signed in. It returns the authorization request's URL.
 */
export async function signIn(page: Page, subject: string, scopes: "both" | "none", shotName?: string): Promise<URL> {
  const pageUrl = new URL(page.url());
  await Promise.all([page.waitForURL((u) => u.href.startsWith(`${issuerUrl}/authorize?`)), page.click("#sign-in")]);
  const authorize = new URL(page.url());
  for (const scope of ["users:read", "users:write"]) {
    assert.equal(await page.isChecked(`input[name="scope"][value="${scope}"]`), true, `${scope} is requested`);
  }
  await page.fill("#subject", subject);
  if (scopes === "none") {
    await page.uncheck('input[name="scope"][value="users:read"]');
    await page.uncheck('input[name="scope"][value="users:write"]');
  }
  if (shotName) await shot(page, shotName);
  await Promise.all([page.waitForURL((u) => u.origin === pageUrl.origin), page.click("#approve")]);
  await page.locator("#auth-status", { hasText: `Signed in as ${subject},` }).waitFor();
  return authorize;
}

/**
 * holdFeed keeps the page's watches of the change feed from reaching usersd
 * until release: they stay pending, so the list changes only by what the
 * page loads and does itself, not by the users that test files running
 * alongside create and delete meanwhile. Release lets the page's next
 * attempt through (it reconnects after its back-off).
 */
export async function holdFeed(page: Page): Promise<{ release(): Promise<void> }> {
  const held: Route[] = [];
  const hold = (route: Route) => {
    held.push(route);
  };
  const watch = "**/users.v1.UserService/WatchUserEvents";
  await page.route(watch, hold);
  return {
    async release() {
      await page.unroute(watch, hold);
      // A watch the page gave up on meanwhile is handled already.
      for (const r of held) await r.abort().catch(() => {});
    },
  };
}
