// An empty module: `deno run` of it is the start-up floor that Deno itself sets (bench/run.sh).
