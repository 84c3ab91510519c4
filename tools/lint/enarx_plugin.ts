/**
 * enarx's own lint rules, loaded by `deno lint` through deno.json's
 * `lint.plugins`:
 *
 * - `enarx/max-function-lines`: a function in the product's code (`cli/`,
 *   `runtime/`, `ffi/`, `mod.ts`) spans at most {@link MAX_FUNCTION_LINES}
 *   lines; longer ones are split into named steps (ARCHITECTURE.md). Tests,
 *   benchmarks and tools are exempt.
 *
 * Deno's plugin interface takes the plugin object as the module's default
 * export, the one place where enarx has one.
 *
 * @module
 */

/** The longest function, in lines from its first to its last. */
export const MAX_FUNCTION_LINES = 80;

const PRODUCT = /\/(cli|runtime|ffi)\/|\/mod\.ts$/;

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

function functionName(node: Deno.lint.Node): string {
  const parent = (node as { parent?: Deno.lint.Node }).parent;
  if (node.type === "FunctionDeclaration" && node.id) return node.id.name;
  if (parent?.type === "MethodDefinition" && parent.key.type === "Identifier") {
    return parent.key.name;
  }
  if (parent?.type === "VariableDeclarator" && parent.id.type === "Identifier") {
    return parent.id.name;
  }
  if (parent?.type === "Property" && parent.key.type === "Identifier") return parent.key.name;
  return "(anonymous)";
}

const plugin: Deno.lint.Plugin = {
  name: "enarx",
  rules: {
    "max-function-lines": {
      create(context) {
        if (!PRODUCT.test(context.filename)) return {};
        const text = context.sourceCode.text;
        const check = (
          node:
            | Deno.lint.FunctionDeclaration
            | Deno.lint.FunctionExpression
            | Deno.lint.ArrowFunctionExpression,
        ) => {
          const lines = lineOf(text, node.range[1]) - lineOf(text, node.range[0]) + 1;
          if (lines <= MAX_FUNCTION_LINES) return;
          context.report({
            node,
            message: `Function "${
              functionName(node)
            }" spans ${lines} lines (at most ${MAX_FUNCTION_LINES})`,
            hint: "Split it into named steps",
          });
        };
        return {
          FunctionDeclaration: check,
          FunctionExpression: check,
          ArrowFunctionExpression: check,
        };
      },
    },
  },
};

export default plugin;
