// Shared helpers of the Node and browser tests. scripts/test.sh starts
// usersd and the development issuer and passes their addresses (USERSD_URL,
// ISSUER_URL), an admin token (USERSD_TOKEN), one that manages webhooks
// (USERSD_WEBHOOKS_TOKEN) and what minting more tokens takes (DEVISSUER_BIN,
// ISSUER_ADDR, ISSUER_KEY).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

import { ConnectError } from "@connectrpc/connect";

export function env(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === "") {
    throw new Error(`${name} is not set: run the tests through scripts/test.sh`);
  }
  return v;
}

/** Where the usersd under test listens, e.g. http://127.0.0.1:41234 */
export const usersdUrl = env("USERSD_URL").replace(/\/+$/, "");

/** The development issuer usersd trusts, e.g. http://127.0.0.1:41236 */
export const issuerUrl = env("ISSUER_URL").replace(/\/+$/, "");

/** A token with both scopes (users:read users:write), for tests about something else. */
export const adminToken = env("USERSD_TOKEN");

/** A token with webhooks:admin only. */
export const webhooksToken = env("USERSD_WEBHOOKS_TOKEN");

/**
 * mintToken returns a token from the development issuer for subject with
 * these scopes (none: a token that may only sign itself up), signed with
 * the issuer's key by `devissuer token`. opts.ttl is a Go duration
 * ("-1m" for one that has expired); opts.key another key file (created
 * when missing) for a token usersd must not trust; opts.audience another aud.
 */
export function mintToken(
  subject: string,
  scopes: readonly string[],
  opts: { ttl?: string; key?: string; audience?: string } = {},
): string {
  const args = ["token", "-addr", env("ISSUER_ADDR"), "-audience", opts.audience ?? "usersd", "-key", opts.key ?? env("ISSUER_KEY")];
  args.push("-scope", scopes.join(" "), "-sub", subject, "-ttl", opts.ttl ?? "1h");
  return execFileSync(env("DEVISSUER_BIN"), args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
}

/** A subject no other test uses: tag-<random> */
export function uniqueSubject(tag: string): string {
  return `${tag}-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
}

export const webRoot = fileURLToPath(new URL("..", import.meta.url));
export const distDir = join(webRoot, "dist");
export const resultsDir = process.env["RESULTS_DIR"] ?? join(webRoot, "test-results");

/** An email no other test uses: tag-<random>@example.com */
export function uniqueEmail(tag: string): string {
  return `${tag}-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}@example.com`;
}

export const uuidV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const types: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
};

export interface StaticServer {
  origin: string;
  close(): Promise<void>;
}

/**
 * serveStatic serves dir on 127.0.0.1:port (0 picks a free port): the
 * page on an origin other than usersd's, for the cross-origin tests.
 */
export async function serveStatic(dir: string, port = 0): Promise<StaticServer> {
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const name = normalize(path === "/" ? "/index.html" : path);
      const file = join(dir, name);
      if (!file.startsWith(dir) || !(await stat(file).then((s) => s.isFile(), () => false))) {
        res.writeHead(404).end("not found");
        return;
      }
      res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
      createReadStream(file).pipe(res);
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  const { port: actual } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${actual}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A 127.0.0.1 port that nothing listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const s = await serveStatic(distDir);
  await s.close();
  return Number(new URL(s.origin).port);
}

/** The ConnectError that p rejects with; fails the test when p resolves. */
export async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected the call to fail");
}
