// The live list in headless Chromium: while the page is open, users are
// created, renamed and deleted through the API from Node (the admin token),
// and the page shows each change without a reload, following the change
// feed (WatchUserEvents) over Connect, then over gRPC-Web. Then streams
// that the test answers itself: one that ends as when usersd shuts down
// (the page reconnects after the last event it got) and one whose cursor
// expired (the page reloads the list and follows from now).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { clone, fromBinary, toJsonString } from "@bufbuild/protobuf";
import type { BrowserContext, Page, Request, Route } from "playwright-core";

import {
  ListUserEventsResponseSchema,
  UserEventSchema,
  UserEvent_Type,
  WatchUserEventsRequestSchema,
  createUserClient,
  type User,
} from "../../src/index.js";
import { adminToken, uniqueEmail, uniqueSubject, usersdUrl } from "../support.js";
import { open, rowIds, shot, signIn, text, useBrowser } from "./harness.js";

useBrowser();

/** The API with the admin token: the "someone else" who changes users while the page is open. */
const api = createUserClient(usersdUrl, { token: () => adminToken });

const procedure = (name: string) => (r: Request) => r.url().endsWith(`/users.v1.UserService/${name}`) && r.method() === "POST";
/** Routed once, to answer the next watch in the test's stead. */
const WATCH = "**/users.v1.UserService/WatchUserEvents";

/** One message of a Connect or gRPC-Web stream: flags, big-endian length, data. */
function envelope(flags: number, data: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
}

/** The after of a WatchUserEvents request, over Connect (JSON) or gRPC-Web (binary). */
function watchAfter(req: Request): string {
  const data = (req.postDataBuffer() ?? Buffer.alloc(0)).subarray(5);
  if (req.headers()["content-type"] === "application/connect+json") {
    return (JSON.parse(data.toString("utf8")) as { after?: string }).after ?? "";
  }
  return fromBinary(WatchUserEventsRequestSchema, data).after;
}

const row = (page: Page, id: string) => page.locator(`#users tr[data-id="${id}"]`);

async function waitLive(page: Page): Promise<void> {
  await page.locator("#live[data-state=live]", { hasText: "Live" }).waitFor();
}

describe("the user list follows changes made elsewhere", () => {
  let page: Page;
  let ctx: BrowserContext;
  let errors: string[];
  const watches: Request[] = [];
  let lists = 0;

  before(async () => {
    ({ page, ctx, errors } = await open(`${usersdUrl}/`, async (p) => {
      p.on("request", (r) => {
        if (procedure("WatchUserEvents")(r)) watches.push(r);
        if (procedure("ListUsers")(r)) lists++;
      });
    }));
    await signIn(page, uniqueSubject("browser-live"), "both");
    await page.locator("#list-status", { hasText: /shown|No users yet/ }).waitFor();
    await waitLive(page);
    // Gone if the page reloads.
    await page.evaluate(() => document.documentElement.setAttribute("data-test-not-reloaded", ""));
  });
  after(async () => {
    await ctx?.close();
  });

  for (const [protocol, label, type] of [
    ["connect", "Connect", "application/connect+json"],
    ["grpc-web", "gRPC-Web", "application/grpc-web+proto"],
  ] as const) {
    it(`shows users created, renamed and deleted through the API, over ${label}`, async () => {
      await page.check(`input[name="protocol"][value="${protocol}"]`);
      await waitLive(page);
      assert.equal(watches.at(-1)?.headers()["content-type"], type, `the watch runs over ${label}`);
      const listsBefore = lists;
      const lastCall = await text(page, "#last-call");
      const headBefore = (await rowIds(page))[0];

      const { user } = await api.createUser({ email: uniqueEmail(`live-${protocol}`), fullName: `Live ${label}` });
      assert.ok(user);
      const tr = row(page, user.id);
      await tr.waitFor();
      assert.deepEqual(await tr.locator("td").allTextContents().then((t) => t.slice(0, 2)), [`Live ${label}`, user.email]);
      const ids = await rowIds(page);
      if (headBefore !== undefined) assert.ok(ids.indexOf(user.id) < ids.indexOf(headBefore), "above the users listed before");
      assert.match(await text(page, "#list-status"), /\d+ users? shown/);
      await shot(page, `40-live-created-${protocol}`);

      await api.updateUser({ user: { id: user.id, fullName: `Renamed ${label}` }, updateMask: { paths: ["full_name"] } });
      await tr.locator("td", { hasText: `Renamed ${label}` }).waitFor();
      // The row holds the new version: Open shows it.
      await tr.getByRole("button", { name: `Open ${user.email}` }).click();
      await page.locator("#found-name", { hasText: `Renamed ${label}` }).waitFor();
      await shot(page, `41-live-renamed-${protocol}`);

      await api.deleteUser({ id: user.id });
      await tr.waitFor({ state: "detached" });
      await shot(page, `42-live-deleted-${protocol}`);

      assert.equal(lists, listsBefore, "the list was not reloaded");
      assert.equal(await page.evaluate(() => document.documentElement.hasAttribute("data-test-not-reloaded")), true, "nor the page");
      assert.equal(await text(page, "#last-call"), lastCall, "the watch leaves the footer to the page's own calls");
      assert.equal(await page.locator("#banner").isHidden(), true);
      assert.deepEqual(errors, [], "no uncaught exceptions or CSP violations");
    });
  }

  it("reconnects after the last event it got when the stream ends, as when usersd shuts down", async () => {
    // A real event to answer with, under a name the feed never had: its row shows the page applied it.
    const { nextAfter } = await api.listUserEvents({ after: "" });
    const { user } = await api.createUser({ email: uniqueEmail("live-resume"), fullName: "Resumed User" });
    assert.ok(user);
    await row(page, user.id).waitFor();
    const { events } = await api.listUserEvents({ after: nextAfter, pageSize: 1000 });
    const real = events.find((e) => e.userId === user.id && e.type === UserEvent_Type.CREATED);
    assert.ok(real?.user);
    const event = clone(UserEventSchema, real);
    (event.user as User).fullName = "Canned Name";

    let endedAt = 0;
    await page.route(WATCH, async (route: Route) => {
      await route.fulfill({
        status: 200,
        contentType: "application/connect+json",
        body: Buffer.concat([
          envelope(0, Buffer.from(toJsonString(UserEventSchema, event))),
          envelope(2, Buffer.from(JSON.stringify({ error: { code: "unavailable", message: "the server is shutting down" } }))),
        ]),
      });
      endedAt = Date.now();
    }, { times: 1 });
    const [again] = await Promise.all([
      page.waitForRequest((r) => procedure("WatchUserEvents")(r) && endedAt > 0),
      page.check('input[name="protocol"][value="connect"]'),
    ]);
    const waited = Date.now() - endedAt;
    assert.equal(watchAfter(again), event.id, "after the last event received");
    assert.ok(waited >= 200, `a back-off before reconnecting (${waited} ms)`);
    await row(page, user.id).locator("td", { hasText: "Canned Name" }).waitFor();
    await waitLive(page);

    // The new stream is live.
    await api.updateUser({ user: { id: user.id, fullName: "Resumed Renamed" }, updateMask: { paths: ["full_name"] } });
    await row(page, user.id).locator("td", { hasText: "Resumed Renamed" }).waitFor();
    await shot(page, "43-live-reconnected");
    assert.deepEqual(errors, []);
  });

  it("reloads the list and follows from now when its cursor expired (out_of_range)", async () => {
    const seen: Request[] = [];
    const note = (r: Request) => {
      if (["WatchUserEvents", "ListUserEvents", "ListUsers"].some((n) => procedure(n)(r))) seen.push(r);
    };
    page.on("request", note);
    await page.route(WATCH, async (route: Route) => {
      // Trailers-only: the status in the headers, as usersd answers an expired cursor.
      await route.fulfill({
        status: 200,
        headers: { "content-type": "application/grpc-web+proto", "grpc-status": "11", "grpc-message": "cursor expired" },
        body: "",
      });
    }, { times: 1 });
    await page.check('input[name="protocol"][value="grpc-web"]');
    await waitLive(page);
    page.off("request", note);
    // The expired watch, then where the feed ends, the list, and the watch from there.
    const names = seen.map((r) => new URL(r.url()).pathname.split("/").at(-1));
    assert.deepEqual(names, ["WatchUserEvents", "ListUserEvents", "ListUsers", "WatchUserEvents"]);
    const [expired, end, , fresh] = seen;
    assert.ok(expired && end && fresh);
    const frame = (await (await end.response())?.body()) ?? Buffer.alloc(0);
    assert.equal(frame[0], 0, "a data frame");
    const head = fromBinary(ListUserEventsResponseSchema, frame.subarray(5, 5 + frame.readUInt32BE(1))).nextAfter;
    assert.equal(watchAfter(fresh), head, "from the end of the feed as the list was read");
    assert.match(await text(page, "#last-call"), /^ListUsers over gRPC-Web: ok/);

    const { user } = await api.createUser({ email: uniqueEmail("live-expired"), fullName: "After Expiry" });
    assert.ok(user);
    await row(page, user.id).waitFor();
    await shot(page, "44-live-after-expiry");
    assert.deepEqual(errors, []);
  });
});
