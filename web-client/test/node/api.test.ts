// The API over every protocol usersd speaks, from Node: Connect JSON and
// binary, gRPC-Web and gRPC over HTTP/2 through @connectrpc/connect-node,
// (createGrpcTransport is always HTTP/2) and the package's own createUserClient (connect-web over fetch) for
// Connect and gRPC-Web. Each checks the error mapping of formErrorOf too.
// Every call carries the admin token (both scopes); auth.test.ts is about
// calls without one, or with fewer scopes.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type Transport } from "@connectrpc/connect";
import {
  Http2SessionManager,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

import { BadRequestSchema, UserService, bearerToken, createUserClient, formErrorOf, type UserClient } from "../../src/index.js";
import { adminToken, closedPort, rejection, uniqueEmail, usersdUrl, uuidV7 } from "../support.js";

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
const interceptors = [bearerToken(() => adminToken)];
const token = () => adminToken;

const clients: Array<[string, () => UserClient]> = [
  ["Connect JSON, HTTP/1.1", () => node(createConnectTransport({ baseUrl: usersdUrl, httpVersion: "1.1", interceptors }))],
  [
    "Connect binary, HTTP/2",
    () => node(createConnectTransport({ baseUrl: usersdUrl, httpVersion: "2", useBinaryFormat: true, sessionManager: h2(), interceptors })),
  ],
  ["gRPC-Web, HTTP/1.1", () => node(createGrpcWebTransport({ baseUrl: usersdUrl, httpVersion: "1.1", interceptors }))],
  ["gRPC, HTTP/2", () => node(createGrpcTransport({ baseUrl: usersdUrl, sessionManager: h2(), interceptors }))],
  ["createUserClient Connect JSON (fetch)", () => createUserClient(usersdUrl, { protocol: "connect", token })],
  ["createUserClient Connect binary (fetch)", () => createUserClient(usersdUrl, { protocol: "connect", binary: true, token })],
  ["createUserClient gRPC-Web (fetch)", () => createUserClient(usersdUrl, { protocol: "grpc-web", token })],
];

for (const [name, make] of clients) {
  describe(name, () => {
    const users = make();

    it("creates a user and gets it back", async () => {
      const email = uniqueEmail("create");
      const before = Date.now();
      const { user } = await users.createUser({ email: `  ${email} `, fullName: " Ada Lovelace " });
      assert.ok(user);
      assert.match(user.id, uuidV7);
      assert.equal(user.email, email, "surrounding space is trimmed");
      assert.equal(user.fullName, "Ada Lovelace");
      assert.ok(user.createdAt);
      const at = timestampDate(user.createdAt).getTime();
      assert.ok(Math.abs(at - before) < 60_000, `created_at ${new Date(at).toISOString()} is now`);

      const got = await users.getUser({ id: user.id });
      assert.equal(got.user?.id, user.id);
      assert.equal(got.user?.email, email);
      assert.equal(got.user?.fullName, "Ada Lovelace");
    });

    it("lists users newest first, page by page", async () => {
      const mine = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const { user } = await users.createUser({ email: uniqueEmail(`list${i}`), fullName: `Lister ${i}` });
        assert.ok(user);
        mine.add(user.id);
      }
      const seen: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await users.listUsers({ pageSize: 2, pageToken });
        assert.ok(page.users.length <= 2, `page of ${page.users.length}`);
        assert.ok(page.users.length > 0 || page.nextPageToken === "", "an empty page is the last one");
        seen.push(...page.users.map((u) => u.id));
        pageToken = page.nextPageToken;
        pages++;
        if (seen.length >= mine.size && [...mine].every((id) => seen.includes(id))) break;
      } while (pageToken !== "" && pages < 500);
      assert.ok(pages >= 3, `5 users at 2 a page take at least 3 pages, took ${pages}`);
      assert.equal(new Set(seen).size, seen.length, "no user appears twice");
      for (const id of mine) assert.ok(seen.includes(id), `user ${id} was listed`);
      const sorted = [...seen].sort().reverse();
      assert.deepEqual(seen, sorted, "newest (largest UUIDv7) first");
    });

    it("rejects a duplicate email, ignoring case, as already_exists at the email field", async () => {
      const email = uniqueEmail("dup");
      await users.createUser({ email, fullName: "First" });
      const err = await rejection(users.createUser({ email: email.toUpperCase(), fullName: "Second" }));
      assert.equal(err.code, Code.AlreadyExists);
      assert.deepEqual(formErrorOf(err), {
        code: Code.AlreadyExists,
        field: "email",
        message: "A user with this email already exists.",
        network: false,
      });
    });

    it("rejects an invalid email as invalid_argument naming the field", async () => {
      const err = await rejection(users.createUser({ email: "not-an-email", fullName: "Someone" }));
      assert.equal(err.code, Code.InvalidArgument);
      const [detail] = err.findDetails(BadRequestSchema);
      assert.equal(detail?.fieldViolations[0]?.field, "email");
      const fe = formErrorOf(err);
      assert.equal(fe.field, "email");
      assert.match(fe.message, /^Email must be a single address like name@example\.com\.$/);
      assert.equal(fe.network, false);
    });

    it("rejects an empty full name at the full_name field", async () => {
      const err = await rejection(users.createUser({ email: uniqueEmail("noname"), fullName: "   " }));
      assert.equal(err.code, Code.InvalidArgument);
      assert.deepEqual(formErrorOf(err), {
        code: Code.InvalidArgument,
        field: "full_name",
        message: "Full name is required.",
        network: false,
      });
    });

    it("answers not_found for an unknown id, invalid_argument for a malformed one", async () => {
      const unknown = "01900000-0000-7000-8000-000000000000";
      const nf = await rejection(users.getUser({ id: unknown }));
      assert.equal(nf.code, Code.NotFound);
      assert.deepEqual(formErrorOf(nf), { code: Code.NotFound, field: "id", message: "No user has this id.", network: false });

      const bad = await rejection(users.getUser({ id: "42" }));
      assert.equal(bad.code, Code.InvalidArgument);
      assert.equal(formErrorOf(bad).field, "id");
    });

    it("rejects a page token it did not issue at the page_token field", async () => {
      const err = await rejection(users.listUsers({ pageToken: "!!not-a-token!!" }));
      assert.equal(err.code, Code.InvalidArgument);
      assert.equal(formErrorOf(err).field, "page_token");
    });
  });
}

describe("an unreachable server", () => {
  it("is a network error for the fetch clients", async () => {
    const port = await closedPort();
    for (const protocol of ["connect", "grpc-web"] as const) {
      const users = createUserClient(`http://127.0.0.1:${port}`, { protocol });
      const fe = formErrorOf(await rejection(users.getUser({ id: "01900000-0000-7000-8000-000000000000" })));
      assert.equal(fe.network, true, `${protocol}: ${JSON.stringify(fe)}`);
      assert.equal(fe.field, undefined);
      assert.match(fe.message, /^Cannot reach the server/);
    }
  });

  it("is a network error for the Node HTTP/2 transports", async () => {
    const port = await closedPort();
    const sm = new Http2SessionManager(`http://127.0.0.1:${port}`);
    try {
      const users = node(createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, sessionManager: sm }));
      const fe = formErrorOf(await rejection(users.listUsers({})));
      assert.equal(fe.network, true, JSON.stringify(fe));
    } finally {
      sm.abort();
    }
  });
});
