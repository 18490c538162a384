// formErrorOf on errors built here, for the cases the live server under
// test does not produce (its rate limits are off).

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";

import { STALE_MESSAGE, formErrorOf, isPermissionDenied, isStale, isUnauthenticated } from "../../src/index.js";

describe("formErrorOf", () => {
  it("tells a rate limit (with Retry-After) from a request that is too large", () => {
    const limited = new ConnectError("too many requests: retry after 3 s", Code.ResourceExhausted, { "Retry-After": "3" });
    assert.deepEqual(formErrorOf(limited), { code: Code.ResourceExhausted, message: "Too many requests. Try again in 3 s.", network: false });
    const noHeader = new ConnectError("too many requests: retry after 1 s", Code.ResourceExhausted);
    assert.equal(formErrorOf(noHeader).message, "Too many requests. Try again in a moment.");
    const large = new ConnectError("message size 70000 is larger than configured max 65536", Code.ResourceExhausted);
    assert.equal(formErrorOf(large).message, "The request is too large.");
  });

  it("says Not allowed with the server's reason, and asks to sign in when unauthenticated", () => {
    const denied = new ConnectError("permission denied: this call needs the users:write scope", Code.PermissionDenied);
    assert.deepEqual(formErrorOf(denied), {
      code: Code.PermissionDenied,
      message: "Not allowed: this call needs the users:write scope.",
      network: false,
    });
    assert.equal(formErrorOf(new ConnectError("", Code.PermissionDenied)).message, "Not allowed.");
    assert.ok(isPermissionDenied(denied));
    assert.ok(!isUnauthenticated(denied));

    const unauth = new ConnectError("a bearer token is required", Code.Unauthenticated);
    assert.match(formErrorOf(unauth).message, /^Sign in first/);
    assert.equal(formErrorOf(unauth).field, undefined);
    assert.ok(isUnauthenticated(unauth));
  });

  it("puts a taken email at the email field, and a second self sign-up at no field", () => {
    assert.equal(formErrorOf(new ConnectError("email already taken", Code.AlreadyExists)).field, "email");
    assert.deepEqual(formErrorOf(new ConnectError("this account already has a user", Code.AlreadyExists)), {
      code: Code.AlreadyExists,
      message: "This account already has a user.",
      network: false,
    });
  });

  it("says a stale etag (failed_precondition) is about the whole user, and offers a reload", () => {
    const stale = new ConnectError("the user has changed since that etag was read; read it again", Code.FailedPrecondition);
    assert.deepEqual(formErrorOf(stale), { code: Code.FailedPrecondition, message: STALE_MESSAGE, network: false });
    assert.match(STALE_MESSAGE, /reload/);
    assert.ok(isStale(stale));
    assert.ok(!isStale(new ConnectError("email already taken", Code.AlreadyExists)));
  });
});
