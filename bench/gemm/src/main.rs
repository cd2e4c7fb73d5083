//! GEMM calibration of `make bench` (driven by `bench/run.py`). Not a test.
//!
//! ```text
//! gemm-calibration CALLS.json DTYPE REPS [LIB=PATH ...]
//! ```
//!
//! CALLS.json maps a set name ("paper step", "paper hvp", ...) to the list of matrix products
//! eoslab's closed-form derivatives make for it (recorded by `bench gemm-calls`: m, n, k, operand
//! transposes, whether the product is added into the previous one's result). For every candidate
//! this binary has (the `gemm` crate as compiled, faer with `--features faer`, and every CBLAS
//! library named on the command line, loaded at run time) it times each set as one back-to-back
//! sequence, REPS times after one untimed pass, and prints one JSON line per candidate and set:
//! median and min-max seconds, and the largest relative difference of any product against the
//! `gemm` crate computed in f64 from the same inputs (max |C − C_ref| / max |C_ref|).
//! Threads: RAYON_NUM_THREADS for the Rust candidates; the libraries read their own variables
//! (OPENBLAS_NUM_THREADS, BLIS_NUM_THREADS, MKL_NUM_THREADS), which `run.py` sets alike.
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Instant;

/// One recorded product (the fields eoslab's `kernels::GemmCall` writes).
#[derive(Clone, Copy, Debug, Deserialize)]
struct Call {
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    accumulate: bool,
}

/// (row, column) strides of the operands `a` and `b` as used, over row-major storage.
fn strides(c: &Call) -> ((isize, isize), (isize, isize)) {
    let a = if c.ta {
        (1, c.m as isize)
    } else {
        (c.k as isize, 1)
    };
    let b = if c.tb {
        (1, c.k as isize)
    } else {
        (c.n as isize, 1)
    };
    (a, b)
}

/// The element types timed.
trait Elem: Copy + Send + Sync + 'static {
    const NAME: &'static str;
    fn from(x: f64) -> Self;
    fn to(self) -> f64;
    fn gemm_crate(c: &Call, a: &[Self], b: &[Self], dst: &mut [Self], threads: usize);
    #[cfg(feature = "faer")]
    fn faer(c: &Call, a: &[Self], b: &[Self], dst: &mut [Self], threads: usize);
    fn cblas_symbol() -> &'static [u8];
}

// CBLAS enums (row-major, no transpose, transpose).
const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;
type Cblas<T> = unsafe extern "C" fn(
    i32,
    i32,
    i32,
    i32,
    i32,
    i32,
    T,
    *const T,
    i32,
    *const T,
    i32,
    T,
    *mut T,
    i32,
);

macro_rules! elem {
    ($t:ty, $name:literal, $sym:literal) => {
        impl Elem for $t {
            const NAME: &'static str = $name;
            fn from(x: f64) -> Self {
                x as $t
            }
            fn to(self) -> f64 {
                self as f64
            }
            fn gemm_crate(c: &Call, a: &[Self], b: &[Self], dst: &mut [Self], threads: usize) {
                let ((a_rs, a_cs), (b_rs, b_cs)) = strides(c);
                let par = if threads > 1 {
                    gemm::Parallelism::Rayon(threads)
                } else {
                    gemm::Parallelism::None
                };
                // SAFETY: a, b and dst hold m·k, k·n and m·n elements, row-major with the
                // strides above (checked by `buffers`).
                unsafe {
                    gemm::gemm(
                        c.m,
                        c.n,
                        c.k,
                        dst.as_mut_ptr(),
                        1,
                        c.n as isize,
                        c.accumulate,
                        a.as_ptr(),
                        a_cs,
                        a_rs,
                        b.as_ptr(),
                        b_cs,
                        b_rs,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        par,
                    )
                }
            }
            #[cfg(feature = "faer")]
            fn faer(c: &Call, a: &[Self], b: &[Self], dst: &mut [Self], threads: usize) {
                use faer::{MatMut, MatRef};
                let a = if c.ta {
                    MatRef::from_row_major_slice(a, c.k, c.m).transpose()
                } else {
                    MatRef::from_row_major_slice(a, c.m, c.k)
                };
                let b = if c.tb {
                    MatRef::from_row_major_slice(b, c.n, c.k).transpose()
                } else {
                    MatRef::from_row_major_slice(b, c.k, c.n)
                };
                let dst = MatMut::from_row_major_slice_mut(dst, c.m, c.n);
                let par = if threads > 1 {
                    faer::Par::rayon(threads)
                } else {
                    faer::Par::Seq
                };
                let acc = if c.accumulate {
                    faer::Accum::Add
                } else {
                    faer::Accum::Replace
                };
                faer::linalg::matmul::matmul(dst, acc, a, b, 1.0, par);
            }
            fn cblas_symbol() -> &'static [u8] {
                $sym
            }
        }
    };
}
elem!(f32, "f32", b"cblas_sgemm\0");
elem!(f64, "f64", b"cblas_dgemm\0");

/// eoslab's threading (src/kernels/matmul.rs): the result's rows (or columns, when there are
/// more) cut into one contiguous block a thread (whole 16-element tiles), each block a
/// single-threaded `gemm` product.
fn gemm_blocks<T: Elem>(c: &Call, a: &[T], b: &[T], dst: &mut [T], threads: usize) {
    let ((a_rs, a_cs), (b_rs, b_cs)) = strides(c);
    let by_rows = c.m >= c.n;
    let len = if by_rows { c.m } else { c.n };
    let step = len.div_ceil(threads).next_multiple_of(16);
    struct P<T>(*mut T, *const T, *const T);
    unsafe impl<T> Sync for P<T> {}
    let p = P(dst.as_mut_ptr(), a.as_ptr(), b.as_ptr());
    let block = |r: std::ops::Range<usize>| {
        let p = &p;
        let (rows, cols) = if by_rows { (r, 0..c.n) } else { (0..c.m, r) };
        // SAFETY: blocks of dst are disjoint; offsets stay within the buffers (see `buffers`).
        unsafe {
            gemm::gemm(
                rows.len(),
                cols.len(),
                c.k,
                p.0.offset(rows.start as isize * c.n as isize + cols.start as isize),
                1,
                c.n as isize,
                c.accumulate,
                p.1.offset(rows.start as isize * a_rs),
                a_cs,
                a_rs,
                p.2.offset(cols.start as isize * b_cs),
                b_cs,
                b_rs,
                T::from(1.0),
                T::from(1.0),
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    };
    let cuts: Vec<_> = (0..len)
        .step_by(step)
        .map(|s| s..(s + step).min(len))
        .collect();
    rayon::scope(|s| {
        for r in cuts {
            let block = &block;
            s.spawn(move |_| block(r));
        }
    });
}

/// Deterministic inputs in [−0.5, 0.5) (timing does not depend on the values).
fn fill<T: Elem>(len: usize, seed: u64) -> Vec<T> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            T::from((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        })
        .collect()
}

/// Operands and destination of every call of a set.
struct Buffers<T> {
    a: Vec<Vec<T>>,
    b: Vec<Vec<T>>,
    dst: Vec<Vec<T>>,
    /// The destination each call writes: an accumulating call adds into its predecessor's.
    target: Vec<usize>,
}

fn buffers<T: Elem>(calls: &[Call]) -> Buffers<T> {
    let mut buf = Buffers {
        a: vec![],
        b: vec![],
        dst: vec![],
        target: vec![],
    };
    for (i, c) in calls.iter().enumerate() {
        buf.a.push(fill(c.m * c.k, 2 * i as u64 + 1));
        buf.b.push(fill(c.k * c.n, 2 * i as u64 + 2));
        let t = if c.accumulate && i > 0 {
            buf.target[i - 1]
        } else {
            i
        };
        buf.target.push(t);
        buf.dst.push(if t == i {
            vec![T::from(0.0); c.m * c.n]
        } else {
            Vec::new()
        });
    }
    buf
}

/// A candidate: a name and one product into a destination.
type Product<'a, T> = Box<dyn Fn(&Call, &[T], &[T], &mut [T]) + 'a>;

fn candidates<'a, T: Elem>(
    threads: usize,
    libs: &'a [(String, libloading::Library)],
) -> Vec<(String, Product<'a, T>)> {
    let v4 = cfg!(feature = "avx512") && std::is_x86_feature_detected!("avx512f");
    let name = if v4 {
        "gemm 0.19 AVX-512 (x86-v4)"
    } else {
        "gemm 0.19 AVX2/FMA"
    };
    let mut out: Vec<(String, Product<'a, T>)> = vec![(
        name.into(),
        Box::new(move |c, a, b, d| T::gemm_crate(c, a, b, d, threads)),
    )];
    // eoslab's threading of its kernels (with the AVX-512 build, the kernels eoslab compiles).
    if threads > 1 && cfg!(feature = "avx512") {
        out.push((
            format!("{name}, a block a thread"),
            Box::new(move |c, a, b, d| gemm_blocks(c, a, b, d, threads)),
        ));
    }
    #[cfg(feature = "faer")]
    out.push((
        "faer 0.24".into(),
        Box::new(move |c, a, b, d| T::faer(c, a, b, d, threads)),
    ));
    for (name, lib) in libs {
        // SAFETY: the symbol is the library's CBLAS entry point with this signature.
        let f: Cblas<T> = match unsafe { lib.get::<Cblas<T>>(T::cblas_symbol()) } {
            Ok(f) => *f,
            Err(e) => {
                eprintln!(
                    "{name}: no {}: {e}",
                    String::from_utf8_lossy(T::cblas_symbol())
                );
                continue;
            }
        };
        out.push((
            name.clone(),
            Box::new(move |c: &Call, a: &[T], b: &[T], d: &mut [T]| {
                let (lda, ldb) = (if c.ta { c.m } else { c.k }, if c.tb { c.k } else { c.n });
                let beta = T::from(if c.accumulate { 1.0 } else { 0.0 });
                // SAFETY: buffers sized for the call (see `buffers`), row-major leading dims.
                unsafe {
                    f(
                        ROW_MAJOR,
                        if c.ta { TRANS } else { NO_TRANS },
                        if c.tb { TRANS } else { NO_TRANS },
                        c.m as i32,
                        c.n as i32,
                        c.k as i32,
                        T::from(1.0),
                        a.as_ptr(),
                        lda as i32,
                        b.as_ptr(),
                        ldb as i32,
                        beta,
                        d.as_mut_ptr(),
                        c.n as i32,
                    )
                }
            }),
        ));
    }
    out
}

/// The set's products in f64 with the `gemm` crate, from the same (rounded) inputs.
fn reference<T: Elem>(calls: &[Call], buf: &Buffers<T>) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = buf.dst.iter().map(|d| vec![0.0; d.len()]).collect();
    for (i, c) in calls.iter().enumerate() {
        let a: Vec<f64> = buf.a[i].iter().map(|x| x.to()).collect();
        let b: Vec<f64> = buf.b[i].iter().map(|x| x.to()).collect();
        f64::gemm_crate(c, &a, &b, &mut out[buf.target[i]], 2);
    }
    out
}

fn run<T: Elem>(
    sets: &BTreeMap<String, Vec<Call>>,
    reps: usize,
    libs: &[(String, libloading::Library)],
) {
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for (set, calls) in sets {
        let mut buf = buffers::<T>(calls);
        let refs = reference(calls, &buf);
        for (name, f) in candidates::<T>(threads, libs) {
            let pass = |buf: &mut Buffers<T>| {
                for (i, c) in calls.iter().enumerate() {
                    f(c, &buf.a[i], &buf.b[i], &mut buf.dst[buf.target[i]]);
                }
            };
            pass(&mut buf); // untimed: first touch, thread pools, library start-up
            let mut err = 0.0f64;
            for (d, r) in buf.dst.iter().zip(&refs).filter(|(d, _)| !d.is_empty()) {
                let scale = r.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
                let diff = d
                    .iter()
                    .zip(r)
                    .fold(0.0f64, |m, (x, y)| m.max((x.to() - y).abs()));
                err = err.max(diff / scale);
            }
            let mut times: Vec<f64> = (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    pass(&mut buf);
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let flops: f64 = calls.iter().map(|c| 2.0 * (c.m * c.n * c.k) as f64).sum();
            let median = times[times.len() / 2];
            println!(
                "{}",
                json!({"set": set, "dtype": T::NAME, "threads": threads, "candidate": name,
                       "median": median, "min": times[0], "max": times[times.len() - 1],
                       "gflops": flops / median / 1e9, "max_rel_err": err, "calls": calls.len()})
            );
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: gemm-calibration CALLS.json f32|f64 REPS [NAME=LIBRARY.so ...]".into());
    }
    let text = std::fs::read_to_string(&args[0]).map_err(|e| format!("{}: {e}", args[0]))?;
    let sets: BTreeMap<String, Vec<Call>> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args[0]))?;
    let reps: usize = args[2]
        .parse()
        .map_err(|_| format!("REPS {:?} is not a number", args[2]))?;
    let mut libs = Vec::new();
    for spec in &args[3..] {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?} is not NAME=PATH"))?;
        // SAFETY: loading a BLAS library runs its initialisers, which is what linking would do.
        match unsafe { libloading::Library::new(path) } {
            Ok(l) => libs.push((name.to_string(), l)),
            Err(e) => eprintln!("{name}: cannot load {path}: {e}"),
        }
    }
    match args[1].as_str() {
        "f32" => run::<f32>(&sets, reps, &libs),
        "f64" => run::<f64>(&sets, reps, &libs),
        o => return Err(format!("dtype {o:?} (f32 or f64)").into()),
    }
    Ok(())
}
