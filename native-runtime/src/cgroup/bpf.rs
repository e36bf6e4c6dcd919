//! cgroup v2 device control: a `BPF_PROG_TYPE_CGROUP_DEVICE` program generated from the emulated
//! v1 state ([`DeviceState`]), loaded with `bpf(BPF_PROG_LOAD)` and attached to the plugin's cgroup
//! with `bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)`.
//!
//! The kernel runs the program on every device access check (open, mknod) of a task in the cgroup
//! with `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, where
//! `access_type = (access << 16) | type`; return 1 allows, 0 denies (EPERM). Programs on ancestor
//! cgroups (systemd's, with `ALLOW_MULTI`) all run too: every one must allow.
//!
//! The program, for the state's exceptions in order:
//! ```text
//!   r2 = ctx->access_type & 0xffff     ; device type (1 block, 2 char)
//!   r3 = ctx->access_type >> 16        ; requested access bits (1 mknod, 2 read, 4 write)
//!   r4 = ctx->major; r5 = ctx->minor
//!   for each exception:                ; a block; every failed test skips to the next block
//!     if r2 != type goto next; [if r4 != major goto next]; [if r5 != minor goto next]
//!     default-deny:  if r3 & ~access goto next; return 1     ; one exception must hold every bit
//!     default-allow: if !(r3 & access) goto next; return 0   ; any shared bit denies
//!   return default
//! ```
//! That is exactly the v1 controller's check (`devices.rs`), so v1, hybrid and v2 enforce the same
//! rules. The program is attached, not pinned: the cgroup holds it until the cgroup is removed, so a
//! daemon restart does not drop it.
//!
//! All `bpf(2)` calls go through the [`Bpf`] trait, so the generation and the call sequence are
//! tested without root; [`SysBpf`] holds the only `unsafe` of the cgroup module.

use super::CgroupError;
use super::devices::{ACC_ALL, DeviceState, Rule};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Offset (memory access or jump distance in instructions).
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    /// The 8 bytes the kernel reads (`dst_reg:4, src_reg:4` as the C bitfield lays them out).
    pub fn encode(&self) -> [u8; 8] {
        let regs = if cfg!(target_endian = "little") {
            (self.src << 4) | (self.dst & 0x0f)
        } else {
            (self.dst << 4) | (self.src & 0x0f)
        };
        let off = self.off.to_ne_bytes();
        let imm = self.imm.to_ne_bytes();
        [
            self.code, regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }

    fn is_jump(&self) -> bool {
        self.code & 0x07 == BPF_JMP && self.code != EXIT
    }
}

// Opcodes: class | op | source (include/uapi/linux/bpf_common.h, bpf.h).
const BPF_JMP: u8 = 0x05;
/// `BPF_LDX | BPF_MEM | BPF_W`: 32-bit load, zero-extended.
pub const LDX_MEM_W: u8 = 0x61;
/// `BPF_ALU64 | BPF_AND | BPF_K`.
pub const AND64_IMM: u8 = 0x57;
/// `BPF_ALU64 | BPF_RSH | BPF_K`.
pub const RSH64_IMM: u8 = 0x77;
/// `BPF_ALU64 | BPF_MOV | BPF_K`.
pub const MOV64_IMM: u8 = 0xb7;
/// `BPF_ALU64 | BPF_MOV | BPF_X`.
pub const MOV64_REG: u8 = 0xbf;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub const JEQ_IMM: u8 = 0x15;
/// `BPF_JMP | BPF_JNE | BPF_K`.
pub const JNE_IMM: u8 = 0x55;
/// `BPF_JMP | BPF_EXIT`.
pub const EXIT: u8 = 0x95;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// A jump to the end of the current block; the distance is patched when the block is closed.
fn skip_unless(code: u8, reg: u8, imm: i32) -> Insn {
    insn(code, reg, 0, 0, imm)
}

/// The program enforcing `state` (see the module docs for its shape).
pub fn program(state: &DeviceState) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, R2, R1, 0, 0),
        insn(AND64_IMM, R2, 0, 0, 0xffff),
        insn(LDX_MEM_W, R3, R1, 0, 0),
        insn(RSH64_IMM, R3, 0, 0, 16),
        insn(LDX_MEM_W, R4, R1, 4, 0),
        insn(LDX_MEM_W, R5, R1, 8, 0),
    ];
    for e in &state.exceptions {
        let mut block = vec![skip_unless(JNE_IMM, R2, e.kind as i32)];
        if let Some(major) = e.major {
            block.push(skip_unless(JNE_IMM, R4, major as i32));
        }
        if let Some(minor) = e.minor {
            block.push(skip_unless(JNE_IMM, R5, minor as i32));
        }
        if state.default_allow {
            block.push(insn(MOV64_REG, R1, R3, 0, 0));
            block.push(insn(AND64_IMM, R1, 0, 0, i32::from(e.access)));
            block.push(skip_unless(JEQ_IMM, R1, 0));
            block.push(insn(MOV64_IMM, R0, 0, 0, 0));
        } else {
            if e.access != ACC_ALL {
                block.push(insn(MOV64_REG, R1, R3, 0, 0));
                block.push(insn(AND64_IMM, R1, 0, 0, i32::from(!e.access & ACC_ALL)));
                block.push(skip_unless(JNE_IMM, R1, 0));
            }
            block.push(insn(MOV64_IMM, R0, 0, 0, 1));
        }
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate().filter(|(_, i)| i.is_jump()) {
            ins.off = (len - i - 1) as i16;
        }
        prog.extend(block);
    }
    prog.push(insn(MOV64_IMM, R0, 0, 0, i32::from(state.default_allow)));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

/// The `bpf(2)` calls the device path makes; a seam so tests record them instead.
pub trait Bpf {
    /// `BPF_PROG_LOAD` of a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
    fn load_device_program(&self, insns: &[Insn]) -> io::Result<OwnedFd>;
    /// `BPF_PROG_ATTACH` of `prog` to the cgroup directory, `BPF_CGROUP_DEVICE`,
    /// `BPF_F_ALLOW_MULTI`.
    fn attach_device_program(&self, cgroup: &Path, prog: BorrowedFd<'_>) -> io::Result<()>;
}

/// Generates the program for `rules`, loads it and attaches it to `cgroup`.
pub fn apply(bpf: &dyn Bpf, cgroup: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let insns = program(&DeviceState::from_rules(rules));
    let prog = bpf
        .load_device_program(&insns)
        .map_err(CgroupError::BpfLoad)?;
    bpf.attach_device_program(cgroup, prog.as_fd())
        .map_err(|source| CgroupError::BpfAttach {
            path: cgroup.to_owned(),
            source,
        })
}

/// The kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct SysBpf;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
/// Verifier log size for the retry that explains a refused program.
const LOG_SIZE: usize = 64 * 1024;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type` (the kernel zero-fills
/// what a shorter attr leaves out).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

impl SysBpf {
    fn prog_load(code: &[u8], insn_cnt: u32, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
        let license = c"Apache-2.0";
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt,
            insns: code.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: *b"plugd_devices\0\0\0",
            ..ProgLoadAttr::default()
        };
        if let Some(log) = log {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        // SAFETY: `attr` is a valid, fully initialised `bpf_attr` prefix of the size passed; the
        // pointers in it (instructions, license, log buffer) stay alive and unmoved for the call,
        // and the kernel writes only within `log_size` bytes of `log_buf`.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &raw mut attr,
                std::mem::size_of::<ProgLoadAttr>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

impl Bpf for SysBpf {
    fn load_device_program(&self, insns: &[Insn]) -> io::Result<OwnedFd> {
        let code: Vec<u8> = insns.iter().flat_map(Insn::encode).collect();
        let count = insns.len() as u32;
        match Self::prog_load(&code, count, None) {
            Ok(fd) => Ok(fd),
            Err(e)
                if e.raw_os_error() == Some(libc::EACCES)
                    || e.raw_os_error() == Some(libc::EINVAL) =>
            {
                // Load again with the verifier's log, only to say why.
                let mut log = vec![0u8; LOG_SIZE];
                let _ = Self::prog_load(&code, count, Some(&mut log));
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                Err(io::Error::new(
                    e.kind(),
                    format!("{e}; verifier: {}", text.trim()),
                ))
            }
            Err(e) => Err(e),
        }
    }

    fn attach_device_program(&self, cgroup: &Path, prog: BorrowedFd<'_>) -> io::Result<()> {
        let dir = std::fs::File::open(cgroup)?;
        let attr = ProgAttachAttr {
            target_fd: dir.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
            replace_bpf_fd: 0,
        };
        // SAFETY: `attr` is a valid, fully initialised `bpf_attr` prefix of the size passed; both
        // fds are open for the duration of the call (`dir` and `prog` are borrowed here).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_ATTACH,
                &raw const attr,
                std::mem::size_of::<ProgAttachAttr>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::devices::DevType;
    use super::super::devices::tests::dockerd_rules_with_fuse;
    use super::*;
    use plugd_init::spec::DeviceRule;
    use std::cell::RefCell;
    use std::path::PathBuf;

    /// Runs an encoded program on one request, decoding the bytes the kernel would get; only the
    /// opcodes [`program`] emits are known.
    fn run(code: &[[u8; 8]], kind: DevType, major: u32, minor: u32, access: u8) -> u64 {
        const CTX: u64 = 0xc7c7_0000_0000;
        let ctx = [(u32::from(access) << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        r[1] = CTX;
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let b = code[pc];
            let (dst, src) = if cfg!(target_endian = "little") {
                ((b[1] & 0x0f) as usize, (b[1] >> 4) as usize)
            } else {
                ((b[1] >> 4) as usize, (b[1] & 0x0f) as usize)
            };
            let off = i16::from_ne_bytes([b[2], b[3]]);
            let imm = i64::from(i32::from_ne_bytes([b[4], b[5], b[6], b[7]])) as u64;
            pc += 1;
            match b[0] {
                LDX_MEM_W => {
                    assert_eq!(r[src], CTX, "loads only from the context");
                    r[dst] = u64::from(ctx[off as usize / 4]);
                }
                AND64_IMM => r[dst] &= imm,
                RSH64_IMM => r[dst] >>= imm,
                MOV64_IMM => r[dst] = imm,
                MOV64_REG => r[dst] = r[src],
                JEQ_IMM if r[dst] == imm => pc = (pc as i64 + i64::from(off)) as usize,
                JNE_IMM if r[dst] != imm => pc = (pc as i64 + i64::from(off)) as usize,
                JEQ_IMM | JNE_IMM => {}
                EXIT => return r[0],
                op => panic!("unexpected opcode {op:#x}"),
            }
        }
        panic!("program did not exit");
    }

    fn rule(
        allow: bool,
        kind: Option<&str>,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind: kind.map(str::to_owned),
            major,
            minor,
            access: access.to_owned(),
        }
    }

    /// Every request on a grid of devices gets the v1 controller's answer from the program.
    #[test]
    fn program_agrees_with_the_v1_emulation() {
        let sets: Vec<Vec<DeviceRule>> = vec![
            dockerd_rules_with_fuse(),
            dockerd_rules_with_fuse()[..8].to_vec(),
            vec![rule(true, None, None, None, "rwm")],
            vec![rule(false, None, None, None, "rwm")],
            vec![
                rule(true, Some("c"), Some(1), None, "r"),
                rule(true, Some("c"), Some(1), Some(3), "w"),
                rule(true, Some("b"), None, None, "m"),
            ],
            vec![
                rule(true, None, None, None, "rwm"),
                rule(false, Some("b"), Some(7), None, "w"),
                rule(false, Some("c"), Some(10), Some(229), "rwm"),
                rule(false, Some("c"), None, Some(3), "m"),
            ],
        ];
        for rules in sets {
            let state = DeviceState::from_rules(&Rule::parse_all(&rules).unwrap());
            let code: Vec<[u8; 8]> = program(&state).iter().map(Insn::encode).collect();
            for kind in [DevType::Block, DevType::Char] {
                for major in [0, 1, 5, 7, 10, 136, 4095] {
                    for minor in [0, 1, 3, 5, 8, 9, 229, 1_000_000] {
                        for access in 1..=ACC_ALL {
                            let want = state.allows(kind, major, minor, access);
                            let got = run(&code, kind, major, minor, access);
                            assert_eq!(
                                got,
                                u64::from(want),
                                "{kind:?} {major}:{minor} access {access} under {state:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn encoding_of_dockerd_default_rules() {
        let rules = Rule::parse_all(&dockerd_rules_with_fuse()[..8]).unwrap();
        let prog = program(&DeviceState::from_rules(&rules));
        // 6 context loads, 6 blocks of (type, major, minor, r0 = 1, exit), default deny.
        assert_eq!(prog.len(), 6 + 6 * 5 + 2);
        assert_eq!(prog[0].encode(), [0x61, 0x12, 0, 0, 0, 0, 0, 0]);
        assert_eq!(prog[3].encode(), [0x77, 0x03, 0, 0, 16, 0, 0, 0]);
        assert_eq!(prog[5].encode(), [0x61, 0x15, 8, 0, 0, 0, 0, 0]);
        // First block: c 1:5 — `if r2 != 2 goto +4`, `if r4 != 1 goto +3`, `if r5 != 5 goto +2`.
        assert_eq!(prog[6].encode(), [0x55, 0x02, 4, 0, 2, 0, 0, 0]);
        assert_eq!(prog[7].encode(), [0x55, 0x04, 3, 0, 1, 0, 0, 0]);
        assert_eq!(prog[8].encode(), [0x55, 0x05, 2, 0, 5, 0, 0, 0]);
        assert_eq!(prog[9].encode(), [0xb7, 0x00, 0, 0, 1, 0, 0, 0]);
        assert_eq!(prog[10].encode(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        let n = prog.len();
        assert_eq!(prog[n - 2].encode(), [0xb7, 0x00, 0, 0, 0, 0, 0, 0]);
    }

    /// Records the calls and hands out `/dev/null` as the program fd.
    #[derive(Default)]
    pub(crate) struct FakeBpf {
        pub loads: RefCell<Vec<Vec<Insn>>>,
        pub attaches: RefCell<Vec<PathBuf>>,
        pub fail_attach: bool,
    }

    impl Bpf for FakeBpf {
        fn load_device_program(&self, insns: &[Insn]) -> io::Result<OwnedFd> {
            self.loads.borrow_mut().push(insns.to_vec());
            Ok(std::fs::File::open("/dev/null")?.into())
        }

        fn attach_device_program(&self, cgroup: &Path, _prog: BorrowedFd<'_>) -> io::Result<()> {
            self.attaches.borrow_mut().push(cgroup.to_owned());
            if self.fail_attach {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        }
    }

    #[test]
    fn apply_loads_then_attaches_the_generated_program() {
        let rules = Rule::parse_all(&dockerd_rules_with_fuse()).unwrap();
        let bpf = FakeBpf::default();
        apply(&bpf, Path::new("/cg/plugd-x"), &rules).unwrap();
        assert_eq!(
            *bpf.loads.borrow(),
            [program(&DeviceState::from_rules(&rules))]
        );
        assert_eq!(*bpf.attaches.borrow(), [PathBuf::from("/cg/plugd-x")]);

        let failing = FakeBpf {
            fail_attach: true,
            ..FakeBpf::default()
        };
        let err = apply(&failing, Path::new("/cg/y"), &rules).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("attach the device eBPF program to /cg/y"),
            "{err}"
        );
    }
}
