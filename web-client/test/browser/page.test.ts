// The page in headless Chromium (Debian's, driven by playwright-core):
// served by usersd itself (signed out, signed in at the development
// issuer with both scopes, signed out again, an expired token), self
// sign-up with a token without scopes, then from a second origin that
// usersd allows by CORS, a third that it does not, and against a server
// that is down. Each step saves a screenshot in test-results/. Editing and
// deleting users is edit.test.ts; both use harness.ts.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import type { BrowserContext, Page, Request } from "playwright-core";

import { createUserClient } from "../../src/index.js";
import {
  adminToken,
  closedPort,
  distDir,
  env,
  issuerUrl,
  serveStatic,
  uniqueEmail,
  uniqueSubject,
  usersdUrl,
  type StaticServer,
} from "../support.js";
import {
  SIGNED_OUT,
  SIGN_IN_PLEASE,
  authorization,
  holdFeed,
  listIdle,
  open,
  rowIds,
  shot,
  signIn,
  storedToken,
  text,
  useBrowser,
} from "./harness.js";

useBrowser();

describe("the page served by usersd", () => {
  let page: Page;
  let ctx: BrowserContext;
  let errors: string[];
  const email = uniqueEmail("browser");
  const subject = uniqueSubject("browser-admin");
  let id = "";

  before(async () => {
    ({ page, ctx, errors } = await open(`${usersdUrl}/`));
  });
  after(async () => {
    await ctx?.close();
  });

  it("is served under its Content-Security-Policy, without inline scripts or styles", async () => {
    const res = await page.request.get(`${usersdUrl}/`);
    const csp = res.headers()["content-security-policy"] ?? "";
    assert.match(csp, /script-src 'self';/);
    assert.match(csp, /style-src 'self';/);
    assert.ok(csp.includes(`connect-src 'self' ${issuerUrl};`), csp);
    assert.equal(res.headers()["referrer-policy"], "no-referrer");
    // The built page: no inline script, no <style>, no style attribute.
    const html = await readFile(join(distDir, "index.html"), "utf8");
    assert.doesNotMatch(html, /<style|\sstyle=/i);
    for (const m of html.matchAll(/<script\b[^>]*>/gi)) assert.match(m[0], /\ssrc=/, `inline script: ${m[0]}`);
    const js = await readFile(join(distDir, "app.js"), "utf8");
    assert.doesNotMatch(js, /innerHTML|insertAdjacentHTML|setAttribute\("style"|\beval\(|new Function\(/);
  });

  it("loads signed out, talking to its own origin, and says so", async () => {
    assert.equal(await text(page, "h1"), "usersd");
    assert.equal(await text(page, "#api-url"), usersdUrl);
    await page.locator("#auth-status", { hasText: SIGNED_OUT }).waitFor();
    assert.equal(await page.locator("#sign-in").isVisible(), true);
    assert.equal(await page.locator("#sign-out").isHidden(), true);
    assert.equal(await text(page, "#list-status"), "Sign in to list users.");
    assert.equal(await page.locator("#users tr").count(), 0);
    assert.equal(await page.locator("#lookup-result").isHidden(), true, "no lookup result yet");
    assert.equal(await page.locator("#banner").isHidden(), true);
    assert.equal(await storedToken(page), "");
    await shot(page, "01-signed-out");
  });

  it("asks to sign in when a create is attempted signed out", async () => {
    await page.fill("#email", uniqueEmail("signed-out"));
    await page.fill("#full-name", "Nobody Yet");
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/CreateUser")),
      page.click("#create-form button[type=submit]"),
    ]);
    assert.equal(await authorization(req), "", "no token to send");
    await page.locator("#banner", { hasText: SIGN_IN_PLEASE }).waitFor();
    assert.match(await text(page, "#last-call"), /^CreateUser over Connect: unauthenticated/);
    assert.equal(await text(page, "#create-result"), "");
    await shot(page, "02-signed-out-create");
  });

  it("signs in at the issuer with both scopes and comes back signed in", async () => {
    const authorize = await signIn(page, subject, "both", "03-issuer-sign-in");
    const q = authorize.searchParams;
    assert.equal(q.get("response_type"), "code");
    assert.equal(q.get("client_id"), "usersd-web");
    assert.equal(q.get("redirect_uri"), `${usersdUrl}/`, "the page's own URL");
    assert.equal(q.get("code_challenge_method"), "S256");
    assert.match(q.get("code_challenge") ?? "", /^[A-Za-z0-9_-]{43}$/);
    assert.match(q.get("state") ?? "", /^[A-Za-z0-9_-]{16,}$/);
    assert.deepEqual((q.get("scope") ?? "").split(" ").sort(), ["openid", "users:read", "users:write"]);

    assert.equal(page.url(), `${usersdUrl}/`, "code and state are gone from the address bar");
    assert.match(await text(page, "#auth-status"), new RegExp(`^Signed in as ${subject}, scopes: users:read users:write\\.`));
    assert.equal(await page.locator("#sign-in").isHidden(), true);
    assert.equal(await page.locator("#sign-out").isVisible(), true);
    assert.match(await storedToken(page), /^[\w-]+\.[\w-]+\.[\w-]+$/, "a JWT in sessionStorage");
    const storage = await page.evaluate(() => ({
      local: localStorage.length,
      pending: sessionStorage.getItem("usersd.signin"),
    }));
    assert.deepEqual(storage, { local: 0, pending: null }, "nothing in localStorage; the pending sign-in is used up");
    await page.locator("#list-status", { hasText: /shown|No users yet/ }).waitFor();
    assert.equal(await page.locator("#banner").isHidden(), true);
    await shot(page, "04-signed-in");
  });

  it("creates a user through the form over Connect, with the token", async () => {
    const listed = await rowIds(page);
    await page.fill("#email", email);
    await page.fill("#full-name", "Grace Hopper");
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/CreateUser")),
      page.click("#create-form button[type=submit]"),
    ]);
    assert.equal(req.headers()["content-type"], "application/json", "Connect JSON");
    assert.equal(await authorization(req), `Bearer ${await storedToken(page)}`);
    await page.locator("#create-result", { hasText: "Created Grace Hopper" }).waitFor();
    const result = await text(page, "#create-result");
    const m = /with id ([0-9a-f-]{36})\./.exec(result);
    assert.ok(m?.[1], result);
    id = m[1];
    assert.equal(await page.inputValue("#user-id"), id, "the new id is ready to look up");
    assert.match(await text(page, "#last-call"), /^CreateUser over Connect: ok/);
    // Above the users listed before; those that other test files create
    // meanwhile arrive live, above it.
    const ids = await rowIds(page);
    assert.ok(ids.includes(id), "the new user is listed");
    for (const other of listed.filter((x) => ids.includes(x))) {
      assert.ok(ids.indexOf(id) < ids.indexOf(other), `the new user is above ${other}, listed before`);
    }
    assert.match(await text(page, "#list-status"), /\d+ users? shown/);
    await shot(page, "05-created-over-connect");
  });

  it("looks the user up and lists over Connect", async () => {
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/GetUser")),
      page.click("#lookup-form button[type=submit]"),
    ]);
    assert.equal(await authorization(req), `Bearer ${await storedToken(page)}`);
    await page.locator("#found-id", { hasText: id }).waitFor();
    const [list] = await Promise.all([
      page.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/ListUsers")),
      page.click("#list-reload"),
    ]);
    assert.equal(await authorization(list), `Bearer ${await storedToken(page)}`);
    await listIdle(page);
    assert.match(await text(page, "#last-call"), /^ListUsers over Connect: ok/);
    assert.ok((await page.locator("#users tr").count()) > 0);
  });

  it("switches to gRPC-Web and looks the same user up, with the token", async () => {
    await page.check('input[name="protocol"][value="grpc-web"]');
    await page.fill("#user-id", id);
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/GetUser")),
      page.click("#lookup-form button[type=submit]"),
    ]);
    assert.equal(req.headers()["content-type"], "application/grpc-web+proto", "gRPC-Web");
    assert.equal(await authorization(req), `Bearer ${await storedToken(page)}`);
    await page.locator("#lookup-result").waitFor({ state: "visible" });
    assert.equal(await text(page, "#found-email"), email);
    assert.equal(await text(page, "#found-name"), "Grace Hopper");
    assert.equal(await text(page, "#found-id"), id);
    assert.match(await text(page, "#last-call"), /^GetUser over gRPC-Web: ok/);
    await shot(page, "06-looked-up-over-grpc-web");
  });

  it("creates and lists over gRPC-Web, with the token", async () => {
    await page.fill("#email", uniqueEmail("grpcweb"));
    await page.fill("#full-name", "Web Grpc");
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/CreateUser")),
      page.click("#create-form button[type=submit]"),
    ]);
    assert.equal(req.headers()["content-type"], "application/grpc-web+proto");
    assert.equal(await authorization(req), `Bearer ${await storedToken(page)}`);
    await page.locator("#create-result", { hasText: "Created Web Grpc" }).waitFor();
    const [list] = await Promise.all([
      page.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/ListUsers")),
      page.click("#list-reload"),
    ]);
    assert.equal(await authorization(list), `Bearer ${await storedToken(page)}`);
    await listIdle(page);
    assert.match(await text(page, "#last-call"), /^ListUsers over gRPC-Web: ok/);
    assert.ok((await page.locator("#users tr").count()) > 0);
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
    await shot(page, "07-duplicate-email");
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
    await shot(page, "08-validation-errors");
    assert.deepEqual(errors, [], "no uncaught exceptions in the page");
  });

  it("pages through the list with More", async () => {
    // Seed more than two pages of users through the API.
    const api = createUserClient(usersdUrl, { token: () => adminToken });
    const seeded: string[] = [];
    for (let i = 0; i < 12; i++) {
      const { user } = await api.createUser({ email: uniqueEmail(`page${i}`), fullName: `Paged User ${i}` });
      seeded.push(user?.id ?? "");
    }
    // Test files run in parallel, and the live list would show their users
    // as they come and go: held, the rows are exactly the pages loaded.
    const feed = await holdFeed(page);
    try {
      await page.click("#list-reload");
      await listIdle(page);
      const first = await rowIds(page);
      assert.equal(first.length, 5, "the first page has 5 users");
      assert.deepEqual(first, [...first].sort().reverse(), "newest (largest UUIDv7) first");
      await page.locator("#more").waitFor({ state: "visible" });
      await shot(page, "09-list-first-page");

      await page.click("#more");
      await listIdle(page);
      const two = await rowIds(page);
      assert.equal(two.length, 10, "More appends the second page");
      assert.deepEqual(two.slice(0, 5), first, "after the first");
      await shot(page, "10-list-second-page");

      // Walk to the end: the More button disappears on the last page.
      for (let clicks = 0; await page.locator("#more").isVisible(); clicks++) {
        assert.ok(clicks < 200, "the list ends");
        await page.click("#more");
        await listIdle(page);
      }
      const ids = await rowIds(page);
      assert.equal(new Set(ids).size, ids.length, "no user is listed twice");
      assert.deepEqual(ids, [...ids].sort().reverse(), "newest first across the pages");
      for (const s of seeded) assert.ok(ids.includes(s), `seeded user ${s} is listed`);
      assert.ok(ids.includes(id), "the user created through the form is listed");
      assert.match(await text(page, "#list-status"), /\(end of list\)/);
      assert.deepEqual(errors, [], "no uncaught exceptions in the page");
    } finally {
      await feed.release();
    }
  });

  it("signs out: the token is gone, and so is what it fetched", async () => {
    await page.click("#sign-out");
    await page.locator("#auth-status", { hasText: SIGNED_OUT }).waitFor();
    assert.equal(await page.locator("#sign-in").isVisible(), true);
    assert.equal(await page.locator("#sign-out").isHidden(), true);
    assert.equal(await storedToken(page), "");
    assert.equal(await page.locator("#users tr").count(), 0, "the list is cleared");
    assert.equal(await page.locator("#lookup-result").isHidden(), true);
    assert.equal(await text(page, "#list-status"), "Sign in to list users.");

    await page.fill("#user-id", id);
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/GetUser")),
      page.click("#lookup-form button[type=submit]"),
    ]);
    assert.equal(await authorization(req), "");
    await page.locator("#banner", { hasText: SIGN_IN_PLEASE }).waitFor();
    await shot(page, "11-signed-out-again");

    await page.reload();
    await page.locator("#auth-status", { hasText: SIGNED_OUT }).waitFor();
    assert.deepEqual(errors, [], "no uncaught exceptions in the page");
  });

  it("drops a token that has expired, on load and while the page is open", async () => {
    await signIn(page, subject, "both");
    await page.locator("#list-status", { hasText: "shown" }).waitFor();
    // Make the stored token expire: in the past, then (after a reload that
    // is signed in again) in 13 s, which the page treats as expired 10 s
    // early.
    const expireIn = (ms: number) =>
      page.evaluate((ms) => {
        const t = JSON.parse(sessionStorage.getItem("usersd.token") ?? "{}") as { expiresAt: number };
        t.expiresAt = Date.now() + ms;
        sessionStorage.setItem("usersd.token", JSON.stringify(t));
      }, ms);
    await expireIn(-1000);
    await page.reload();
    await page.locator("#auth-status", { hasText: SIGNED_OUT }).waitFor();
    assert.equal(await storedToken(page), "", "the expired token is removed");
    assert.equal(await text(page, "#list-status"), "Sign in to list users.");

    await signIn(page, subject, "both");
    await page.locator("#list-status", { hasText: "shown" }).waitFor();
    await expireIn(13_000);
    await page.reload();
    await page.locator("#auth-status", { hasText: `Signed in as ${subject},` }).waitFor();
    await page.locator("#list-status", { hasText: "shown" }).waitFor();
    await page.locator("#auth-status", { hasText: SIGNED_OUT }).waitFor({ timeout: 10_000 });
    await page.locator("#banner", { hasText: "Your sign-in has expired: sign in again to call the API." }).waitFor();
    assert.equal(await page.locator("#users tr").count(), 0, "the list is cleared");
    assert.equal(await storedToken(page), "");
    await shot(page, "12-expired");
    assert.deepEqual(errors, [], "no uncaught exceptions in the page");
  });
});

describe("self sign-up: signed in without scopes", () => {
  let page: Page;
  let ctx: BrowserContext;
  let errors: string[];
  const subject = uniqueSubject("browser-self");
  const email = uniqueEmail("self");
  let id = "";

  before(async () => {
    ({ page, ctx, errors } = await open(`${usersdUrl}/`));
    await page.locator("#auth-status", { hasText: SIGNED_OUT }).waitFor();
  });
  after(async () => {
    await ctx?.close();
  });

  it("signs in with no scopes; listing is not allowed", async () => {
    await signIn(page, subject, "none", "13-issuer-no-scopes");
    assert.match(await text(page, "#auth-status"), /, scopes: none /);
    await page.locator("#list-error", { hasText: "Not allowed: this call needs the users:read scope." }).waitFor();
    assert.match(await text(page, "#last-call"), /^ListUsers over Connect: permission_denied/);
    assert.equal(await page.locator("#banner").isHidden(), true);
    await shot(page, "14-self-signed-in");
  });

  it("creates its own user and looks it up", async () => {
    await page.fill("#email", email);
    await page.fill("#full-name", "Self Signed");
    await page.click("#create-form button[type=submit]");
    await page.locator("#create-result", { hasText: "Created Self Signed" }).waitFor();
    const m = /with id ([0-9a-f-]{36})\./.exec(await text(page, "#create-result"));
    assert.ok(m?.[1]);
    id = m[1];
    await page.click("#lookup-form button[type=submit]");
    await page.locator("#found-id", { hasText: id }).waitFor();
    assert.equal(await text(page, "#found-email"), email);
    await shot(page, "15-self-created");
  });

  it("still may not list, nor look up someone else", async () => {
    await page.click("#list-reload");
    await listIdle(page);
    assert.equal(await text(page, "#list-error"), "Not allowed: this call needs the users:read scope.");
    assert.equal(await page.locator("#users tr").count(), 0);

    const api = createUserClient(usersdUrl, { token: () => adminToken });
    const { user } = await api.createUser({ email: uniqueEmail("other"), fullName: "Some Other" });
    await page.fill("#user-id", user?.id ?? "");
    await page.click("#lookup-form button[type=submit]");
    await page.locator("#id-error", { hasText: "Not allowed: without the needed scope a token may act only on its own user." }).waitFor();
    assert.equal(await page.locator("#lookup-result").isHidden(), true);
  });

  it("gets 'this account already has a user' on a second create, at the form", async () => {
    await page.check('input[name="protocol"][value="grpc-web"]');
    await page.fill("#email", uniqueEmail("self-again"));
    await page.fill("#full-name", "Self Again");
    await page.click("#create-form button[type=submit]");
    await page.locator("#create-error", { hasText: "This account already has a user." }).waitFor();
    assert.match(await text(page, "#last-call"), /^CreateUser over gRPC-Web: already_exists/);
    assert.equal(await text(page, "#email-error"), "", "not about the email");
    assert.equal(await page.locator("#banner").isHidden(), true);
    assert.equal(await text(page, "#create-result"), "");
    await shot(page, "16-self-second-create");
    assert.deepEqual(errors, [], "no uncaught exceptions in the page");
  });
});

describe("a sign-in answer this tab did not ask for", () => {
  it("is refused, and its code leaves the address bar", async () => {
    const { ctx, page, errors } = await open(`${usersdUrl}/?code=stolen-code&state=forged-state`);
    try {
      await page.locator("#banner", { hasText: "Sign-in could not be finished: this tab did not start it" }).waitFor();
      assert.equal(page.url(), `${usersdUrl}/`);
      assert.equal(await text(page, "#auth-status"), SIGNED_OUT);
      assert.equal(await storedToken(page), "");
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
  });
});

describe("the page against a usersd without authentication", () => {
  it("shows no sign-in and calls without a token", async () => {
    // Stands in for a usersd started with AUTH_DISABLED=true: this one checks
    // tokens, so the calls are refused, but the page must not offer sign-in.
    // The page lists users as soon as it has /config.json, which may be
    // before page.goto returns: wait for the request from before the start.
    let listed: Promise<Request> | undefined;
    const { ctx, page, errors } = await open(`${usersdUrl}/`, async (p) => {
      await p.route(`${usersdUrl}/config.json`, (route) =>
        route.fulfill({ status: 200, contentType: "application/json", body: '{"auth_disabled":true}' }),
      );
      listed = p.waitForRequest((r) => r.url().endsWith("/users.v1.UserService/ListUsers"));
    });
    try {
      assert.ok(listed);
      const req = await listed;
      assert.equal(await authorization(req), "");
      await page.locator("#banner", { hasText: "Sign in first" }).waitFor();
      assert.equal(await page.locator("#auth").isHidden(), true, "no sign-in UI");
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
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

  it("signs in and works when usersd allows that origin", async () => {
    const start = `${allowed.origin}/?api=${encodeURIComponent(usersdUrl)}`;
    const { ctx, page, errors } = await open(start);
    try {
      assert.equal(await text(page, "#api-url"), usersdUrl);
      await page.locator("#auth-status", { hasText: SIGNED_OUT }).waitFor();
      const authorize = await signIn(page, uniqueSubject("cors"), "both");
      assert.equal(authorize.searchParams.get("redirect_uri"), `${allowed.origin}/`, "this page's own URL");
      assert.equal(page.url(), start, "back where the sign-in started, ?api= and all, without the code");
      assert.equal(await text(page, "#api-url"), usersdUrl);
      await page.locator("#list-status", { hasText: "shown" }).waitFor();
      await page.fill("#email", uniqueEmail("cors"));
      await page.fill("#full-name", "Cross Origin");
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.url() === `${usersdUrl}/users.v1.UserService/CreateUser` && r.request().method() === "POST"),
        page.click("#create-form button[type=submit]"),
      ]);
      assert.equal(res.headers()["access-control-allow-origin"], allowed.origin);
      assert.equal(await authorization(res.request()), `Bearer ${await storedToken(page)}`);
      await page.locator("#create-result", { hasText: "Created Cross Origin" }).waitFor();
      const written = (await res.allHeaders())["consistency-token"] ?? "";
      assert.notEqual(written, "", "the create answered with a Consistency-Token");

      await page.check('input[name="protocol"][value="grpc-web"]');
      const [req] = await Promise.all([
        page.waitForRequest((r) => r.url() === `${usersdUrl}/users.v1.UserService/GetUser` && r.method() === "POST"),
        page.click("#lookup-form button[type=submit]"),
      ]);
      assert.equal(await authorization(req), `Bearer ${await storedToken(page)}`);
      // Only if usersd's CORS exposes the header to the page and allows it back.
      assert.equal((await req.allHeaders())["consistency-token"], written, "the lookup sends the create's token");
      await page.locator("#found-name", { hasText: "Cross Origin" }).waitFor();
      assert.equal(await page.locator("#banner").isHidden(), true);
      await shot(page, "17-cross-origin-allowed");
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
      assert.equal(await page.locator("#sign-in").isVisible(), false, "no sign-in without the API's settings");
      await shot(page, "18-cross-origin-blocked");
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
      await shot(page, "19-server-unreachable");
      assert.deepEqual(errors, []);
    } finally {
      await ctx.close();
    }
  });
});
