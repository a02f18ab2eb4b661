#!/usr/bin/env node
// Builds a JavaScript or TypeScript flow into a Sluice component.
//
//   node guest-sdk/js/build.mjs FLOW.js|FLOW.ts OUT.wasm
//
// FLOW imports from 'sluice-sdk' and registers flows/tasks with flow()/task().
// Its folder's .js/.mjs/.ts/.mts files are staged with the SDK into a scratch
// folder (TypeScript stripped of its types by the pinned TypeScript compiler,
// without type checking; bare 'sluice-sdk' imports rewritten to the staged
// copy), and componentize-js builds the world `flow` of the repository's WIT.
// Prints the output path and its sha256.
//
// Env: SLUICE_JS_TOOLCHAIN  where the pinned toolchain lives (default
//                           <repo>/target/js-toolchain; installed with `npm ci`
//                           from guest-sdk/js/toolchain on first use)
//      SLUICE_WIT           the WIT folder (default <repo>/wit/v0.2, sluice:flow@0.2.0)

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..', '..');
const TOOLCHAIN_SPEC = join(HERE, 'toolchain');
const TOOLCHAIN = resolve(process.env.SLUICE_JS_TOOLCHAIN || join(REPO, 'target', 'js-toolchain'));
const WIT = resolve(process.env.SLUICE_WIT || join(REPO, 'wit', 'v0.2'));
const SDK_SPECIFIER = /(\bfrom\s*|\bimport\s*\(?\s*)(['"])sluice-sdk\2/g;

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(2);
}

const [flowArg, outArg] = process.argv.slice(2);
if (!flowArg || !outArg) fail('usage: node guest-sdk/js/build.mjs FLOW.js|FLOW.ts OUT.wasm');
const flowPath = resolve(flowArg);
const outPath = resolve(outArg);
if (!existsSync(flowPath) || !statSync(flowPath).isFile()) fail(`${flowArg}: no such file`);
if (!existsSync(join(WIT, 'flow.wit'))) fail(`${WIT}: no flow.wit here (set SLUICE_WIT to the repository's wit/v0.2 folder)`);
if (!new RegExp(SDK_SPECIFIER.source).test(readFileSync(flowPath, 'utf8'))) {
  fail(`${flowArg}: does not import from 'sluice-sdk' (write \`import { flow, task } from 'sluice-sdk'\`)`);
}

ensureToolchain();
const { componentize } = await import(
  pathToFileURL(join(TOOLCHAIN, 'node_modules', '@bytecodealliance', 'componentize-js', 'src', 'componentize.js')).href
);

const work = mkdtempSync(join(tmpdir(), 'sluice-js-'));
try {
  const entry = stage(work);
  // componentize-js maps the current folder into the engine at build time:
  // build from the scratch folder so only staged files are visible.
  process.chdir(work);
  let component;
  try {
    ({ component } = await componentize({
      sourcePath: entry,
      witPath: WIT,
      worldName: 'flow',
      // No outbound HTTP from the engine itself: a flow gets no network unless granted.
      disableFeatures: ['http', 'fetch-event'],
    }));
  } catch (e) {
    fail(`${flowArg}: componentize failed:\n${String(e.message || e).replaceAll(work + '/', '')}`);
  }
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, component);
  const digest = createHash('sha256').update(component).digest('hex');
  console.log(`built ${outPath}`);
  console.log(`sha256:${digest} (${component.length} bytes)`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

// Installs the pinned jco/componentize-js with `npm ci` unless the cache
// already holds exactly the committed lockfile.
function ensureToolchain() {
  const lock = readFileSync(join(TOOLCHAIN_SPEC, 'package-lock.json'), 'utf8');
  const cachedLock = join(TOOLCHAIN, 'package-lock.json');
  const ready =
    existsSync(join(TOOLCHAIN, 'node_modules', '@bytecodealliance', 'componentize-js')) &&
    existsSync(cachedLock) &&
    readFileSync(cachedLock, 'utf8') === lock;
  if (ready) return;
  console.error(`installing the JavaScript toolchain (jco, componentize-js) into ${TOOLCHAIN} ...`);
  mkdirSync(TOOLCHAIN, { recursive: true });
  cpSync(join(TOOLCHAIN_SPEC, 'package.json'), join(TOOLCHAIN, 'package.json'));
  cpSync(join(TOOLCHAIN_SPEC, 'package-lock.json'), cachedLock);
  try {
    execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: TOOLCHAIN, stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (e) {
    rmSync(cachedLock, { force: true });
    fail(`npm ci in ${TOOLCHAIN} failed (needs node >= 18 and npm with access to the registry): ${e.message}`);
  }
}

// Copies the flow's folder (sources only) and the SDK into `work`, and writes
// the entry module that exports the world's functions.
function stage(work) {
  // The flow's files at the root, so stack frames read `flow.js:12:5`.
  copySources(dirname(flowPath), work, 0);
  stripTypes(work, dirname(flowPath));
  const sdk = join(work, '__sluice__', 'sluice-sdk.js');
  mkdirSync(dirname(sdk), { recursive: true });
  cpSync(join(HERE, 'src', 'index.js'), sdk);
  rewriteSdkImports(work, sdk);
  const entry = join(work, '__sluice__', 'entry.js');
  const docs = JSON.stringify(readJsDocs(work));
  writeFileSync(
    entry,
    `import '../${jsName(basename(flowPath))}';\nimport { __applyJsDoc, __requireFlows } from './sluice-sdk.js';\n` +
      `__requireFlows(${JSON.stringify(jsName(basename(flowPath)))});\n__applyJsDoc(${docs});\n` +
      `export { describe, runFlow, runTask } from './sluice-sdk.js';\n`,
  );
  return entry;
}

function copySources(from, to, depth) {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
    const src = join(from, entry.name);
    if (entry.isDirectory() && depth < 8) copySources(src, join(to, entry.name), depth + 1);
    else if (entry.isFile() && /\.(m?[jt]s|json)$/.test(entry.name) && !/\.d\.m?ts$/.test(entry.name)) {
      cpSync(src, join(to, entry.name));
    }
  }
}

// `flow.ts` is staged as `flow.js` (and `x.mts` as `x.mjs`).
function jsName(name) {
  return name.replace(/\.ts$/, '.js').replace(/\.mts$/, '.mjs');
}

// Replaces every staged .ts/.mts file by its JavaScript: types stripped
// (enums and other TypeScript-only syntax compiled), no type checking, and
// relative imports of `./x.ts` rewritten to `./x.js`. A syntax error names
// the user's file, line and column.
function stripTypes(dir, userDir) {
  let ts;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !/\.m?ts$/.test(entry.name)) continue;
    const path = join(entry.parentPath ?? entry.path, entry.name);
    ts ??= createRequire(import.meta.url)(join(TOOLCHAIN, 'node_modules', 'typescript-compiler-api'));
    const shown = relative(process.cwd(), join(userDir, relative(dir, path))) || entry.name;
    const { outputText, diagnostics } = ts.transpileModule(readFileSync(path, 'utf8'), {
      fileName: entry.name,
      reportDiagnostics: true,
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        rewriteRelativeImportExtensions: true,
        removeComments: false,
      },
    });
    const errors = (diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
    if (errors.length) {
      fail(
        errors
          .map((d) => {
            const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
            if (!d.file || d.start === undefined) return `${shown}: ${message}`;
            const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
            return `${shown}:${line + 1}:${character + 1}: ${message}`;
          })
          .join('\n'),
      );
    }
    rmSync(path);
    writeFileSync(jsName(path), outputText);
  }
}

function rewriteSdkImports(dir, sdkPath) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== '__sluice__') rewriteSdkImports(path, sdkPath);
    } else if (/\.m?js$/.test(entry.name)) {
      const sdk = relative(dirname(path), sdkPath);
      const text = readFileSync(path, 'utf8');
      writeFileSync(path, text.replace(SDK_SPECIFIER, (_, pre, q) => `${pre}${q}${sdk.startsWith('.') ? sdk : './' + sdk}${q}`));
    }
  }
}

// JSDoc blocks right above `function NAME(` or `x = flow(function NAME(`:
// { NAME: { description, params: { p: { type, description, optional, default } } } }.
function readJsDocs(dir, docs = {}) {
  const pattern =
    /\/\*\*([\s\S]*?)\*\/\s*(?:export\s+)?(?:(?:const|let|var)\s+[\w$]+\s*=\s*)?(?:(?:flow|task)\s*\(\s*)?(?:async\s+)?function\s*\*?\s*([\w$]+)\s*\(/g;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== '__sluice__') readJsDocs(path, docs);
      continue;
    }
    if (!/\.m?js$/.test(entry.name)) continue;
    for (const [, body, name] of readFileSync(path, 'utf8').matchAll(pattern)) docs[name] = parseJsDoc(body);
  }
  return docs;
}

function parseJsDoc(body) {
  const lines = body.split('\n').map((l) => l.replace(/^\s*\*\s?/, '').trimEnd());
  const description = [];
  const params = {};
  let inTags = false;
  for (const line of lines) {
    if (line.trim().startsWith('@')) inTags = true;
    if (!inTags) {
      if (line.trim()) description.push(line.trim());
      continue;
    }
    const tag = /^\s*@param\s+(?:\{([^}]*)\}\s*)?(\[(?:[^\[\]]|\[[^\]]*\])+\]|[\w$]+)\s*(?:-\s*)?(.*)$/.exec(line);
    if (!tag) continue;
    let [, type = '', target, text] = tag;
    let optional = type.trim().endsWith('=');
    if (optional) type = type.trim().slice(0, -1);
    let value;
    if (target.startsWith('[')) {
      optional = true;
      const [n, ...rest] = target.slice(1, -1).split('=');
      target = n.trim();
      if (rest.length) {
        try {
          value = JSON.parse(rest.join('=').trim().replace(/^'(.*)'$/, '"$1"'));
        } catch {
          value = undefined;
        }
      }
    }
    params[target] = { type, description: text.trim(), optional, ...(value !== undefined ? { default: value } : {}) };
  }
  return { description: description.join(' '), params };
}
