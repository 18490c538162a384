// Shared helpers of the Node and browser tests. scripts/test.sh starts
// usersd and passes its address in USERSD_URL.

import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

export function env(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === "") {
    throw new Error(`${name} is not set: run the tests through scripts/test.sh`);
  }
  return v;
}

/** Where the usersd under test listens, e.g. http://127.0.0.1:41234 */
export const usersdUrl = env("USERSD_URL").replace(/\/+$/, "");

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
