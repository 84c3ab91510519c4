/** Enarx.toml parsing: Enarx's schema, preopened dirs, and clear errors. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ConfigError,
  ConfigUnsupportedError,
  defaultConfig,
  loadEnarxConfig,
  parseDeployedConfig,
  parseEnarxConfig,
} from "../../runtime/wasm/config.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { guestArgv, guestEnv, guestPreopens } from "../../runtime/wasm/workload.ts";

Deno.test("config: an empty file is Enarx's default", () => {
  assert.deepEqual(parseEnarxConfig(""), defaultConfig());
});

Deno.test("config: args, env, files with names, steward, dirs", () => {
  const config = parseEnarxConfig(
    `steward = "https://steward.example.net"
args = ["--mode", "serve"]
[env]
RUST_LOG = "info"
[[files]]
kind = "stdin"
[[files]]
kind = "stdout"
[[files]]
kind = "stderr"
name = "log"
[[dirs]]
host = "data"
guest = "/data"
readonly = true
[[dirs]]
host = "/abs"
`,
    "/pkg/Enarx.toml",
  );
  assert.equal(config.steward, "https://steward.example.net");
  assert.deepEqual(config.args, ["--mode", "serve"]);
  assert.deepEqual(config.env, { RUST_LOG: "info" });
  assert.deepEqual(config.files.map((f) => f.name), ["stdin", "stdout", "log"]);
  assert.deepEqual(config.dirs, [
    { host: "/pkg/data", guest: "/data", readOnly: true },
    { host: "/abs", guest: "/abs", readOnly: false },
  ]);
  const workload = {
    module: "/x/app.wasm",
    config,
    args: ["-v"],
    env: { RUST_LOG: "debug" },
  };
  assert.deepEqual(guestArgv(workload), ["app.wasm", "--mode", "serve", "-v"]);
  assert.deepEqual(guestEnv(workload), [
    ["RUST_LOG", "debug"],
    ["FD_COUNT", "3"],
    ["FD_NAMES", "stdin:stdout:log"],
  ]);
  assert.deepEqual(
    guestPreopens({ ...workload, preopens: [{ host: "/h", guest: "/g" }] }),
    [
      { host: "/pkg/data", guest: "/data", readOnly: true },
      { host: "/abs", guest: "/abs", readOnly: false },
      { host: "/h", guest: "/g" },
    ],
  );
});

Deno.test("config: fewer files close the rest; null files are allowed", () => {
  const config = parseEnarxConfig('[[files]]\nkind = "null"\n');
  assert.deepEqual(config.files, [{ kind: "null", name: "null" }]);
  assert.deepEqual(guestEnv({ module: "m", config }), [["FD_COUNT", "1"], [
    "FD_NAMES",
    "null",
  ]]);
});

Deno.test("config: without a config the guest gets no FD_COUNT", () => {
  assert.deepEqual(guestEnv({ module: "m", env: { A: "1" } }), [["A", "1"]]);
});

Deno.test("config: errors name the problem", () => {
  const bad: [string, RegExp][] = [
    ['colour = "blue"', /unknown key "colour"/],
    [
      '[[files]]\nkind = "stdin"\nmode = 1',
      /unknown key "mode" in \[\[files\]\] entry 1/,
    ],
    ['[[files]]\nkind = "pipe"', /kind "pipe"; expected one of null, stdin/],
    ['[[files]]\nkind = "stdin"\nname = "a:b"', /must not contain ":"/],
    ["args = 3", /args must be an array of strings/],
    ["args = [1]", /args\[0\] must be a string/],
    ["[env]\nA = 1", /env\.A must be a string/],
    ['steward = "http://plain"', /must be an https URL/],
    ['[[dirs]]\nguest = "/x"', /needs host/],
    [
      '[[dirs]]\nhost = "/x"\nwritable = true',
      /unknown key "writable" in \[\[dirs\]\] entry 1/,
    ],
    [
      '[[dirs]]\nhost = "/x"\nreadonly = "yes"',
      /readonly must be true or false/,
    ],
    ["args = [", /not valid TOML \(line 1/],
    ['[[files]]\nkind = "listen"\nname = "api"', /needs prot = "tcp" or "tls"/],
    ['[[files]]\nkind = "listen"\nprot = "tcp"', /\(listen\) needs a name/],
    ['[[files]]\nkind = "connect"\nprot = "tls"', /\(connect\) needs a host/],
    [
      '[[files]]\nkind = "connect"\nprot = "tcp"\nhost = "h"\nca = "ca.pem"',
      /has ca but prot = "tcp"; set prot = "tls"/,
    ],
    ['[[files]]\nkind = "connect"\nprot = "tls"\nhost = "h"\nmtls = 1', /mtls must be true/],
    ['[[files]]\nkind = "connect"\nprot = "tls"\nhost = "h"\nca = []', /ca is an empty list/],
    ['[[files]]\nkind = "connect"\nprot = "tls"\nhost = "h"\nca = [1]', /ca\[0\] must be a string/],
    [
      '[[files]]\nkind = "listen"\nprot = "tls"\nname = "a"\nmtls = true',
      /entry 1 \(listen\) has mtls = true but no ca; name the CA whose client certificates/,
    ],
    [
      '[[files]]\nkind = "listen"\nprot = "tls"\nname = "a"\nca = "c.pem"',
      /entry 1 \(listen\) has ca but not mtls = true; on a listen entry ca is the CA of client/,
    ],
    [
      '[[files]]\nkind = "listen"\nprot = "tls"\nname = "a"\nca = "c.pem"\nmtls = false',
      /has ca but not mtls = true/,
    ],
    [
      '[[files]]\nkind = "listen"\nprot = "tcp"\nname = "a"\nmtls = true',
      /has mtls but prot = "tcp"; set prot = "tls"/,
    ],
  ];
  for (const [text, pattern] of bad) {
    assert.throws(() => parseEnarxConfig(text, "E.toml"), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `${text}: ${e}`);
      assert.equal(e.exitStatus, 65);
      assert.match(e.message, /^E\.toml: /);
      assert.match(e.message, pattern);
      return true;
    });
  }
});

Deno.test("config: a tls connect takes ca as a path (from the file's folder), PEM or a list, and mtls", () => {
  const pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  const toml =
    '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n' +
    '[[files]]\nkind = "connect"\nprot = "tls"\nhost = "a"\nca = "certs/ca.pem"\nmtls = true\n' +
    `[[files]]\nkind = "connect"\nprot = "tls"\nhost = "b"\nca = ["/etc/x.pem", """${pem}"""]\n`;
  const files = parseEnarxConfig(toml, "/srv/app/Enarx.toml").files.slice(3);
  assert.deepEqual(files[0], {
    kind: "connect",
    prot: "tls",
    port: 443,
    host: "a",
    name: "a",
    ca: [{ path: "/srv/app/certs/ca.pem" }],
    mtls: true,
  });
  assert.deepEqual(files[1].ca, [{ path: "/etc/x.pem" }, { pem }]);
  assert.equal(files[1].mtls, undefined);
});

Deno.test("config: a tls listen takes mtls = true with the ca of its clients' certificates", () => {
  const toml =
    '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n' +
    '[[files]]\nkind = "listen"\nprot = "tls"\nname = "web"\nca = "clients.pem"\nmtls = true\n';
  assert.deepEqual(parseEnarxConfig(toml, "/srv/app/Enarx.toml").files[3], {
    kind: "listen",
    prot: "tls",
    port: 443,
    name: "web",
    addr: "::",
    ca: [{ path: "/srv/app/clients.pem" }],
    mtls: true,
  });
});

Deno.test("config: listen and connect parse after fds 0-2; deploy and fds 0-2 refuse them", () => {
  const stdio =
    '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n';
  const listen = '[[files]]\nkind = "listen"\nprot = "tls"\nname = "api"\nport = 8443\n';
  const connect = '[[files]]\nkind = "connect"\nprot = "tcp"\nhost = "127.0.0.1"\nport = 6379\n';
  const config = parseEnarxConfig(stdio + listen + connect);
  assert.deepEqual(config.files.slice(3), [
    { kind: "listen", prot: "tls", port: 8443, name: "api", addr: "::" },
    { kind: "connect", prot: "tcp", port: 6379, host: "127.0.0.1", name: "127.0.0.1" },
  ]);
  assert.deepEqual(
    guestEnv({ module: "m", config, preopens: [{ host: "/tmp", guest: "/data" }] }),
    [["FD_COUNT", "6"], ["FD_NAMES", "stdin:stdout:stderr:/data:api:127.0.0.1"]],
  );
  // Deployed: tcp and tls sockets are served through keepmgr (tls: deploy_tls_test.ts).
  assert.equal(parseDeployedConfig(stdio + connect).files[3].kind, "connect");
  assert.equal(parseDeployedConfig(stdio + listen).files[3].prot, "tls");
  for (const extra of [listen, connect]) {
    assert.throws(
      () => parseEnarxConfig(extra),
      (e: unknown) =>
        e instanceof ConfigUnsupportedError && e.exitStatus === 69 &&
        /entry 1 \(kind "(listen|connect)"\) is fd 0; sockets come after/.test(e.message),
    );
  }
  assert.throws(
    () => parseEnarxConfig('[[files]]\nkind = "stdout"\n'),
    /entry 1 is fd 0 and can be "null" or "stdin", not "stdout"/,
  );
});

Deno.test("config: loading a missing file is noInput", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      loadEnarxConfig(join(dir, "Enarx.toml")),
      (e: unknown) => e instanceof EnarxError && e.exitStatus === 66,
    );
    await Deno.writeTextFile(join(dir, "Enarx.toml"), 'args = ["x"]\n');
    assert.deepEqual((await loadEnarxConfig(join(dir, "Enarx.toml"))).args, [
      "x",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config: a deployed Enarx.toml may not preopen the keep host's directories", () => {
  const ok = parseDeployedConfig('args = ["a"]\n[env]\nK = "v"\n');
  assert.deepEqual(ok.args, ["a"]);
  assert.throws(
    () => parseDeployedConfig('[[dirs]]\nhost = "/"\nguest = "/host"\n'),
    (e: unknown) =>
      e instanceof ConfigUnsupportedError && e.exitStatus === 69 &&
      /\[\[dirs\]\] \(host directory "\/"\) cannot be deployed/.test(e.message),
  );
  // Everything else is checked as for enarx run.
  assert.throws(() => parseDeployedConfig("colour = 1\n"), ConfigError);
});
