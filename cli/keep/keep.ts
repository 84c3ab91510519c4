/**
 * `enarx keep image`: builds the exact image a keep of this release
 * launches (runtime/backends/keep_image.ts) and prints what it is made of,
 * with each part's SHA-256; `--out DIR` copies it out.
 *
 * @module
 */
import { UsageError } from "../../runtime/errors.ts";
import { IMAGE_BACKENDS, type KeepImage, keepImage } from "../../runtime/backends/keep_image.ts";
import { type Command, parseCommandArgs, printJson, printOut } from "../_command.ts";
import { MANAGE_COMMANDS, manageCommand } from "./manage.ts";

const HELP = `Usage: enarx keep image [--backend kvm|sev|nil] [--out DIR] [--json]

Builds the image a keep of this release launches, byte for byte the same on
every build from the same inputs, and prints its parts with their SHA-256:
for kvm and sev keeps the kernel, the initrd, the read-only base disk that
every keep shares, and the kernel command line, whose enarx.verity= names the
disk's dm-verity root hash (so the measurement covers the disk); for nil keeps the files the keep's process executes. "enarx measure" prints the
measurement of the same image.

Options:
  --backend NAME  kvm (default), sev or nil. A kvm image carries the
                  simulator state of $ENARX_SNP_SIM_DIR when it is set, as
                  the keeps a keepmgr launches do.
  --out DIR       Also write the image to DIR: vmlinuz, initrd.cpio, base.img
                  and cmdline (kvm, sev), or files.txt (nil: sha256, role, path)
  --json          Print {backend, append?, base?: {path, dataBlocks, rootHash},
                  built?, inputs: [{role, path, sha256}]}
  -h, --help      Show this help
`;

const OPTIONS = {
  backend: { type: "string", default: "kvm" },
  out: { type: "string" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** The image's parts as `sha256  role  path` lines. */
function listing(image: KeepImage): string {
  return image.inputs.map((i) => `${i.sha256.toHex()}  ${i.role}  ${i.path ?? ""}\n`).join("");
}

/** Writes the image's files to `dir`. */
async function writeOut(image: KeepImage, dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  if (image.backend === "nil") {
    await Deno.writeTextFile(`${dir}/files.txt`, listing(image));
    return;
  }
  await Deno.copyFile(image.kernel, `${dir}/vmlinuz`);
  await Deno.copyFile(image.initrd, `${dir}/initrd.cpio`);
  await Deno.copyFile(image.base.path, `${dir}/base.img`);
  await Deno.writeTextFile(`${dir}/cmdline`, image.append);
}

async function imageCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs("keep image", args, {
    options: OPTIONS,
    allowPositionals: false,
  });
  if (values.help) {
    await printOut(HELP);
    return 0;
  }
  if (!(IMAGE_BACKENDS as readonly string[]).includes(values.backend)) {
    throw new UsageError(
      `Unknown backend "${values.backend}" for "keep image"; use ${IMAGE_BACKENDS.join(", ")}`,
    );
  }
  const image = await keepImage(values.backend);
  if (values.out !== undefined) await writeOut(image, values.out);
  if (values.json) {
    const vm = image.backend === "nil"
      ? {}
      : { append: image.append, base: image.base, built: image.built };
    await printJson({ backend: image.backend, ...vm, inputs: image.inputs });
    return 0;
  }
  let text = listing(image);
  if (image.backend !== "nil") text += `cmdline  ${image.append}\n`;
  await printOut(text);
  return 0;
}

const GROUP_HELP = `Usage: enarx keep COMMAND [OPTIONS]

Commands:
  image   Build the image a keep of this release launches, and list its parts
  list    List a keepmgr's keeps and their endpoints
  logs    Print (or --follow) a detached workload's output
  stop    Stop a keep and free its ports

See "enarx keep COMMAND --help".
`;

/** The `keep` command group. */
export const command: Command = {
  name: "keep",
  summary: "Build the image a keep launches; list, logs, stop a keepmgr's keeps",
  async run(args: string[]): Promise<number> {
    const [sub, ...rest] = args;
    if (sub === "image") return await imageCommand(rest);
    const manage = MANAGE_COMMANDS.find((name) => name === sub);
    if (manage !== undefined) return await manageCommand(manage, rest);
    if (sub === "-h" || sub === "--help") {
      await printOut(GROUP_HELP);
      return 0;
    }
    throw new UsageError(
      sub === undefined
        ? `Missing a command; see "enarx keep --help"`
        : `Unknown command "keep ${sub}"; see "enarx keep --help"`,
    );
  },
};
