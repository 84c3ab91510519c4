/**
 * The launch digest against the reference implementation most users run:
 * the PyPI package `sev-snp-measure` (pure Python), pinned, installed by this
 * test into the bootstrap cache (`$ENARX_CACHE/sev-snp-measure-<version>`)
 * with pip and run as a subprocess. Compared for 1, 2 and 4 vCPUs, EPYC-Milan
 * and EPYC-Genoa (and every other vCPU type), with and without kernel,
 * initrd and command line, on Debian's OVMF and on synthetic OVMF-shaped
 * images that carry an SNP_KERNEL_HASHES section. Under
 * ENARX_TEST_REQUIRE_ALL=1 a missing python3/pip/OVMF fails the test.
 */
import assert from "node:assert/strict";
import { bootstrapCacheDir } from "../../runtime/dirs.ts";
import { snpLaunchDigest, VCPU_TYPES } from "../../runtime/measure/mod.ts";
import { fileExists, requires } from "../_requires.ts";
import { amdSevLikeSections, syntheticOvmf } from "./_synthetic_ovmf.ts";

const VERSION = "0.0.13";
const CACHE = bootstrapCacheDir();
const REFERENCE_DIR = `${CACHE}/sev-snp-measure-${VERSION}`;
const OVMF_CANDIDATES = [
  "/usr/share/OVMF/OVMF_CODE.fd",
  "/usr/share/ovmf/OVMF.fd",
  `${CACHE}/ovmf-deb/usr/share/OVMF/OVMF_CODE.fd`,
];

/** Runs a command; its stdout, or null when it cannot start or fails. */
async function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<string | null> {
  try {
    const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" })
      .output();
    if (!out.success) {
      console.error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
      return null;
    }
    return new TextDecoder().decode(out.stdout);
  } catch {
    return null;
  }
}

/** Installs the pinned reference into the cache unless it is there; whether it is usable. */
async function installReference(): Promise<boolean> {
  if (!fileExists(`${REFERENCE_DIR}/sevsnpmeasure/cli.py`)) {
    const staging = `${REFERENCE_DIR}.partial-${Deno.pid}`;
    const ok = await run("python3", [
      "-m",
      "pip",
      "install",
      "--quiet",
      "--disable-pip-version-check",
      "--no-warn-script-location",
      "--target",
      staging,
      `sev-snp-measure==${VERSION}`,
    ]);
    if (ok === null) {
      await Deno.remove(staging, { recursive: true }).catch(() => {});
      return false;
    }
    await Deno.rename(staging, REFERENCE_DIR).catch(() =>
      Deno.remove(staging, { recursive: true })
    );
  }
  return (await reference(["--version"])) !== null;
}

/** Finds Debian's OVMF, or unpacks the `ovmf` package into the cache with apt-get download. */
async function findOvmf(): Promise<string | undefined> {
  const found = OVMF_CANDIDATES.find(fileExists);
  if (found !== undefined) return found;
  const dir = `${CACHE}/ovmf-deb`;
  await Deno.mkdir(dir, { recursive: true });
  const listed = await run("sh", [
    "-c",
    `cd "${dir}" && apt-get download ovmf >/dev/null && dpkg-deb -x ovmf_*.deb .`,
  ]);
  return listed === null ? undefined : OVMF_CANDIDATES.find(fileExists);
}

function reference(args: string[]): Promise<string | null> {
  return run("python3", ["-m", "sevsnpmeasure.cli", ...args], { PYTHONPATH: REFERENCE_DIR });
}

const referencePresent = await installReference();
const ovmfPath = referencePresent ? await findOvmf() : undefined;

/** One configuration to compare. */
interface Config {
  label: string;
  ovmf: string;
  vcpus: number;
  vcpuType?: string;
  vcpuSignature?: number;
  kernel?: string;
  initrd?: string;
  append?: string;
  guestFeatures?: bigint;
}

async function compare(configs: Config[]): Promise<void> {
  const mismatches: string[] = [];
  const queue = [...configs];
  const worker = async () => {
    for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
      const expected = await reference(referenceArgs(c));
      const actual = snpLaunchDigest({
        ovmf: Deno.readFileSync(c.ovmf),
        kernel: c.kernel === undefined ? undefined : Deno.readFileSync(c.kernel),
        initrd: c.initrd === undefined ? undefined : Deno.readFileSync(c.initrd),
        append: c.append,
        vcpus: c.vcpus,
        vcpuType: c.vcpuType,
        vcpuSignature: c.vcpuSignature,
        guestFeatures: c.guestFeatures,
      }).digest.toHex();
      if (expected?.trim() !== actual) {
        mismatches.push(`${c.label}: reference ${expected?.trim()}, ours ${actual}`);
      }
    }
  };
  await Promise.all([worker(), worker()]);
  assert.deepEqual(
    mismatches,
    [],
    `${mismatches.length} of ${configs.length} configurations differ`,
  );
}

function referenceArgs(c: Config): string[] {
  const args = [
    "--mode",
    "snp",
    "--ovmf",
    c.ovmf,
    "--vcpus",
    String(c.vcpus),
  ];
  if (c.vcpuType !== undefined) args.push("--vcpu-type", c.vcpuType);
  if (c.vcpuSignature !== undefined) args.push("--vcpu-sig", String(c.vcpuSignature));
  if (c.kernel !== undefined) args.push("--kernel", c.kernel);
  if (c.initrd !== undefined) args.push("--initrd", c.initrd);
  if (c.append !== undefined) args.push("--append", c.append);
  if (c.guestFeatures !== undefined) {
    args.push("--guest-features", `0x${c.guestFeatures.toString(16)}`);
  }
  return args;
}

const need = (what: string, present: boolean, remedy: string) => ({ tool: what, present, remedy });
const pipRemedy =
  `python3 -m pip install --target "$ENARX_CACHE/sev-snp-measure-${VERSION}" sev-snp-measure==${VERSION}`;

Deno.test({
  name:
    `sev-snp-measure ${VERSION} agrees on synthetic OVMF images with and without kernel, initrd and command line`,
  ...requires(need(`sev-snp-measure ${VERSION}`, referencePresent, pipRemedy), async () => {
    const dir = await Deno.makeTempDir({ prefix: "enarx-measure-" });
    try {
      const files = await writeSyntheticInputs(dir);
      const blobs: Partial<Config>[] = [
        {},
        { kernel: files.kernel },
        { kernel: files.kernel, initrd: files.initrd },
        { kernel: files.kernel, append: "console=ttyS0 quiet" },
        { kernel: files.kernel, initrd: files.initrd, append: "console=ttyS0 enarx.keep=sev é" },
      ];
      const configs: Config[] = [];
      for (const ovmf of [files.ovmf, files.ovmfCaa]) {
        for (const vcpus of [1, 2, 4]) {
          for (const vcpuType of ["EPYC-Milan", "EPYC-Genoa"]) {
            for (const [i, b] of blobs.entries()) {
              configs.push({
                label: `${ovmf} ${vcpus}x${vcpuType} blobs#${i}`,
                ovmf,
                vcpus,
                vcpuType,
                ...b,
              });
            }
          }
        }
      }
      await compare(configs);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
});

Deno.test({
  name:
    `sev-snp-measure ${VERSION} agrees on Debian's OVMF for 1, 2, 4 vCPUs, every vCPU type, signatures and guest features`,
  ...requires(
    need(
      `sev-snp-measure ${VERSION} and Debian's OVMF`,
      referencePresent && ovmfPath !== undefined,
      `${pipRemedy}; apt-get install ovmf`,
    ),
    async () => {
      const ovmf = ovmfPath!;
      const configs: Config[] = [];
      for (const vcpus of [1, 2, 4]) {
        for (const vcpuType of ["EPYC-Milan", "EPYC-Genoa"]) {
          configs.push({ label: `${vcpus}x${vcpuType}`, ovmf, vcpus, vcpuType });
        }
      }
      for (const vcpuType of Object.keys(VCPU_TYPES)) {
        configs.push({ label: `3x${vcpuType}`, ovmf, vcpus: 3, vcpuType });
      }
      for (const guestFeatures of [0x1n, 0x21n, 0x3n]) {
        configs.push({
          label: `2xEPYC-Milan features ${guestFeatures}`,
          ovmf,
          vcpus: 2,
          vcpuType: "EPYC-Milan",
          guestFeatures,
        });
      }
      for (const vcpuSignature of [0xa10f11, 0x00b40f40]) {
        configs.push({
          label: `2x signature 0x${vcpuSignature.toString(16)}`,
          ovmf,
          vcpus: 2,
          vcpuSignature,
        });
      }
      await compare(configs);
    },
  ),
});

async function writeSyntheticInputs(dir: string) {
  const write = async (name: string, bytes: Uint8Array) => {
    await Deno.writeFile(`${dir}/${name}`, bytes);
    return `${dir}/${name}`;
  };
  const spec = { pages: 64, resetEip: 0x80b004, hashTable: { gpa: 0x80fc00, size: 0x400 } };
  const kernel = new Uint8Array(300_001).map((_, i) => (i * 7 + (i >> 9)) & 0xff);
  return {
    ovmf: await write("ovmf.fd", syntheticOvmf({ ...spec, sections: amdSevLikeSections() })),
    ovmfCaa: await write(
      "ovmf-caa.fd",
      syntheticOvmf({ ...spec, sections: amdSevLikeSections({ svsmCaa: true }), seed: 9 }),
    ),
    kernel: await write("vmlinuz", kernel),
    initrd: await write("initrd.img", new Uint8Array(77_777).fill(0x5a)),
  };
}
