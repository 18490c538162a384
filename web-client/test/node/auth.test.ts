// Authentication and the scope policy from Node, over Connect JSON and
// binary, gRPC-Web and gRPC (connect-node) and the package's own
// createUserClient with its token option: no token or a bad one is
// unauthenticated; a users:read token lists and reads but creates only its
// own user (self sign-up), once; a token without scopes may sign itself up
// and read that user, and nothing else.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { Code, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  Http2SessionManager,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

import {
  UserService,
  bearerToken,
  createUserClient,
  formErrorOf,
  isPermissionDenied,
  isUnauthenticated,
  type UserClient,
} from "../../src/index.js";
import { adminToken, mintToken, rejection, resultsDir, uniqueEmail, uniqueSubject, usersdUrl, uuidV7 } from "../support.js";

const sessions: Http2SessionManager[] = [];
function h2(): Http2SessionManager {
  const sm = new Http2SessionManager(usersdUrl);
  sessions.push(sm);
  return sm;
}
after(() => {
  for (const sm of sessions) sm.abort();
});

const node = (t: Transport): UserClient => createClient(UserService, t);
const auth = (token?: string): Interceptor[] => (token === undefined ? [] : [bearerToken(() => token)]);

/** Each way of calling usersd, with token (or without, when undefined). */
const kinds: Array<[string, (token?: string) => UserClient]> = [
  ["Connect JSON", (t) => node(createConnectTransport({ baseUrl: usersdUrl, httpVersion: "1.1", interceptors: auth(t) }))],
  [
    "Connect binary",
    (t) => node(createConnectTransport({ baseUrl: usersdUrl, httpVersion: "2", useBinaryFormat: true, sessionManager: h2(), interceptors: auth(t) })),
  ],
  ["gRPC-Web", (t) => node(createGrpcWebTransport({ baseUrl: usersdUrl, httpVersion: "1.1", interceptors: auth(t) }))],
  ["gRPC", (t) => node(createGrpcTransport({ baseUrl: usersdUrl, sessionManager: h2(), interceptors: auth(t) }))],
  ["createUserClient Connect (token option)", (t) => createUserClient(usersdUrl, { protocol: "connect", token: () => t })],
  ["createUserClient gRPC-Web (token option)", (t) => createUserClient(usersdUrl, { protocol: "grpc-web", token: () => t })],
];

const unknownId = "01900000-0000-7000-8000-000000000000";

/** A user that belongs to nobody's subject, created with the admin token. */
let someoneElse = "";
before(async () => {
  const admin = createUserClient(usersdUrl, { token: () => adminToken });
  const { user } = await admin.createUser({ email: uniqueEmail("someone-else"), fullName: "Someone Else" });
  assert.ok(user);
  someoneElse = user.id;
});

function assertUnauthenticated(err: unknown, what: string): void {
  assert.ok(isUnauthenticated(err), `${what}: ${String(err)}`);
  assert.deepEqual(formErrorOf(err), {
    code: Code.Unauthenticated,
    message: "Sign in first: the server needs a valid sign-in for this call.",
    network: false,
  });
}

function assertDenied(err: unknown, what: string, message: string): void {
  assert.ok(isPermissionDenied(err), `${what}: ${String(err)}`);
  assert.deepEqual(formErrorOf(err), { code: Code.PermissionDenied, message, network: false });
}

for (const [name, make] of kinds) {
  describe(`${name}: no token, or a bad one`, () => {
    it("is unauthenticated on every method without a token", async () => {
      const users = make();
      assertUnauthenticated(await rejection(users.listUsers({})), "ListUsers");
      assertUnauthenticated(await rejection(users.getUser({ id: someoneElse })), "GetUser");
      assertUnauthenticated(await rejection(users.createUser({ email: uniqueEmail("anon"), fullName: "Anon" })), "CreateUser");
    });

    it("is unauthenticated with a malformed, an expired or a foreign token", async () => {
      const expired = mintToken(uniqueSubject("expired"), ["users:read"], { ttl: "-1m" });
      const foreign = mintToken(uniqueSubject("foreign"), ["users:read"], { key: join(resultsDir, "foreign-key.pem") });
      const otherAudience = mintToken(uniqueSubject("aud"), ["users:read"], { audience: "not-usersd" });
      for (const [what, token] of [["malformed", "not-a-jwt"], ["expired", expired], ["foreign key", foreign], ["other audience", otherAudience]]) {
        const err = await rejection(make(token).listUsers({}));
        assert.equal(err.code, Code.Unauthenticated, `${what}: ${err.message}`);
        assert.match(err.rawMessage, /^invalid bearer token/, what);
      }
    });
  });

  describe(`${name}: a users:read token`, () => {
    const subject = uniqueSubject("reader");
    let users: UserClient;
    before(() => {
      users = make(mintToken(subject, ["users:read"]));
    });

    it("lists users and reads anyone's", async () => {
      const page = await users.listUsers({ pageSize: 100 });
      assert.ok(page.users.length > 0, "the list has users");
      const { user } = await users.getUser({ id: someoneElse });
      assert.equal(user?.fullName, "Someone Else");
      assert.equal(formErrorOf(await rejection(users.getUser({ id: unknownId }))).code, Code.NotFound);
    });

    it("creates its own user once (self sign-up), then already_exists", async () => {
      const email = uniqueEmail("reader-self");
      const { user } = await users.createUser({ email, fullName: "Reader Self" });
      assert.ok(user);
      assert.match(user.id, uuidV7);
      assert.equal((await users.getUser({ id: user.id })).user?.email, email);

      const err = await rejection(users.createUser({ email: uniqueEmail("reader-again"), fullName: "Reader Again" }));
      assert.equal(err.code, Code.AlreadyExists);
      assert.equal(err.rawMessage, "this account already has a user");
      assert.deepEqual(formErrorOf(err), { code: Code.AlreadyExists, message: "This account already has a user.", network: false });
    });
  });

  describe(`${name}: a token without scopes`, () => {
    const subject = uniqueSubject("noscope");
    let users: UserClient;
    before(() => {
      users = make(mintToken(subject, []));
    });

    it("is permission_denied on ListUsers", async () => {
      assertDenied(await rejection(users.listUsers({})), "ListUsers", "Not allowed: this call needs the users:read scope.");
    });

    it("is permission_denied on someone else's GetUser, and on an id nobody has", async () => {
      const msg = "Not allowed: without the needed scope a token may act only on its own user.";
      assertDenied(await rejection(users.getUser({ id: someoneElse })), "GetUser someone else", msg);
      assertDenied(await rejection(users.getUser({ id: unknownId })), "GetUser unknown id", msg);
    });

    it("signs itself up once and reads its own user", async () => {
      const email = uniqueEmail("noscope-self");
      const { user } = await users.createUser({ email, fullName: "No Scope" });
      assert.ok(user);
      const got = await users.getUser({ id: user.id });
      assert.equal(got.user?.email, email);
      const err = await rejection(users.createUser({ email: uniqueEmail("noscope-again"), fullName: "No Scope Again" }));
      assert.equal(err.code, Code.AlreadyExists);
      assert.equal(formErrorOf(err).message, "This account already has a user.");
      assert.equal(formErrorOf(err).field, undefined, "about the account, not the email");
    });
  });
}

describe("Connect over plain HTTP without a token", () => {
  it("answers 401 with a Bearer challenge", async () => {
    const res = await fetch(`${usersdUrl}/users.v1.UserService/ListUsers`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="usersd"');
    const body = (await res.json()) as { code?: string; message?: string };
    assert.equal(body.code, "unauthenticated");
  });
});

describe("the token option", () => {
  it("asks the token source before every call, and sends none when it returns undefined", async () => {
    let current: string | undefined;
    let asked = 0;
    const users = createUserClient(usersdUrl, {
      token: () => {
        asked++;
        return current;
      },
    });
    assertUnauthenticated(await rejection(users.listUsers({ pageSize: 1 })), "signed out");
    current = adminToken;
    await users.listUsers({ pageSize: 1 });
    current = undefined;
    assertUnauthenticated(await rejection(users.listUsers({ pageSize: 1 })), "signed out again");
    assert.equal(asked, 3);
  });

  it("may be async", async () => {
    const users = createUserClient(usersdUrl, { protocol: "grpc-web", token: async () => adminToken });
    const page = await users.listUsers({ pageSize: 1 });
    assert.equal(page.users.length, 1);
  });
});
