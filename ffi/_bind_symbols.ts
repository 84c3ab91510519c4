/**
 * Binds a shared library's functions without Deno's per-symbol fast-call
 * trampolines: the library is opened with every symbol as a `pointer` static
 * (its address, about 4 µs each), and each function is called through a
 * `Deno.UnsafeFnPointer` (about 1 µs a call). Binding functions the usual way
 * costs 40-170 µs per synchronous symbol; enarx makes a few hundred calls per
 * run, so the slower calls cost well under a millisecond. Private to ffi/.
 *
 * Symbols may also be bound in two groups: those named as eager at once, the
 * rest together on the first use of any of them (one more `Deno.dlopen` of
 * the library already loaded). Each symbol bound costs about 10 µs of start-up,
 * and `enarx run` uses fewer than half of libwasmtime's.
 *
 * @module
 */

/** Opens `path` with `symbols` as statics and wraps each address as a function. */
function bindGroup(
  path: string,
  symbols: Record<string, Deno.ForeignFunction>,
): Record<string, unknown> {
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
  return bound;
}

/**
 * Binds `symbols` of the library at `path`: opens it with each symbol as a
 * `pointer` static (the symbol's address) and wraps each address in a
 * `Deno.UnsafeFnPointer` with the symbol's definition. Same result as
 * `Deno.dlopen(path, symbols).symbols`, without compiling a trampoline per
 * symbol.
 *
 * With `lazy.eager`, only those symbols are bound now; every other one is a
 * getter that, on the first use of any of them, binds them all, or throws
 * what `lazy.failure` makes of the error (e.g. for a symbol the library
 * lacks), as the loading would have.
 */
export function bindSymbols<S extends Record<string, Deno.ForeignFunction>>(
  path: string,
  symbols: S,
  lazy?: { eager: readonly (keyof S & string)[]; failure: (error: unknown) => Error },
): Deno.DynamicLibrary<S>["symbols"] {
  if (lazy === undefined) return bindGroup(path, symbols) as Deno.DynamicLibrary<S>["symbols"];
  const { eager, failure } = lazy;
  const now = new Set<string>(eager);
  const pick = (inGroup: boolean) =>
    Object.fromEntries(Object.entries(symbols).filter(([key]) => now.has(key) === inGroup));
  const bound = bindGroup(path, pick(true));
  const later = Object.keys(symbols).filter((key) => !now.has(key));
  const bindLater = () => {
    let rest: Record<string, unknown>;
    try {
      rest = bindGroup(path, pick(false));
    } catch (error) {
      throw failure(error);
    }
    for (const key of later) {
      Object.defineProperty(bound, key, { value: rest[key], enumerable: true, writable: true });
    }
  };
  for (const key of later) {
    Object.defineProperty(bound, key, {
      configurable: true,
      enumerable: true,
      get() {
        bindLater();
        return bound[key];
      },
    });
  }
  return bound as Deno.DynamicLibrary<S>["symbols"];
}
