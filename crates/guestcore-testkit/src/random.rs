//! Random page-table sets for property tests and fuzzing.
//!
//! [`RandomTables`] is *structured* randomness: a small pool of table frames whose entries sit at
//! a few shared indices and point at each other (aliases, loops, self-references), at RAM, at
//! holes, above 4 GiB and past RAM, with random permission, PS, XD and reserved bits, plus some
//! pure garbage. Because entries only use a few indices, [`RandomTables::random_va`] can aim at
//! addresses that walk through them, so the oracle comparison is not just "both say unmapped".
//!
//! [`random_ram`] is the unstructured variant: every RAM byte random, CR3 anywhere.

use crate::geometry::{Geometry, P, PS, RW, US, XD};
use crate::memory::SparseMemory;
use guestcore::cpu::{
    X86CpuState, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PSE, EFER_LMA, EFER_LME, EFER_NXE,
};
use guestcore::paging::ModeKind;
use guestcore::phys::{PhysMemory, VecMemory};

/// SplitMix64: tiny, seedable, good enough to spread bits (no dependency for the testkit).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// A random element.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    /// `len` random bytes: noise no compressor shrinks (tests that need incompressible pages,
    /// like snappy's uncompressed chunks or a kdump writer's raw-page fallback).
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// RAM of random table sets: low RAM, a hole, a second range, and a small range above 4 GiB.
pub const RANDOM_RAM: [(u64, u64); 3] = [
    (0, 0x4_0000),
    (0x10_0000, 0x4_0000),
    (0x1_0000_0000, 0x1_0000),
];

/// A random table set, its memory and the vCPU that uses it.
#[derive(Debug, Clone)]
pub struct RandomTables {
    /// The paging mode the tables are written for.
    pub kind: ModeKind,
    /// Guest-physical memory holding the tables.
    pub memory: VecMemory,
    /// A vCPU in `kind` whose CR3 points at the root table.
    pub cpu: X86CpuState,
    /// The table indices entries were placed at (one pool for every level).
    pub index_pool: Vec<u64>,
}

impl RandomTables {
    /// Generates a table set for `kind` (not `Off`) from `seed`.
    pub fn generate(kind: ModeKind, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let geo = Geometry::of(kind);
        let wide = kind == ModeKind::Bits32;
        let index_pool: Vec<u64> = if wide {
            vec![0, 1, 511, 512, 769, 1023]
        } else {
            vec![0, 1, 255, 256, 510, 511]
        };
        let mut mem = SparseMemory::new(&RANDOM_RAM);
        // Table frames: mostly low RAM, some in the second range and above 4 GiB.
        let mut frames: Vec<u64> = (0..6).map(|i| 0x1_0000 + i * 0x1000).collect();
        frames.extend([0x10_0000, 0x12_3000, 0x3_f000, 0x1_0000_0000]);
        let nxe = kind != ModeKind::Bits32 && rng.chance(70);
        let pse = rng.chance(80);
        let a20 = !rng.chance(15);

        for &f in &frames {
            let present = 2 + rng.below(6);
            for _ in 0..present {
                let idx = rng.pick(&index_pool);
                let e = random_entry(&mut rng, &geo, &frames);
                write_entry(&mut mem, wide, f + idx * geo.entry_bytes, e);
            }
        }
        // The root: a normal frame, or for PAE a 32-byte-aligned PDPT inside one.
        let mut root = rng.pick(&frames);
        if kind == ModeKind::Pae {
            root += rng.below(128) * 32;
            for i in 0..4 {
                if rng.chance(70) {
                    let t = rng.pick(&frames);
                    let mut e = t | P;
                    if rng.chance(10) {
                        e |= 1 << rng.pick(&[1u64, 2, 5, 7, 8, 52, 60, 63]);
                    }
                    write_entry(&mut mem, false, root + i * 8, e);
                }
            }
        }
        let cpu = cpu_for(kind, root, nxe, pse, a20);
        RandomTables {
            kind,
            memory: mem.to_vec_memory(),
            cpu,
            index_pool,
        }
    }

    /// A linear address whose walk goes through the pool indices most of the time (canonical
    /// in IA-32e modes), with a random offset in the last level.
    pub fn random_va(&self, rng: &mut Rng) -> u64 {
        let geo = Geometry::of(self.kind);
        let mut va = 0u64;
        for &(shift, bits) in geo.levels {
            let idx = if rng.chance(90) {
                rng.pick(&self.index_pool) & ((1 << bits) - 1)
            } else {
                rng.below(1 << bits)
            };
            va |= idx << shift;
        }
        va |= rng.below(4096);
        match self.kind {
            ModeKind::Level4 => guestcore::addr::canonical(va, 48),
            ModeKind::Level5 => guestcore::addr::canonical(va, 57),
            _ => va,
        }
    }
}

fn write_entry(mem: &mut SparseMemory, wide: bool, at: u64, e: u64) {
    if wide {
        mem.write_u32(at, e as u32);
    } else {
        mem.write_u64(at, e);
    }
}

/// A random entry: table pointers, leaves, reserved bits, garbage, not-present noise.
fn random_entry(rng: &mut Rng, geo: &Geometry, frames: &[u64]) -> u64 {
    let perms = |rng: &mut Rng| {
        let mut e = P;
        if rng.chance(75) {
            e |= RW;
        }
        if rng.chance(75) {
            e |= US;
        }
        if rng.chance(20) {
            e |= XD;
        }
        e | (rng.below(8) << 3 & 0x58) // PWT, D, ... noise in low flag bits (not PS)
    };
    let targets = [
        0x0,
        0x3_f000,
        0x9f000,
        0xa_0000,
        0x10_0000,
        0x13_f000,
        0x20_0000,
        0x40_0000,
        0xfee0_0000,
        0x1_0000_0000,
        0x1_0040_0000,
        0x12_3440_0000,
    ];
    let e = match rng.below(100) {
        0..=49 => rng.pick(frames) | perms(rng),
        50..=69 => {
            let mut e = rng.pick(&targets) | perms(rng);
            if rng.chance(50) {
                e |= PS;
            }
            if geo.entry_bytes == 4 && rng.chance(30) {
                // PSE-36 high bits.
                e |= rng.below(256) << 13;
            }
            e
        }
        70..=76 => rng.next_u64() | P,
        77..=86 => {
            (rng.pick(frames) | perms(rng))
                ^ (1 << rng.pick(&[7u64, 13, 20, 21, 29, 51, 52, 58, 62, 63]))
        }
        87..=91 => rng.pick(frames) | perms(rng) | (rng.below(0x800) << 52),
        _ => rng.next_u64() & !P,
    };
    if geo.entry_bytes == 4 {
        e & 0xffff_ffff
    } else {
        e
    }
}

/// A vCPU in `kind` with the given switches.
pub fn cpu_for(kind: ModeKind, cr3: u64, nxe: bool, pse: bool, a20: bool) -> X86CpuState {
    let mut cpu = X86CpuState::new(0);
    cpu.a20_enabled = a20;
    cpu.cr[0] = 1 | CR0_PG | CR0_WP;
    cpu.cr[3] = cr3;
    let nxe = if nxe { EFER_NXE } else { 0 };
    let pse = if pse { CR4_PSE } else { 0 };
    (cpu.cr[4], cpu.efer) = match kind {
        ModeKind::Off | ModeKind::Aarch64 => {
            cpu.cr[0] = 1;
            (0, 0)
        }
        ModeKind::Bits32 => (pse, 0),
        ModeKind::Pae => (pse | CR4_PAE, nxe),
        ModeKind::Level4 => (pse | CR4_PAE, nxe | EFER_LME | EFER_LMA),
        ModeKind::Level5 => (pse | CR4_PAE | CR4_LA57, nxe | EFER_LME | EFER_LMA),
    };
    cpu
}

/// Unstructured fuzz input: `ram` bytes of random RAM at physical 0 and a random CR3 (usually
/// inside RAM, sometimes not), for `kind`.
pub fn random_ram(kind: ModeKind, seed: u64, ram: usize) -> (VecMemory, X86CpuState) {
    let mut rng = Rng::new(seed);
    let mut bytes = vec![0u8; ram];
    for chunk in bytes.chunks_mut(8) {
        let v = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let cr3 = if rng.chance(90) {
        rng.below(ram as u64)
    } else {
        rng.next_u64()
    };
    let mem = VecMemory::flat(bytes);
    debug_assert!(mem.ram().total() == ram as u64);
    let cpu = cpu_for(kind, cr3, rng.chance(50), rng.chance(50), !rng.chance(20));
    (mem, cpu)
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn bytes_are_seeded_sized_and_spread() {
        let a = Rng::new(7).bytes(1001);
        assert_eq!(a.len(), 1001);
        assert_eq!(a, Rng::new(7).bytes(1001));
        assert_ne!(a, Rng::new(8).bytes(1001));
        let mut seen = [false; 256];
        a.iter().for_each(|&b| seen[b as usize] = true);
        assert!(seen.iter().filter(|&&s| s).count() > 200);
    }
}
