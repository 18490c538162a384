// Editing users in place and deleting them from the page, in headless
// Chromium: signed in with both scopes (name over Connect, email over
// gRPC-Web, a taken email and invalid values at their inputs, a stale etag
// after someone else's change with the way to reload, delete with its
// confirmation over both protocols, a user opened from the list), then a
// token without scopes editing and deleting its own user. Changes "behind
// the page's back" go through the API with the admin token. Each step saves
// a screenshot in test-results/.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { BrowserContext, Page, Request } from "playwright-core";

import { STALE_MESSAGE, UpdateUserRequestSchema, createUserClient, type User } from "../../src/index.js";
import { adminToken, rejection, uniqueEmail, uniqueSubject, usersdUrl } from "../support.js";
import { authorization, holdFeed, listIdle, open, rowIds, shot, signIn, storedToken, text, useBrowser } from "./harness.js";

useBrowser();

/** The API with the admin token: the "someone else" who changes users behind the page's back. */
const api = createUserClient(usersdUrl, { token: () => adminToken });

async function apiUser(tag: string, fullName: string): Promise<User> {
  const { user } = await api.createUser({ email: uniqueEmail(tag), fullName });
  assert.ok(user);
  return user;
}

const procedure = (name: string) => (r: Request) => r.url().endsWith(`/users.v1.UserService/${name}`) && r.method() === "POST";

async function useProtocol(page: Page, protocol: "connect" | "grpc-web"): Promise<void> {
  await page.check(`input[name="protocol"][value="${protocol}"]`);
}

/** Looks id up with the page's lookup form and waits for the card. */
async function lookUp(page: Page, id: string): Promise<void> {
  await page.fill("#user-id", id);
  await page.click("#lookup-form button[type=submit]");
  await page.locator("#found-id", { hasText: id }).waitFor();
  await page.locator("#edit-user").waitFor({ state: "visible" });
}

/** The id of the focused element. */
const focused = (page: Page) => page.evaluate(() => document.activeElement?.id ?? "");

/** The UpdateUser request the page sent, from Connect JSON or a gRPC-Web frame. */
async function updateRequest(req: Request): Promise<{ id: string; etag: string; email: string; fullName: string; paths: string[] }> {
  const type = req.headers()["content-type"];
  if (type === "application/json") {
    const body = req.postDataJSON() as { user?: { id?: string; etag?: string; email?: string; fullName?: string }; updateMask?: string };
    return {
      id: body.user?.id ?? "",
      etag: body.user?.etag ?? "",
      email: body.user?.email ?? "",
      fullName: body.user?.fullName ?? "",
      // A FieldMask in JSON is one string of lowerCamelCase paths: "fullName,email".
      paths: (body.updateMask ?? "")
        .split(",")
        .filter((p) => p !== "")
        .map((p) => p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)),
    };
  }
  assert.equal(type, "application/grpc-web+proto");
  const frame = req.postDataBuffer();
  assert.ok(frame && frame.length >= 5 && frame[0] === 0, "one uncompressed gRPC-Web data frame");
  const msg = fromBinary(UpdateUserRequestSchema, frame.subarray(5));
  return {
    id: msg.user?.id ?? "",
    etag: msg.user?.etag ?? "",
    email: msg.user?.email ?? "",
    fullName: msg.user?.fullName ?? "",
    paths: msg.updateMask?.paths ?? [],
  };
}

describe("editing and deleting in the page, signed in with both scopes", () => {
  let page: Page;
  let ctx: BrowserContext;
  let errors: string[];

  before(async () => {
    ({ page, ctx, errors } = await open(`${usersdUrl}/`));
    await signIn(page, uniqueSubject("browser-editor"), "both");
    await page.locator("#list-status", { hasText: /shown|No users yet/ }).waitFor();
  });
  after(async () => {
    await ctx?.close();
  });

  it("edits the name in place over Connect, with exactly that field in the mask and the loaded etag", async () => {
    await useProtocol(page, "connect");
    const u = await apiUser("edit-name", "Ada Lovelace");
    await lookUp(page, u.id);
    assert.equal(await page.locator("#edit-full-name").isHidden(), true, "not editing yet");

    await page.click("#edit-user");
    assert.equal(await page.locator("#found-name").isHidden(), true, "the name became an input");
    assert.equal(await page.locator("#found-email").isHidden(), true);
    assert.equal(await page.inputValue("#edit-full-name"), "Ada Lovelace");
    assert.equal(await page.inputValue("#edit-email"), u.email);
    assert.equal(await focused(page), "edit-full-name", "focus goes to the first input");
    assert.equal(await page.locator("#save-user").isVisible(), true);
    assert.equal(await page.locator("#cancel-edit").isVisible(), true);
    assert.equal(await page.locator("#edit-user").isHidden(), true);
    assert.equal(await page.locator("#delete-user").isHidden(), true);
    // The inputs are labelled.
    assert.equal(await page.getByLabel("Name", { exact: true }).getAttribute("id"), "edit-full-name");
    assert.equal(await page.getByLabel("Email", { exact: true }).nth(1).getAttribute("id"), "edit-email", "after the create form's");

    await page.fill("#edit-full-name", "Ada King");
    await shot(page, "20-edit-name-editing");
    const [req] = await Promise.all([page.waitForRequest(procedure("UpdateUser")), page.click("#save-user")]);
    assert.equal(req.headers()["content-type"], "application/json", "Connect JSON");
    assert.equal(await authorization(req), `Bearer ${await storedToken(page)}`);
    assert.deepEqual(await updateRequest(req), { id: u.id, etag: u.etag, email: "", fullName: "Ada King", paths: ["full_name"] });

    await page.locator("#found-name", { hasText: "Ada King" }).waitFor();
    assert.equal(await page.locator("#edit-full-name").isHidden(), true, "back to showing the user");
    assert.equal(await text(page, "#found-email"), u.email);
    assert.equal(await text(page, "#lookup-status"), `Saved the new name of Ada King <${u.email}>.`);
    assert.match(await text(page, "#last-call"), /^UpdateUser over Connect: ok/);
    assert.equal(await focused(page), "edit-user");
    assert.equal(await page.locator("#banner").isHidden(), true);
    const stored = (await api.getUser({ id: u.id })).user;
    assert.equal(stored?.fullName, "Ada King");
    assert.notEqual(stored?.etag, u.etag);
    await shot(page, "21-edit-name-saved");

    // From now on the page's reads send back the update's Consistency-Token,
    // over either protocol, the feed's watch included.
    const written = (await (await req.response())?.allHeaders())?.["consistency-token"] ?? "";
    assert.notEqual(written, "", "the update answered with a Consistency-Token");
    const [watch] = await Promise.all([page.waitForRequest(procedure("WatchUserEvents")), useProtocol(page, "grpc-web")]);
    assert.equal((await watch.allHeaders())["consistency-token"], written, "the watch, moved to gRPC-Web");
    const [read] = await Promise.all([page.waitForRequest(procedure("GetUser")), page.click("#lookup-form button[type=submit]")]);
    assert.equal((await read.allHeaders())["consistency-token"], written, "a lookup over gRPC-Web");
    await page.locator("#edit-user").waitFor({ state: "visible" });
    await useProtocol(page, "connect");

    // The next edit sends the etag the update returned.
    await page.click("#edit-user");
    await page.fill("#edit-full-name", "Augusta Ada King");
    const [again] = await Promise.all([page.waitForRequest(procedure("UpdateUser")), page.click("#save-user")]);
    assert.equal((await updateRequest(again)).etag, stored?.etag);
    await page.locator("#found-name", { hasText: "Augusta Ada King" }).waitFor();

    // Saving without a change sends nothing.
    let sent = 0;
    const count = (r: Request) => {
      if (procedure("UpdateUser")(r)) sent++;
    };
    page.on("request", count);
    await page.click("#edit-user");
    await page.fill("#edit-full-name", "  Augusta Ada King ");
    await page.click("#save-user");
    await page.locator("#lookup-status", { hasText: "Nothing changed." }).waitFor();
    page.off("request", count);
    assert.equal(sent, 0);
    assert.deepEqual(errors, [], "no uncaught exceptions or CSP violations");
  });

  it("edits the email in place over gRPC-Web, from the keyboard", async () => {
    await useProtocol(page, "grpc-web");
    const u = await apiUser("edit-email", "Grace Hopper");
    await lookUp(page, u.id);
    await page.focus("#edit-user");
    await page.keyboard.press("Enter");
    await page.locator("#edit-email").waitFor({ state: "visible" });
    const email = uniqueEmail("edit-email-new");
    await page.fill("#edit-email", email);
    const [req] = await Promise.all([page.waitForRequest(procedure("UpdateUser")), page.press("#edit-email", "Enter")]);
    assert.equal(req.headers()["content-type"], "application/grpc-web+proto", "gRPC-Web");
    assert.equal(await authorization(req), `Bearer ${await storedToken(page)}`);
    assert.deepEqual(await updateRequest(req), { id: u.id, etag: u.etag, email, fullName: "", paths: ["email"] });
    await page.locator("#found-email", { hasText: email }).waitFor();
    assert.equal(await text(page, "#found-name"), "Grace Hopper");
    assert.equal(await text(page, "#lookup-status"), `Saved the new email of Grace Hopper <${email}>.`);
    assert.match(await text(page, "#last-call"), /^UpdateUser over gRPC-Web: ok/);
    assert.equal((await api.getUser({ id: u.id })).user?.email, email);
    assert.deepEqual((await api.listUsers({ email: email.toUpperCase() })).users.map((x) => x.id), [u.id]);
    await shot(page, "22-edit-email-grpc-web");

    // Escape cancels an edit, keeping the stored values.
    await page.click("#edit-user");
    await page.fill("#edit-full-name", "Never Saved");
    await page.press("#edit-full-name", "Escape");
    await page.locator("#found-name").waitFor({ state: "visible" });
    assert.equal(await text(page, "#found-name"), "Grace Hopper");
    assert.equal(await focused(page), "edit-user");
    assert.deepEqual(errors, []);
  });

  it("shows an email another user has at the email input, and invalid values at theirs", async () => {
    await useProtocol(page, "connect");
    const taken = await apiUser("edit-taken", "Taken Already");
    const u = await apiUser("edit-taker", "Would Take");
    await lookUp(page, u.id);
    await page.click("#edit-user");
    await page.fill("#edit-email", taken.email.toUpperCase());
    await page.click("#save-user");
    await page.locator("#edit-email-error", { hasText: "A user with this email already exists." }).waitFor();
    assert.equal(await page.getAttribute("#edit-email", "aria-invalid"), "true");
    assert.equal(await focused(page), "edit-email");
    assert.equal(await page.locator("#edit-email").isVisible(), true, "still editing");
    assert.equal(await text(page, "#edit-full_name-error"), "");
    assert.equal(await text(page, "#user-error"), "");
    assert.equal(await page.locator("#banner").isHidden(), true);
    assert.equal(await text(page, "#email-error"), "", "not at the create form's email");
    assert.match(await text(page, "#last-call"), /^UpdateUser over Connect: already_exists/);
    await shot(page, "23-edit-email-taken");

    await useProtocol(page, "grpc-web");
    await page.fill("#edit-email", "not an email");
    await page.click("#save-user");
    await page.locator("#edit-email-error", { hasText: "Email must be a single address like name@example.com." }).waitFor();
    assert.match(await text(page, "#last-call"), /^UpdateUser over gRPC-Web: invalid_argument/);

    await page.fill("#edit-email", u.email);
    await page.fill("#edit-full-name", "   ");
    await page.click("#save-user");
    await page.locator("#edit-full_name-error", { hasText: "Full name is required." }).waitFor();
    assert.equal(await text(page, "#edit-email-error"), "", "the old email error is gone");
    assert.equal(await page.getAttribute("#edit-email", "aria-invalid"), null);
    assert.equal(await page.getAttribute("#edit-full-name", "aria-invalid"), "true");
    await shot(page, "24-edit-invalid-name");

    await page.click("#cancel-edit");
    assert.equal(await text(page, "#found-email"), u.email);
    assert.equal(await text(page, "#edit-full_name-error"), "", "cancel clears the errors");
    const stored = (await api.getUser({ id: u.id })).user;
    assert.deepEqual([stored?.email, stored?.fullName, stored?.etag], [u.email, u.fullName, u.etag], "nothing was written");
    assert.deepEqual(errors, []);
  });

  it("says someone changed the user meanwhile (stale etag) and reloads it", async () => {
    await useProtocol(page, "connect");
    const u = await apiUser("edit-stale", "Loaded Name");
    await lookUp(page, u.id);
    // Someone else renames the user after the page loaded it.
    await api.updateUser({ user: { id: u.id, fullName: "Changed Elsewhere" }, updateMask: { paths: ["full_name"] } });

    await page.click("#edit-user");
    await page.fill("#edit-full-name", "My Edit");
    const [req] = await Promise.all([page.waitForRequest(procedure("UpdateUser")), page.click("#save-user")]);
    assert.equal((await updateRequest(req)).etag, u.etag, "the etag the page loaded");
    await page.locator("#user-error", { hasText: STALE_MESSAGE }).waitFor();
    assert.equal(STALE_MESSAGE, "Someone changed this user since you loaded it: reload to see the changes.");
    assert.equal(await page.locator("#reload-user").isVisible(), true);
    assert.equal(await focused(page), "reload-user");
    assert.match(await text(page, "#last-call"), /^UpdateUser over Connect: failed_precondition/);
    assert.equal(await page.locator("#banner").isHidden(), true);
    assert.equal(await text(page, "#edit-full_name-error"), "", "not about one field");
    assert.equal((await api.getUser({ id: u.id })).user?.fullName, "Changed Elsewhere", "the page overwrote nothing");
    await shot(page, "25-edit-stale-etag");

    await page.click("#reload-user");
    await page.locator("#found-name", { hasText: "Changed Elsewhere" }).waitFor();
    assert.equal(await page.locator("#reload-user").isHidden(), true);
    assert.equal(await text(page, "#user-error"), "");
    assert.match(await text(page, "#lookup-status"), /^Reloaded/);
    await shot(page, "26-edit-stale-reloaded");

    // With the reloaded etag the edit goes through.
    await page.click("#edit-user");
    assert.equal(await page.inputValue("#edit-full-name"), "Changed Elsewhere");
    await page.fill("#edit-full-name", "My Edit");
    await page.click("#save-user");
    await page.locator("#found-name", { hasText: "My Edit" }).waitFor();
    assert.equal((await api.getUser({ id: u.id })).user?.fullName, "My Edit");

    // A delete with a stale etag is refused the same way, and deletes nothing.
    await useProtocol(page, "grpc-web");
    await api.updateUser({ user: { id: u.id, fullName: "Changed Again" } });
    await page.click("#delete-user");
    await page.click("#delete-yes");
    await page.locator("#user-error", { hasText: STALE_MESSAGE }).waitFor();
    assert.match(await text(page, "#last-call"), /^DeleteUser over gRPC-Web: failed_precondition/);
    assert.equal(await page.locator("#lookup-result").isVisible(), true, "the user is still shown");
    assert.equal(await page.locator("#delete-confirm").isHidden(), true);
    assert.equal((await api.getUser({ id: u.id })).user?.fullName, "Changed Again", "not deleted");
    await page.click("#reload-user");
    await page.locator("#found-name", { hasText: "Changed Again" }).waitFor();
    assert.deepEqual(errors, []);
  });

  for (const [protocol, label, type] of [
    ["connect", "Connect", "application/json"],
    ["grpc-web", "gRPC-Web", "application/grpc-web+proto"],
  ] as const) {
    it(`deletes a user after confirming, over ${label}`, async () => {
      await useProtocol(page, protocol);
      const u = await apiUser(`delete-${protocol}`, `Doomed ${label}`);
      await lookUp(page, u.id);

      // First No: nothing happens.
      await page.click("#delete-user");
      assert.equal(await text(page, "#delete-question"), `Delete ${u.email}?`);
      assert.equal(await page.locator("#delete-yes").isVisible(), true);
      assert.equal(await focused(page), "delete-no", "the safe answer has the focus");
      await shot(page, `27-delete-confirm-${protocol}`);
      await page.click("#delete-no");
      assert.equal(await page.locator("#delete-confirm").isHidden(), true);
      assert.equal(await text(page, "#found-id"), u.id, "still shown");
      assert.equal(await focused(page), "delete-user");
      assert.equal((await api.getUser({ id: u.id })).user?.id, u.id, "still stored");
      // Escape answers No too.
      await page.click("#delete-user");
      await page.keyboard.press("Escape");
      assert.equal(await page.locator("#delete-confirm").isHidden(), true);

      // Then Yes.
      await page.click("#delete-user");
      const [req] = await Promise.all([page.waitForRequest(procedure("DeleteUser")), page.click("#delete-yes")]);
      assert.equal(req.headers()["content-type"], type);
      assert.equal(await authorization(req), `Bearer ${await storedToken(page)}`);
      if (protocol === "connect") assert.deepEqual(req.postDataJSON(), { id: u.id, etag: u.etag }, "the loaded etag");
      await page.locator("#lookup-status", { hasText: `Deleted Doomed ${label} <${u.email}>.` }).waitFor();
      assert.equal(await page.locator("#lookup-result").isHidden(), true, "gone from the page");
      assert.match(await text(page, "#last-call"), new RegExp(`^DeleteUser over ${label}: ok`));
      assert.equal((await rejection(api.getUser({ id: u.id }))).code, Code.NotFound);
      await shot(page, `28-deleted-${protocol}`);

      // Looking it up again: not found.
      assert.equal(await page.inputValue("#user-id"), u.id);
      await page.click("#lookup-form button[type=submit]");
      await page.locator("#id-error", { hasText: "No user has this id." }).waitFor();
      assert.match(await text(page, "#last-call"), new RegExp(`^GetUser over ${label}: not_found`));
      assert.equal(await page.locator("#lookup-result").isHidden(), true);
      assert.deepEqual(errors, []);
    });
  }

  it("opens a user from the list to edit and delete it, and the row follows", async () => {
    await useProtocol(page, "connect");
    const u = await apiUser("edit-row", "Row User");
    // Held, the feed neither brings other test files' users into the list
    // nor does the page's own work on the rows below.
    const feed = await holdFeed(page);
    try {
      await page.click("#list-reload");
      await listIdle(page);
      const tr = page.locator(`#users tr[data-id="${u.id}"]`);
      await tr.waitFor();
      await tr.getByRole("button", { name: `Open ${u.email}` }).click();
      await page.locator("#found-id", { hasText: u.id }).waitFor();
      assert.equal(await focused(page), "edit-user");
      assert.equal(await page.inputValue("#user-id"), u.id);

      await page.click("#edit-user");
      await page.fill("#edit-full-name", "Row User Renamed");
      const [req] = await Promise.all([page.waitForRequest(procedure("UpdateUser")), page.click("#save-user")]);
      assert.equal((await updateRequest(req)).etag, u.etag, "the etag the list loaded");
      await page.locator("#found-name", { hasText: "Row User Renamed" }).waitFor();
      assert.equal(await tr.locator("td").first().textContent(), "Row User Renamed", "the row shows the change");
      await shot(page, "29-edit-from-list");

      const before = await rowIds(page);
      await page.click("#delete-user");
      await page.click("#delete-yes");
      await page.locator("#lookup-status", { hasText: "Deleted Row User Renamed" }).waitFor();
      assert.equal(await tr.count(), 0, "the row is gone");
      assert.deepEqual(await rowIds(page), before.filter((id) => id !== u.id), "and only that row");
      assert.deepEqual(errors, []);
    } finally {
      await feed.release();
    }
  });
});

describe("a token without scopes edits and deletes its own user", () => {
  let page: Page;
  let ctx: BrowserContext;
  let errors: string[];
  const email = uniqueEmail("self-edit");

  before(async () => {
    ({ page, ctx, errors } = await open(`${usersdUrl}/`));
    await signIn(page, uniqueSubject("browser-self-edit"), "none");
  });
  after(async () => {
    await ctx?.close();
  });

  it("signs up, edits its name (Connect) and email (gRPC-Web), then deletes itself", async () => {
    await page.fill("#email", email);
    await page.fill("#full-name", "Self Editor");
    await page.click("#create-form button[type=submit]");
    await page.locator("#create-result", { hasText: "Created Self Editor" }).waitFor();
    const id = await page.inputValue("#user-id");
    await lookUp(page, id);

    await page.click("#edit-user");
    await page.fill("#edit-full-name", "Self Renamed");
    await page.click("#save-user");
    await page.locator("#found-name", { hasText: "Self Renamed" }).waitFor();
    assert.match(await text(page, "#last-call"), /^UpdateUser over Connect: ok/);

    await useProtocol(page, "grpc-web");
    const moved = uniqueEmail("self-moved");
    await page.click("#edit-user");
    await page.fill("#edit-email", moved);
    await page.click("#save-user");
    await page.locator("#found-email", { hasText: moved }).waitFor();
    assert.match(await text(page, "#last-call"), /^UpdateUser over gRPC-Web: ok/);
    const stored = (await api.getUser({ id })).user;
    assert.deepEqual([stored?.fullName, stored?.email], ["Self Renamed", moved]);
    await shot(page, "30-self-edited");

    await page.click("#delete-user");
    assert.equal(await text(page, "#delete-question"), `Delete ${moved}?`);
    await page.click("#delete-yes");
    await page.locator("#lookup-status", { hasText: `Deleted Self Renamed <${moved}>.` }).waitFor();
    assert.equal(await page.locator("#lookup-result").isHidden(), true);
    assert.match(await text(page, "#last-call"), /^DeleteUser over gRPC-Web: ok/);
    assert.equal((await rejection(api.getUser({ id }))).code, Code.NotFound);
    await shot(page, "31-self-deleted");
    assert.deepEqual(errors, []);
  });
});
