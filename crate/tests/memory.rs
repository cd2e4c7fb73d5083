//! Freed result buffers stay mapped for the next step (src/kernels/memory.rs): a 32 MB block
//! freed after the first closed-form gradient is reused without faulting its pages in again,
//! while with `EOSLAB_MALLOC=system` (glibc's defaults, checked in a child process, since the
//! setting is process-wide) nearly every page faults again. Its own test binary, so that no
//! other test allocates meanwhile.
#![cfg(all(target_os = "linux", target_env = "gnu"))]
mod common;

use candle_core::DType;
use common::{mlp, random_objective};
use eoslab::loss::LossKind;
use eoslab::model::Activation;

// Below the 64 MB heaps of glibc's per-thread arenas (a test runs on a thread of its own, and
// the arenas still map anything larger with mmap).
const BYTES: usize = 32 << 20;
const PAGES: f64 = (BYTES / 4096) as f64;

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    // SAFETY: getrusage writes one plain struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) }, 0);
    u.ru_minflt
}

/// Allocate a block, write every page, free it; return the faults this took, as pages.
fn touch_block() -> f64 {
    let before = minor_faults();
    let mut v: Vec<u8> = Vec::with_capacity(BYTES);
    v.resize(BYTES, 1);
    std::hint::black_box(&v);
    drop(v);
    (minor_faults() - before) as f64 / PAGES
}

/// Fraction of the block's pages faulted in again on its second allocation, after one
/// closed-form gradient (the first kernel call configures the allocator).
fn refaulted() -> f64 {
    let obj = random_objective(64, 8, 2, LossKind::Mse, DType::F64, 1, None);
    let model = mlp(&[8, 16, 2], Activation::Tanh, DType::F64, 2);
    obj.value_and_grad(&model).unwrap();
    touch_block();
    touch_block()
}

#[test]
fn freed_buffers_are_reused_without_faulting_again() {
    if std::env::var("EOSLAB_MEMORY_CHILD").is_ok() {
        println!("REFAULTED {}", refaulted());
        return;
    }
    let kept = refaulted();
    assert!(
        kept < 0.05,
        "{:.1} % of the pages faulted again",
        100.0 * kept
    );

    // The control: glibc's defaults unmap the block and fault it in again.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "freed_buffers_are_reused_without_faulting_again",
            "--nocapture",
        ])
        .env("EOSLAB_MEMORY_CHILD", "1")
        .env("EOSLAB_MALLOC", "system")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let system: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("REFAULTED "))
        .unwrap_or_else(|| panic!("child printed no figure: {text}"))
        .parse()
        .unwrap();
    assert!(
        system > 0.9,
        "defaults refaulted only {:.1} %",
        100.0 * system
    );
}
