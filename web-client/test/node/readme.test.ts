// README.md quotes src/example.ts, which the typecheck compiles: keep them equal.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { it } from "node:test";

it("README.md quotes src/example.ts verbatim", async () => {
  const root = new URL("../../", import.meta.url);
  const readme = await readFile(new URL("README.md", root), "utf8");
  const example = await readFile(new URL("src/example.ts", root), "utf8");
  const quoted = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.equal(quoted, example, "update the README's first ts block from src/example.ts");
});
