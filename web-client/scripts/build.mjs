// build.mjs writes dist/: the page's HTML and CSS from public/ and one
// bundle (app.js) of src/page/main.ts with its dependencies.
import { cp, mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = `${root}/dist`;

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await cp(`${root}/public`, dist, { recursive: true });
await esbuild.build({
  absWorkingDir: root,
  entryPoints: ["src/page/main.ts"],
  outfile: "dist/app.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  sourcemap: "linked",
  legalComments: "none",
  logLevel: "warning",
  metafile: true,
}).then((r) => {
  const bytes = Object.values(r.metafile.outputs).find((o) => o.entryPoint)?.bytes ?? 0;
  console.log(`web-client: built dist/ (app.js ${(bytes / 1024).toFixed(1)} KiB)`);
});
