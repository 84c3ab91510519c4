/**
 * Binds a shared library's functions without Deno's per-symbol fast-call
 * trampolines: the library is opened with every symbol as a `pointer` static
 * (its address, about 4 µs each), and each function is called through a
 * `Deno.UnsafeFnPointer` (about 1 µs a call). Binding functions the usual way
 * costs 40-170 µs per synchronous symbol; enarx makes a few hundred calls per
 * run, so the slower calls cost well under a millisecond. Private to ffi/.
 *
 * @module
 */

/**
 * Binds `symbols` of the library at `path`: opens it with each symbol as a
 * `pointer` static (the symbol's address) and wraps each address in a
 * `Deno.UnsafeFnPointer` with the symbol's definition. Same result as
 * `Deno.dlopen(path, symbols).symbols`, without compiling a trampoline per
 * symbol.
 */
export function bindSymbols<S extends Record<string, Deno.ForeignFunction>>(
  path: string,
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] {
  const statics: Record<string, Deno.ForeignStatic<"pointer">> = {};
  for (const [key, def] of Object.entries(symbols)) {
    statics[key] = { name: def.name ?? key, type: "pointer" };
  }
  const addresses = Deno.dlopen(path, statics).symbols as Record<string, Deno.PointerValue>;
  const bound: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(symbols)) {
    const address = addresses[key];
    if (address === null) throw new Error(`Symbol "${def.name ?? key}" has a null address`);
    const { name: _name, ...definition } = def;
    const fn = new Deno.UnsafeFnPointer(address as Deno.PointerObject<never>, definition);
    bound[key] = fn.call.bind(fn);
  }
  return bound as Deno.DynamicLibrary<S>["symbols"];
}
