/**
 * The `sgx` backend: an Intel SGX enclave. enarx checks the host for it and verifies
 * its evidence (SGX DCAP quotes v3, to Intel's root); launching its keeps, and getting evidence inside
 * them, come later. Its measurement comes from the hardware, so only the
 * client's policy can name it.
 *
 * @module
 */
import { type Backend, notLaunchableYet } from "./backend.ts";
import type { Judge } from "../platform/judge.ts";
import { CheckList, type PlatformCheck, remedy } from "../platform/check_list.ts";

/** Every check of a sgx host, in order. */
function sgxChecks(judge: Judge): PlatformCheck[] {
  const { facts, sudo } = judge;
  const list = new CheckList();
  list.add("sgx.cpu.sgx", {
    title: 'CPU flag "sgx" in /proc/cpuinfo',
    pass: judge.hasFlag("sgx"),
    detail: judge.hasFlag("sgx") ? "Present" : "Absent",
    remedy: remedy(
      [],
      'Set SGX to "Enabled" (not "Software Controlled") in the firmware setup, with a ' +
        "non-zero PRMRR/EPC size; SGX needs an Intel CPU that has it",
    ),
  });
  list.add("sgx.cpu.sgx-lc", {
    title: 'CPU flag "sgx_lc" (Flexible Launch Control) in /proc/cpuinfo',
    pass: judge.hasFlag("sgx_lc"),
    detail: judge.hasFlag("sgx_lc") ? "Present" : "Absent",
    remedy: remedy(
      [],
      "The in-kernel SGX driver needs Flexible Launch Control: enable it in the firmware " +
        'setup (often "SGX Launch Control Policy: Unlocked"); CPUs without it cannot run keeps',
    ),
    needs: ["sgx.cpu.sgx"],
  });
  list.add("sgx.kernel", judge.kernel(5, 11, "in-kernel SGX driver"));
  list.add("sgx.enclave-device", {
    ...judge.device(
      judge.paths.sgxEnclave,
      `${judge.paths.sgxEnclave} opens read-write`,
      remedy([], "Boot a kernel built with CONFIG_X86_SGX=y (Linux >= 5.11)"),
    ),
    needs: ["sgx.cpu.sgx-lc"],
  });
  list.add("sgx.provision-device", {
    ...judge.device(
      judge.paths.sgxProvision,
      `${judge.paths.sgxProvision} opens read-write (needed for DCAP quotes)`,
      remedy([], "Boot a kernel built with CONFIG_X86_SGX=y (Linux >= 5.11)"),
    ),
    needs: ["sgx.cpu.sgx-lc"],
  });
  list.add("sgx.aesm", {
    title: `Intel AESM service socket ${judge.paths.aesmSocket} exists`,
    pass: facts.aesmSocket,
    detail: facts.aesmSocket ? "Present" : "Absent",
    remedy: remedy(
      [
        `${sudo}apt-get install sgx-aesm-service libsgx-aesm-ecdsa-plugin`,
        `${sudo}systemctl enable --now aesmd`,
      ],
      "The packages come from Intel's SGX software repository for your distribution",
    ),
    required: false,
    needs: ["sgx.enclave-device"],
  });
  return list.checks;
}

/** The sgx backend. */
export const sgxBackend: Backend = {
  name: "sgx",
  description: "An Intel SGX enclave",
  evidence: "sgx",
  checks: sgxChecks,
  launchable: () => false,
  launches: false,
  launch: () => notLaunchableYet("sgx"),
  measurement: () => Promise.resolve(undefined),
};
