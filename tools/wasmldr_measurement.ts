/**
 * Prints the measurement of this checkout's wasmldr (runtime/keep/measurement.ts)
 * as hex: compile.sh embeds it in the single binary, and an operator can put
 * it in a policy's `measurements`.
 *
 *     deno run -A tools/wasmldr_measurement.ts
 *
 * @module
 */
import { wasmldrMeasurement } from "../runtime/keep/measurement.ts";

const measurement = await wasmldrMeasurement();
console.log(Array.from(measurement, (b) => b.toString(16).padStart(2, "0")).join(""));
