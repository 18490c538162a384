// Read-your-writes: every write answers with a Consistency-Token, and the
// client's consistencyInterceptor sends the newest one back on every later
// call, unary or stream, over Connect and gRPC-Web. The calls are observed
// through a fetch that records the headers going out and coming back. The
// usersd under test has no replicas, so what is checked here is the
// exchange of tokens; that a replica honours them is the Go tests' part.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Code } from "@connectrpc/connect";

import { CONSISTENCY_HEADER, consistencyInterceptor, createUserClient, formErrorOf, type Protocol } from "../../src/index.js";
import { adminToken, rejection, uniqueEmail, usersdUrl } from "../support.js";

interface Exchange {
  /** The procedure called: "CreateUser", ... */
  procedure: string;
  /** Its Consistency-Token request header, "" when none. */
  sent: string;
  /** The response's, "" when none (or no response yet). */
  got: string;
}

/** A fetch that records the Consistency-Token of every call both ways. */
function recorder(inner: typeof fetch = fetch): { fetch: typeof fetch; calls: Exchange[]; last(procedure: string): Exchange } {
  const calls: Exchange[] = [];
  return {
    calls,
    fetch: async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      const call = {
        procedure: url.split("/").at(-1) ?? "",
        sent: new Headers(init?.headers).get(CONSISTENCY_HEADER) ?? "",
        got: "",
      };
      calls.push(call);
      const res = await inner(input, init);
      call.got = res.headers.get(CONSISTENCY_HEADER) ?? "";
      return res;
    },
    last(procedure) {
      const c = calls.filter((x) => x.procedure === procedure).at(-1);
      assert.ok(c, `no ${procedure} call`);
      return c;
    },
  };
}

const token = () => adminToken;
const protocols: Array<[Protocol, string]> = [
  ["connect", "Connect"],
  ["grpc-web", "gRPC-Web"],
];

describe("consistency tokens", () => {
  for (const [protocol, label] of protocols) {
    it(`a write answers with one and every later read sends it back, over ${label}`, async () => {
      const rec = recorder();
      const consistency = consistencyInterceptor();
      const users = createUserClient(usersdUrl, { protocol, token, consistency, fetch: rec.fetch });

      await users.listUsers({ pageSize: 1 });
      assert.deepEqual(rec.last("ListUsers"), { procedure: "ListUsers", sent: "", got: "" }, "none before a write, and a read answers none");
      assert.equal(consistency.token, undefined);

      const { user } = await users.createUser({ email: uniqueEmail(`token-${protocol}`), fullName: "Token Holder" });
      assert.ok(user);
      const created = rec.last("CreateUser").got;
      assert.notEqual(created, "", "the create answered with a token");
      assert.equal(consistency.token, created);
      await users.getUser({ id: user.id });
      assert.deepEqual(rec.last("GetUser"), { procedure: "GetUser", sent: created, got: "" });

      const { user: renamed } = await users.updateUser({ user: { id: user.id, etag: user.etag, fullName: "Token Renamed" }, updateMask: { paths: ["full_name"] } });
      const updated = rec.last("UpdateUser");
      assert.equal(updated.sent, created, "writes send it too");
      assert.notEqual(updated.got, "");
      assert.notEqual(updated.got, created, "a later write, a later token");
      const found = await users.listUsers({ email: user.email });
      assert.equal(rec.last("ListUsers").sent, updated.got, "the newest token");
      assert.equal(found.users[0]?.fullName, "Token Renamed");

      // The change feed is read too: its page and its stream send it.
      await users.listUserEvents({ after: "", pageSize: 1 });
      assert.equal(rec.last("ListUserEvents").sent, updated.got);
      const ctl = new AbortController();
      let open = () => {};
      const opened = new Promise<void>((resolve) => (open = resolve));
      const watching = (async () => {
        for await (const _ of users.watchUserEvents({ after: "" }, { signal: ctl.signal, timeoutMs: 0, onHeader: () => open() })) {
          // the events are not the point
        }
      })().catch(() => {});
      await opened;
      ctl.abort();
      await watching;
      assert.equal(rec.last("WatchUserEvents").sent, updated.got);

      await users.deleteUser({ id: user.id, etag: renamed?.etag ?? "" });
      const deleted = rec.last("DeleteUser").got;
      assert.notEqual(deleted, "");
      assert.equal((await rejection(users.getUser({ id: user.id }))).code, Code.NotFound);
      assert.equal(rec.last("GetUser").sent, deleted, "a failed read sends it too");
      assert.equal(consistency.token, deleted, "a read's answer leaves it as it was");
    });
  }

  it("is kept per client by default, shared when one interceptor serves two, and off with consistency: false", async () => {
    const own = recorder();
    const users = createUserClient(usersdUrl, { token, fetch: own.fetch });
    const { user } = await users.createUser({ email: uniqueEmail("token-default"), fullName: "Default Client" });
    assert.ok(user);
    await users.getUser({ id: user.id });
    assert.equal(own.last("GetUser").sent, own.last("CreateUser").got);
    assert.notEqual(own.last("GetUser").sent, "");

    // A write over Connect, then a read over gRPC-Web, as the demo page does.
    const shared = recorder();
    const consistency = consistencyInterceptor();
    const connect = createUserClient(usersdUrl, { protocol: "connect", token, consistency, fetch: shared.fetch });
    const grpcWeb = createUserClient(usersdUrl, { protocol: "grpc-web", token, consistency, fetch: shared.fetch });
    await connect.updateUser({ user: { id: user.id, fullName: "Shared Token" }, updateMask: { paths: ["full_name"] } });
    assert.equal((await grpcWeb.getUser({ id: user.id })).user?.fullName, "Shared Token");
    assert.equal(shared.last("GetUser").sent, shared.last("UpdateUser").got);
    assert.notEqual(shared.last("GetUser").sent, "");

    const off = recorder();
    const plain = createUserClient(usersdUrl, { token, consistency: false, fetch: off.fetch });
    await plain.deleteUser({ id: user.id });
    assert.notEqual(off.last("DeleteUser").got, "", "the answer still carries one");
    await rejection(plain.getUser({ id: user.id }));
    assert.equal(off.last("GetUser").sent, "", "but it is not sent back");
  });

  it("keeps the token of a stream's headers and of an error's, and leaves a token the call sets alone", async () => {
    // Answers of the test's own: usersd sends no token on these.
    const envelope = (flags: number, json: string) => {
      const data = Buffer.from(json);
      const head = Buffer.alloc(5);
      head[0] = flags;
      head.writeUInt32BE(data.length, 1);
      return Buffer.concat([head, data]);
    };
    let answer: () => Response = () => new Response(null, { status: 500 });
    const rec = recorder(async () => answer());
    const consistency = consistencyInterceptor();
    const users = createUserClient("http://127.0.0.1:9", { consistency, fetch: rec.fetch });

    answer = () =>
      new Response(envelope(2, "{}"), { status: 200, headers: { "Content-Type": "application/connect+json", [CONSISTENCY_HEADER]: "from-a-stream" } });
    for await (const _ of users.watchUserEvents({})) assert.fail("no events");
    assert.equal(consistency.token, "from-a-stream");

    answer = () =>
      new Response(JSON.stringify({ code: "aborted", message: "after the commit" }), {
        status: 409,
        headers: { "Content-Type": "application/json", [CONSISTENCY_HEADER]: "from-an-error" },
      });
    assert.equal((await rejection(users.createUser({ email: uniqueEmail("fake"), fullName: "Fake" }))).code, Code.Aborted);
    assert.equal(rec.last("CreateUser").sent, "from-a-stream");
    assert.equal(consistency.token, "from-an-error");

    answer = () => new Response(JSON.stringify({ users: [] }), { status: 200, headers: { "Content-Type": "application/json" } });
    await users.listUsers({}, { headers: { [CONSISTENCY_HEADER]: "chosen-by-the-caller" } });
    assert.equal(rec.last("ListUsers").sent, "chosen-by-the-caller");
    assert.equal(consistency.token, "from-an-error");
  });

  for (const [protocol, label] of protocols) {
    it(`refuses a malformed or altered token as invalid_argument, over ${label}`, async () => {
      const rec = recorder();
      const users = createUserClient(usersdUrl, { protocol, token, fetch: rec.fetch });
      await users.createUser({ email: uniqueEmail(`token-bad-${protocol}`), fullName: "Bad Token" });
      const real = rec.last("CreateUser").got;
      assert.notEqual(real, "");
      // The same length, one character changed: its check no longer matches.
      const altered = real.slice(0, -1) + (real.endsWith("A") ? "B" : "A");
      for (const bad of ["not-a-token", altered]) {
        const err = await rejection(users.listUsers({ pageSize: 1 }, { headers: { [CONSISTENCY_HEADER]: bad } }));
        assert.equal(err.code, Code.InvalidArgument, `${bad}: ${err.message}`);
        assert.match(err.rawMessage, /Consistency-Token/, "names the header");
        assert.equal(formErrorOf(err).field, undefined, "not a form's field");
        assert.equal(rec.last("ListUsers").sent, bad, "sent as given");
      }
      const email = uniqueEmail("token-bad-write");
      const err = await rejection(users.createUser({ email, fullName: "Never Written" }, { headers: { [CONSISTENCY_HEADER]: "not-a-token" } }));
      assert.equal(err.code, Code.InvalidArgument, "on a write too");
      assert.deepEqual((await users.listUsers({ email })).users, [], "which wrote nothing");
    });
  }

  it("works over REST: writes answer with it, reads take it, a malformed one is 400", async () => {
    const rest = (method: string, path: string, headers: Record<string, string> = {}, body?: unknown) =>
      fetch(`${usersdUrl}${path}`, {
        method,
        headers: { Authorization: `Bearer ${adminToken}`, "Content-Type": "application/json", ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    const created = await rest("POST", "/users", {}, { email: uniqueEmail("token-rest"), full_name: "Rest Token" });
    assert.equal(created.status, 201, await created.clone().text());
    const written = created.headers.get(CONSISTENCY_HEADER) ?? "";
    assert.notEqual(written, "");
    const { id } = (await created.json()) as { id: string };

    const got = await rest("GET", `/users/${id}`, { [CONSISTENCY_HEADER]: written });
    assert.equal(got.status, 200);
    assert.equal(got.headers.get(CONSISTENCY_HEADER), null, "a read answers none");

    const bad = await rest("GET", `/users/${id}`, { [CONSISTENCY_HEADER]: "not-a-token" });
    assert.equal(bad.status, 400, await bad.clone().text());
    assert.match(await bad.text(), /Consistency-Token/);

    const patched = await rest("PATCH", `/users/${id}`, {}, { full_name: "Rest Renamed" });
    assert.equal(patched.status, 200, await patched.clone().text());
    assert.notEqual(patched.headers.get(CONSISTENCY_HEADER) ?? "", "");
    const removed = await rest("DELETE", `/users/${id}`);
    assert.equal(removed.status, 204);
    assert.notEqual(removed.headers.get(CONSISTENCY_HEADER) ?? "", "");
  });

  it("is allowed and exposed by CORS", async () => {
    const origin = `http://127.0.0.1:${process.env["CORS_ORIGIN_PORT"] ?? ""}`;
    const url = `${usersdUrl}/users.v1.UserService/CreateUser`;
    const preflight = await fetch(url, {
      method: "OPTIONS",
      headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "consistency-token,content-type" },
    });
    assert.ok(preflight.ok, `preflight ${preflight.status}`);
    assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /consistency-token/i, "allowed on requests");
    const res = await fetch(url, {
      method: "POST",
      headers: { Origin: origin, Authorization: `Bearer ${adminToken}`, "Content-Type": "application/json" },
      body: JSON.stringify({ email: uniqueEmail("token-cors"), fullName: "Cors Token" }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.match(res.headers.get("access-control-expose-headers") ?? "", /consistency-token/i, "exposed to the page");
  });
});
