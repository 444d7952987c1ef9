/**
 * Loads a Convex functions directory for convex-test.
 *
 * convex-test normally gets its modules from Vite's `import.meta.glob`. In
 * plain Node we build the same record by hand: file path (with extension)
 * -> lazy import. convex-test finds the functions root by looking for a key
 * containing `_generated` and strips everything up to it, so the record must
 * include the `_generated` files and every key must share the root prefix.
 */
import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { SchemaDefinition } from "convex/server";

export type ModuleRecord = Record<string, () => Promise<Record<string, unknown>>>;

/** What an exported Convex function looks like at runtime. */
export interface RegisteredFunction {
  isQuery?: boolean;
  isMutation?: boolean;
  isAction?: boolean;
  isInternal?: boolean;
  isPublic?: boolean;
}

export type FunctionKind = "query" | "mutation" | "action";

export interface FunctionsApp {
  dir: string;
  modules: ModuleRecord;
  schema: SchemaDefinition<any, boolean> | undefined;
  /** Table name -> document validator JSON, from the schema. */
  documentTypes: Map<string, unknown>;
  /**
   * Components the app installs, by component path: every subdirectory
   * holding a `convex.config.ts` (a component definition), installed as if
   * by `app.use(component)` under its `defineComponent` name.
   */
  components: Map<string, FunctionsApp>;
}

const SOURCE = /\.(ts|tsx|mts|js|mjs|jsx)$/;

export async function loadFunctionsApp(dir: string): Promise<FunctionsApp> {
  const root = path.resolve(dir);
  if (!statSync(root, { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error(`functions directory not found: ${root}`);
  }
  if (root.includes("_generated")) {
    throw new Error(`the functions directory's path must not contain "_generated": ${root}`);
  }
  return await loadDefinition(root, root);
}

/** One app or component definition directory: its modules, schema and components. */
async function loadDefinition(root: string, dir: string): Promise<FunctionsApp> {
  const componentDirs: string[] = [];
  const modules: ModuleRecord = {};
  for (const file of sourceFiles(dir, componentDirs)) {
    modules[file] = () => import(pathToFileURL(file).href) as Promise<Record<string, unknown>>;
  }
  const where = path.relative(root, dir) || ".";
  if (!Object.keys(modules).some((key) => key.includes(`${path.sep}_generated${path.sep}`))) {
    throw new Error(`${where} has no _generated/ directory (it needs _generated/server.ts and api.ts)`);
  }
  // Evaluate every module now, as a push to a real deployment does, so a
  // broken one stops the server at start rather than failing a call later.
  for (const [file, load] of Object.entries(modules)) {
    try {
      await load();
    } catch (e) {
      throw new Error(`${path.relative(root, file)} failed to load: ${(e as Error)?.stack ?? String(e)}`);
    }
  }
  const schemaFile = Object.keys(modules).find((key) => stripExtension(path.relative(dir, key)) === "schema");
  const schema = schemaFile
    ? ((await modules[schemaFile]!()).default as SchemaDefinition<any, boolean> | undefined)
    : undefined;
  const documentTypes = new Map<string, unknown>();
  for (const [table, definition] of Object.entries(schema?.tables ?? {})) {
    documentTypes.set(table, (definition as { validator: { json: unknown } }).validator.json);
  }
  const components = new Map<string, FunctionsApp>();
  for (const componentDir of componentDirs) {
    const name = await componentName(componentDir);
    if (components.has(name)) {
      throw new Error(`two components are named "${name}" in ${where}`);
    }
    const component = await loadDefinition(root, componentDir);
    if (component.components.size > 0) {
      throw new Error(`${path.relative(root, componentDir)}: nested components are not supported`);
    }
    components.set(name, component);
  }
  return { dir, modules, schema, documentTypes, components };
}

/**
 * The name a component is installed under: the name its `convex.config.ts`
 * gives `defineComponent(name)`, else its directory's name.
 */
async function componentName(dir: string): Promise<string> {
  const config = sourceFileNamed(dir, "convex.config");
  let name: unknown;
  if (config !== undefined) {
    const exports = (await import(pathToFileURL(config).href)) as { default?: { _name?: unknown } };
    name = exports.default?._name;
  }
  const chosen = typeof name === "string" && name !== "" ? name : path.basename(dir);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(chosen)) {
    throw new Error(`${dir}: component name "${chosen}" is not an identifier`);
  }
  return chosen;
}

function sourceFileNamed(dir: string, base: string): string | undefined {
  for (const ext of ["ts", "mts", "js", "mjs"]) {
    const file = path.join(dir, `${base}.${ext}`);
    if (statSync(file, { throwIfNoEntry: false })?.isFile()) {
      return file;
    }
  }
  return undefined;
}

/**
 * The module for a Convex module path ("leads", "dir/leads"), or undefined
 * if there is none. Node caches imports, so this is the same module object
 * convex-test runs.
 */
export async function importModule(
  app: FunctionsApp,
  modulePath: string,
): Promise<Record<string, unknown> | undefined> {
  const wanted = path.join(app.dir, modulePath);
  for (const [file, load] of Object.entries(app.modules)) {
    if (stripExtension(file) === wanted) {
      return await load();
    }
  }
  return undefined;
}

export function kindOf(fn: RegisteredFunction): FunctionKind | undefined {
  return fn.isQuery ? "query" : fn.isMutation ? "mutation" : fn.isAction ? "action" : undefined;
}

function stripExtension(file: string): string {
  return file.replace(SOURCE, "");
}

/**
 * The files Convex would treat as modules: sources, not declarations, not
 * names with more than one dot (`foo.test.ts`, `convex.config.ts`), not
 * hidden or node_modules. A subdirectory holding a `convex.config.ts` is a
 * component definition, not part of this one: it goes to `componentDirs`.
 */
function sourceFiles(dir: string, componentDirs: string[]): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith(".") || entry.name === "node_modules") {
      continue;
    }
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (sourceFileNamed(full, "convex.config") !== undefined) {
        componentDirs.push(full);
      } else {
        out.push(...sourceFiles(full, componentDirs));
      }
    } else if (SOURCE.test(entry.name) && entry.name.split(".").length === 2) {
      out.push(full);
    }
  }
  return out.sort();
}
