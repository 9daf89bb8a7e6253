//! `guestcore kernels`, `dmesg` and `--kernel` on the real guests: the kernel found from its
//! VMCOREINFO in RAM is the one the guest says it runs, its log is makedumpfile's, and a raw
//! image with no CPU state is read through that kernel's own page tables.

use super::dump;
use assert_cmd::Command;
use guestcore::image::GuestImage;
use guestcore_testkit::tools::which;
use std::io::Write;
use std::path::Path;

fn run(args: &[&str]) -> String {
    let out = Command::cargo_bin("guestcore")
        .unwrap()
        .arg("-q")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "guestcore {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Writes the RAM of `image` as a raw image and returns its `--layout`.
fn write_raw(image: &GuestImage, path: &Path) -> String {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut layout = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for r in image.memory.ram().ranges() {
        layout.push(format!("{:#x}:{:#x}", r.start, r.len()));
        let mut at = r.start;
        while at < r.end {
            let n = ((r.end - at) as usize).min(buf.len());
            image.memory.read_at(at, &mut buf[..n]).unwrap();
            f.write_all(&buf[..n]).unwrap();
            at += n as u64;
        }
    }
    f.flush().unwrap();
    layout.join(",")
}

pub fn check_kernels(guest: &str, phys: &Path, image: &GuestImage, release: &str, tmp: &Path) {
    let p = phys.to_str().unwrap();
    let mode = match guest {
        "x86_64" => "4-level",
        "x86_64-la57" => "5-level",
        "i386" => "32-bit",
        _ => "pae",
    };
    // 1. One kernel, the one the guest runs, found in RAM and in QEMU's note alike.
    let list: serde_json::Value = serde_json::from_str(&run(&["kernels", "--json", p])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{guest}: {list:?}");
    let k = &list[0];
    assert_eq!(k["release"], release, "{guest}");
    assert_eq!(k["role"], "running", "{guest}: {k}");
    assert_eq!(k["mode"], mode, "{guest}: {k}");
    assert_eq!(k["in_input_notes"], true, "{guest}: {k}");
    assert!(
        k["cpus"].as_array().unwrap().contains(&0.into()),
        "{guest}: {k}"
    );

    // 2. dmesg: makedumpfile's lines (x86_64 makedumpfile reads 64-bit guests only).
    let log = run(&["dmesg", p]);
    assert!(
        log.lines()
            .next()
            .is_some_and(|l| l.contains(&format!("Linux version {release} "))),
        "{guest}: {}",
        &log[..log.len().min(300)]
    );
    assert!(log
        .lines()
        .all(|l| l.starts_with('[') || l.starts_with(' ')));
    if guest.starts_with("x86_64") && which("makedumpfile").is_some() {
        let ours = tmp.join("kernels-phys.elf");
        dump(&["dump", p], &ours);
        let md_out = tmp.join("kernels-dmesg.txt");
        let r = std::process::Command::new("makedumpfile")
            .arg("--dump-dmesg")
            .arg(&ours)
            .arg(&md_out)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let want = std::fs::read_to_string(&md_out).unwrap();
        assert!(
            want.lines().count() > 100,
            "{guest}: makedumpfile --dump-dmesg wrote {} lines:\n{want}",
            want.lines().count()
        );
        assert!(
            log == want,
            "{guest}: dmesg differs from makedumpfile --dump-dmesg"
        );
    }

    // 3. A raw image: no CPU state at all, the kernel's tables from VMCOREINFO.
    let raw = tmp.join("guest.raw");
    let layout = write_raw(image, &raw);
    let r = raw.to_str().unwrap();
    let uts = image.vmcoreinfo_get("SYMBOL(init_uts_ns)").unwrap();
    let release_va = u64::from_str_radix(uts, 16).unwrap() + 130;
    let got = Command::cargo_bin("guestcore")
        .unwrap()
        .args(["read", "-q", r, "--layout", &layout, "--kernel", "running"])
        .arg(format!("{release_va:#x}"))
        .arg(release.len().to_string())
        .output()
        .unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(
        String::from_utf8_lossy(&got.stdout).contains(release),
        "{guest}: read --kernel on the raw image: {}",
        String::from_utf8_lossy(&got.stdout)
    );
    let raw_log = run(&["dmesg", r, "--layout", &layout, "--kernel", "0"]);
    assert!(raw_log == log, "{guest}: dmesg of the raw image differs");
}
