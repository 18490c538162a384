// UpdateUser, DeleteUser and ListUsers' email filter through the package's
// client, over Connect (JSON and binary) and gRPC-Web with fetch, and gRPC
// over HTTP/2 (connect-node): update masks, etags, conflicts, erasure, and
// the error mapping of formErrorOf for each. Then the self rule: a token
// without scopes may update and delete its own user, and no one else's.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";

import {
  STALE_MESSAGE,
  UserService,
  bearerToken,
  createUserClient,
  formErrorOf,
  isStale,
  userUpdate,
  type User,
  type UserClient,
} from "../../src/index.js";
import { adminToken, mintToken, rejection, uniqueEmail, uniqueSubject, usersdUrl } from "../support.js";

const sessions: Http2SessionManager[] = [];
after(() => {
  for (const sm of sessions) sm.abort();
});

/** The package's client over protocol, or gRPC through connect-node; with token. */
function clientFor(kind: "connect" | "connect-binary" | "grpc-web" | "grpc", token: string): UserClient {
  switch (kind) {
    case "connect":
      return createUserClient(usersdUrl, { protocol: "connect", token: () => token });
    case "connect-binary":
      return createUserClient(usersdUrl, { protocol: "connect", binary: true, token: () => token });
    case "grpc-web":
      return createUserClient(usersdUrl, { protocol: "grpc-web", token: () => token });
    case "grpc": {
      const sm = new Http2SessionManager(usersdUrl);
      sessions.push(sm);
      return createClient(UserService, createGrpcTransport({ baseUrl: usersdUrl, sessionManager: sm, interceptors: [bearerToken(() => token)] }));
    }
  }
}

const kinds = [
  ["Connect JSON", "connect"],
  ["Connect binary", "connect-binary"],
  ["gRPC-Web", "grpc-web"],
  ["gRPC, HTTP/2", "grpc"],
] as const;

const unknownId = "01900000-0000-7000-8000-000000000000";
const ms = (t: Timestamp | undefined) => (t === undefined ? Number.NaN : timestampDate(t).getTime());

async function newUser(users: UserClient, tag: string, fullName = "Ada Lovelace"): Promise<User> {
  const { user } = await users.createUser({ email: uniqueEmail(tag), fullName });
  assert.ok(user);
  assert.ok(user.etag !== "", "a new user has an etag");
  return user;
}

describe("userUpdate", () => {
  const loaded = { id: unknownId, etag: "1-abc", email: "ada@example.com", fullName: "Ada Lovelace" };

  it("masks exactly the fields that changed, with the loaded etag", () => {
    assert.deepEqual(userUpdate(loaded, { email: "ada@example.com", fullName: "Ada King" }), {
      user: { id: unknownId, etag: "1-abc", fullName: "Ada King" },
      updateMask: { paths: ["full_name"] },
    });
    assert.deepEqual(userUpdate(loaded, { email: " ADA@example.com " }), {
      user: { id: unknownId, etag: "1-abc", email: "ADA@example.com" },
      updateMask: { paths: ["email"] },
    });
    assert.deepEqual(userUpdate(loaded, { email: "b@example.com", fullName: "B" })?.updateMask, { paths: ["email", "full_name"] });
  });

  it("is undefined when nothing changed (surrounding space aside), and sends an emptied field", () => {
    assert.equal(userUpdate(loaded, { email: " ada@example.com", fullName: "Ada Lovelace  " }), undefined);
    assert.equal(userUpdate(loaded, {}), undefined);
    assert.deepEqual(userUpdate(loaded, { fullName: "  " })?.updateMask, { paths: ["full_name"] });
  });
});

for (const [name, kind] of kinds) {
  describe(`${name}: UpdateUser`, () => {
    let users: UserClient;
    before(() => {
      users = clientFor(kind, adminToken);
    });

    it("updates the full name only, with a new etag and updated_at", async () => {
      const u = await newUser(users, "upd-name");
      assert.equal(ms(u.updatedAt), ms(u.createdAt), "updated_at is created_at until the user changes");
      const { user } = await users.updateUser({ user: { id: u.id, fullName: " Ada King ", email: "ignored@example.com" }, updateMask: { paths: ["full_name"] } });
      assert.ok(user);
      assert.equal(user.fullName, "Ada King", "trimmed");
      assert.equal(user.email, u.email, "not in the mask: unchanged");
      assert.notEqual(user.etag, u.etag, "a new etag");
      assert.equal(ms(user.createdAt), ms(u.createdAt));
      assert.ok(ms(user.updatedAt) >= ms(u.updatedAt), "updated_at moved on");
      const got = (await users.getUser({ id: u.id })).user;
      assert.deepEqual([got?.fullName, got?.email, got?.etag], ["Ada King", u.email, user.etag]);
    });

    it("updates the email only, and may change just its letter case", async () => {
      const u = await newUser(users, "upd-email");
      const email = uniqueEmail("upd-email-new");
      const { user } = await users.updateUser({ user: { id: u.id, email, fullName: "Ignored" }, updateMask: { paths: ["email"] } });
      assert.equal(user?.email, email);
      assert.equal(user?.fullName, u.fullName);
      const upper = await users.updateUser({ user: { id: u.id, email: email.toUpperCase() }, updateMask: { paths: ["email"] } });
      assert.equal(upper.user?.email, email.toUpperCase(), "stored as given");
    });

    it("with an empty mask updates every field that is set", async () => {
      const u = await newUser(users, "upd-empty");
      const named = await users.updateUser({ user: { id: u.id, fullName: "Only Name" } });
      assert.deepEqual([named.user?.fullName, named.user?.email], ["Only Name", u.email], "an empty email is not set");
      const email = uniqueEmail("upd-empty-both");
      const both = await users.updateUser({ user: { id: u.id, email, fullName: "Both Fields" }, updateMask: { paths: [] } });
      assert.deepEqual([both.user?.fullName, both.user?.email], ["Both Fields", email]);

      const none = await rejection(users.updateUser({ user: { id: u.id } }));
      assert.equal(none.code, Code.InvalidArgument);
      assert.deepEqual(formErrorOf(none), {
        code: Code.InvalidArgument,
        field: "update_mask",
        message: "Update mask names nothing to update: set email or full_name.",
        network: false,
      });
    });

    it("rejects a path it cannot update at the update_mask field, writing nothing", async () => {
      const u = await newUser(users, "upd-path");
      for (const path of ["id", "created_at", "etag"]) {
        const err = await rejection(users.updateUser({ user: { id: u.id, fullName: "Never" }, updateMask: { paths: ["full_name", path] } }));
        assert.equal(err.code, Code.InvalidArgument, path);
        assert.deepEqual(formErrorOf(err), {
          code: Code.InvalidArgument,
          field: "update_mask",
          message: `Update mask path "${path}" cannot be updated; updatable: email, full_name.`,
          network: false,
        });
      }
      assert.equal((await users.getUser({ id: u.id })).user?.fullName, u.fullName);
    });

    it("checks new values like CreateUser, naming the field", async () => {
      const u = await newUser(users, "upd-invalid");
      const email = await rejection(users.updateUser({ user: { id: u.id, email: "not an email" }, updateMask: { paths: ["email"] } }));
      assert.deepEqual(formErrorOf(email), {
        code: Code.InvalidArgument,
        field: "email",
        message: "Email must be a single address like name@example.com.",
        network: false,
      });
      // An emptied field in the mask is a change to nothing: refused.
      const name = await rejection(users.updateUser({ user: { id: u.id, fullName: "   " }, updateMask: { paths: ["full_name"] } }));
      assert.deepEqual(formErrorOf(name), { code: Code.InvalidArgument, field: "full_name", message: "Full name is required.", network: false });
      const id = await rejection(users.updateUser({ user: { id: "42", fullName: "X" } }));
      assert.equal(formErrorOf(id).field, "user.id");
      assert.match(formErrorOf(id).message, /^Id must be a UUID like /);
      const noUser = await rejection(users.updateUser({}));
      assert.equal(formErrorOf(noUser).field, "user");
      const got = (await users.getUser({ id: u.id })).user;
      assert.deepEqual([got?.email, got?.fullName, got?.etag], [u.email, u.fullName, u.etag], "nothing was written");
    });

    it("applies an update with the current etag and refuses a stale one (failed_precondition)", async () => {
      const u = await newUser(users, "upd-etag");
      const first = await users.updateUser({ user: { id: u.id, etag: u.etag, fullName: "First Edit" }, updateMask: { paths: ["full_name"] } });
      assert.ok(first.user);
      const stale = await rejection(users.updateUser({ user: { id: u.id, etag: u.etag, fullName: "Lost Update" }, updateMask: { paths: ["full_name"] } }));
      assert.equal(stale.code, Code.FailedPrecondition);
      assert.ok(isStale(stale));
      assert.deepEqual(formErrorOf(stale), { code: Code.FailedPrecondition, message: STALE_MESSAGE, network: false });
      const got = (await users.getUser({ id: u.id })).user;
      assert.deepEqual([got?.fullName, got?.etag], ["First Edit", first.user.etag], "the stale update wrote nothing");

      // The etag of the first update is the current one: it works, once.
      const second = userUpdate(first.user, { fullName: "Second Edit" });
      assert.ok(second);
      assert.equal((await users.updateUser(second)).user?.fullName, "Second Edit");
      assert.ok(isStale(await rejection(users.updateUser(second))));
      // An etag of another user never matches.
      const other = await newUser(users, "upd-etag-other");
      const foreign = await rejection(users.updateUser({ user: { id: u.id, etag: other.etag, fullName: "Foreign" } }));
      assert.equal(foreign.code, Code.FailedPrecondition);
    });

    it("refuses an email another user has, in any case, at the email field", async () => {
      const taken = await newUser(users, "upd-taken");
      const u = await newUser(users, "upd-taker");
      const err = await rejection(users.updateUser({ user: { id: u.id, etag: u.etag, email: taken.email.toUpperCase() }, updateMask: { paths: ["email"] } }));
      assert.equal(err.code, Code.AlreadyExists);
      assert.deepEqual(formErrorOf(err), {
        code: Code.AlreadyExists,
        field: "email",
        message: "A user with this email already exists.",
        network: false,
      });
      const got = (await users.getUser({ id: u.id })).user;
      assert.deepEqual([got?.email, got?.etag], [u.email, u.etag], "nothing was written");
    });

    it("answers not_found for an id nobody has", async () => {
      const err = await rejection(users.updateUser({ user: { id: unknownId, fullName: "Nobody" } }));
      assert.deepEqual(formErrorOf(err), { code: Code.NotFound, field: "id", message: "No user has this id.", network: false });
    });
  });

  describe(`${name}: DeleteUser`, () => {
    let users: UserClient;
    before(() => {
      users = clientFor(kind, adminToken);
    });

    it("erases a user: get, update and a second delete are not_found, and the email is free again", async () => {
      const u = await newUser(users, "del");
      await users.deleteUser({ id: u.id, etag: u.etag });
      for (const [what, call] of [
        ["get", () => users.getUser({ id: u.id })],
        ["update", () => users.updateUser({ user: { id: u.id, fullName: "Ghost" } })],
        ["delete again", () => users.deleteUser({ id: u.id })],
        ["delete again with its etag", () => users.deleteUser({ id: u.id, etag: u.etag })],
      ] as const) {
        const err = await rejection(call());
        assert.equal(err.code, Code.NotFound, `${what}: ${err.message}`);
        assert.deepEqual(formErrorOf(err), { code: Code.NotFound, field: "id", message: "No user has this id.", network: false }, what);
      }
      assert.deepEqual((await users.listUsers({ email: u.email })).users, [], "the email lookup finds nobody");
      const again = await users.createUser({ email: u.email, fullName: "New Owner" });
      assert.notEqual(again.user?.id, u.id);
    });

    it("deletes without an etag, and refuses a stale one, deleting nothing", async () => {
      const u = await newUser(users, "del-etag");
      const { user } = await users.updateUser({ user: { id: u.id, fullName: "Changed Meanwhile" } });
      const stale = await rejection(users.deleteUser({ id: u.id, etag: u.etag }));
      assert.equal(stale.code, Code.FailedPrecondition);
      assert.deepEqual(formErrorOf(stale), { code: Code.FailedPrecondition, message: STALE_MESSAGE, network: false });
      assert.equal((await users.getUser({ id: u.id })).user?.fullName, "Changed Meanwhile", "still there");
      await users.deleteUser({ id: u.id, etag: user?.etag ?? "" });
      assert.equal((await rejection(users.getUser({ id: u.id }))).code, Code.NotFound);

      const plain = await newUser(users, "del-plain");
      await users.deleteUser({ id: plain.id });
      assert.equal((await rejection(users.getUser({ id: plain.id }))).code, Code.NotFound);
    });

    it("rejects a malformed id at the id field", async () => {
      const err = await rejection(users.deleteUser({ id: "not-a-uuid" }));
      assert.equal(err.code, Code.InvalidArgument);
      assert.equal(formErrorOf(err).field, "id");
    });
  });

  describe(`${name}: ListUsers by email`, () => {
    let users: UserClient;
    before(() => {
      users = clientFor(kind, adminToken);
    });

    it("finds the one user with that email in any letter case", async () => {
      const u = await newUser(users, "Find-Me");
      for (const email of [u.email, u.email.toUpperCase(), u.email.toLowerCase(), `  ${u.email} `]) {
        const page = await users.listUsers({ email });
        assert.deepEqual(
          page.users.map((x) => [x.id, x.email, x.etag]),
          [[u.id, u.email, u.etag]],
          email,
        );
        assert.equal(page.nextPageToken, "");
      }
    });

    it("finds nobody for an unknown email, and follows an email change", async () => {
      assert.deepEqual((await users.listUsers({ email: uniqueEmail("nobody") })).users, []);
      const u = await newUser(users, "find-moved");
      const email = uniqueEmail("find-moved-to");
      await users.updateUser({ user: { id: u.id, email }, updateMask: { paths: ["email"] } });
      assert.deepEqual((await users.listUsers({ email: u.email })).users, [], "not under the old email");
      assert.deepEqual((await users.listUsers({ email: email.toUpperCase() })).users.map((x) => x.id), [u.id]);
    });

    it("rejects a malformed email at the email field", async () => {
      const err = await rejection(users.listUsers({ email: "no-at-sign" }));
      assert.equal(err.code, Code.InvalidArgument);
      assert.equal(formErrorOf(err).field, "email");
    });
  });
}

describe("the self rule", () => {
  const DENIED_OWN = "Not allowed: without the needed scope a token may act only on its own user.";
  let admin: UserClient;
  before(() => {
    admin = createUserClient(usersdUrl, { token: () => adminToken });
  });

  for (const [name, kind] of kinds) {
    it(`${name}: a token without scopes updates and deletes its own user, and no one else's`, async () => {
      const users = clientFor(kind, mintToken(uniqueSubject("self-edit"), []));
      const mine = await newUser(users, "self-edit", "Self Edit");
      const other = await newUser(admin, "self-edit-other", "Someone Else");

      const renamed = await users.updateUser({ user: { id: mine.id, etag: mine.etag, fullName: "Self Renamed" }, updateMask: { paths: ["full_name"] } });
      assert.equal(renamed.user?.fullName, "Self Renamed");
      const email = uniqueEmail("self-moved");
      const moved = await users.updateUser(userUpdate(renamed.user ?? mine, { email }) ?? {});
      assert.equal(moved.user?.email, email);
      assert.ok(isStale(await rejection(users.updateUser({ user: { id: mine.id, etag: mine.etag, fullName: "Stale" } }))), "etags apply to the own user too");

      for (const [what, call] of [
        ["update someone else's", () => users.updateUser({ user: { id: other.id, fullName: "Hijacked" } })],
        ["update someone else's with its etag", () => users.updateUser({ user: { id: other.id, etag: other.etag, fullName: "Hijacked" } })],
        ["update an id nobody has", () => users.updateUser({ user: { id: unknownId, fullName: "Nobody" } })],
        ["delete someone else's", () => users.deleteUser({ id: other.id, etag: other.etag })],
        ["delete an id nobody has", () => users.deleteUser({ id: unknownId })],
      ] as const) {
        const err = await rejection(call());
        assert.equal(err.code, Code.PermissionDenied, `${what}: ${err.message}`);
        assert.deepEqual(formErrorOf(err), { code: Code.PermissionDenied, message: DENIED_OWN, network: false }, what);
      }
      const lookup = await rejection(users.listUsers({ email: other.email }));
      assert.deepEqual(formErrorOf(lookup), {
        code: Code.PermissionDenied,
        message: "Not allowed: this call needs the users:read scope.",
        network: false,
      });
      const untouched = (await admin.getUser({ id: other.id })).user;
      assert.deepEqual([untouched?.fullName, untouched?.etag], ["Someone Else", other.etag], "someone else's user is untouched");

      assert.ok(isStale(await rejection(users.deleteUser({ id: mine.id, etag: mine.etag }))), "a stale etag deletes nothing");
      await users.deleteUser({ id: mine.id, etag: moved.user?.etag ?? "" });
      assert.equal((await rejection(admin.getUser({ id: mine.id }))).code, Code.NotFound, "gone");
      // Its own id is now an id nobody has: 403 like any other, so ids cannot be probed.
      assert.equal((await rejection(users.getUser({ id: mine.id }))).code, Code.PermissionDenied);
    });
  }

  it("a users:read token (no users:write) may not update or delete someone else's user", async () => {
    const token = mintToken(uniqueSubject("reader-edit"), ["users:read"]);
    const reader = createUserClient(usersdUrl, { protocol: "grpc-web", token: () => token });
    const other = await newUser(admin, "reader-edit-other");
    for (const call of [() => reader.updateUser({ user: { id: other.id, fullName: "Nope" } }), () => reader.deleteUser({ id: other.id })]) {
      const err = await rejection(call());
      assert.deepEqual(formErrorOf(err), { code: Code.PermissionDenied, message: DENIED_OWN, network: false });
    }
    assert.equal((await admin.getUser({ id: other.id })).user?.fullName, "Ada Lovelace");
  });
});
