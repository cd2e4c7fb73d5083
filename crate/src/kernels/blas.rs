//! Opt-in (cargo feature `blas`): the closed-form derivatives' products through a system CBLAS
//! library loaded at run time, for machines where one beats the `gemm` crate (`make bench`
//! prints the calibration: at paper size MKL's single-threaded kernels were 1.1–1.6× faster).
//!
//! Which library: the path in `EOSLAB_BLAS`; unset, the first of [`CANDIDATES`] the loader
//! finds; `EOSLAB_BLAS=off` keeps the `gemm` crate. Nothing found: the `gemm` crate, with one
//! line on stderr. The library runs single-threaded; eoslab's own blocks (one a thread, see
//! `matmul.rs`) thread it. Unlike the default build, its bits may depend on the thread count:
//! a library may pick other kernels for a block of another shape.
use candle_core::{DType, WithDType};
use libloading::Library;
use std::sync::OnceLock;

/// Libraries tried in order when `EOSLAB_BLAS` is unset (MKL, OpenBLAS, BLIS sonames).
pub const CANDIDATES: [&str; 5] = [
    "libmkl_rt.so.3",
    "libmkl_rt.so.2",
    "libopenblas.so.0",
    "libblis.so.4",
    "libblis.so.3",
];

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

type Gemm<T> = unsafe extern "C" fn(
    i32, // layout
    i32, // trans a
    i32, // trans b
    i32, // m
    i32, // n
    i32, // k
    T,   // alpha
    *const T,
    i32, // lda
    *const T,
    i32, // ldb
    T,   // beta
    *mut T,
    i32, // ldc
);
type SetThreads = unsafe extern "C" fn(i32);
// BLIS counts threads in its `dim_t`, 64 bits in Debian's and the default builds.
type SetThreadsBlis = unsafe extern "C" fn(i64);

/// A loaded CBLAS library: its single- and double-precision products.
pub(crate) struct Cblas {
    /// Where it was loaded from.
    pub name: String,
    sgemm: Gemm<f32>,
    dgemm: Gemm<f64>,
    _lib: Library,
}

/// One operand block as CBLAS takes it: stored row-major with row length `ld`, used
/// transposed or not.
#[derive(Clone, Copy)]
pub(crate) struct Operand<T> {
    /// First element of the block.
    pub ptr: *const T,
    /// Row length of the stored matrix.
    pub ld: usize,
    /// Used transposed.
    pub transposed: bool,
}

impl Cblas {
    /// `c [m, n] (row length ldc) = a b` or, with `accumulate`, `c += a b`, for `T` f32 or f64.
    ///
    /// # Safety
    /// The pointers address matrices of the given shapes and row lengths; `c` is not read
    /// or written by anyone else meanwhile.
    pub(crate) unsafe fn gemm<T: WithDType>(
        &self,
        (m, n, k): (usize, usize, usize),
        a: Operand<T>,
        b: Operand<T>,
        (c, ldc): (*mut T, usize),
        accumulate: bool,
    ) {
        let tr = |t: bool| if t { TRANS } else { NO_TRANS };
        let int = |v: usize| i32::try_from(v).expect("matrix dimension fits a CBLAS int");
        let (ta, tb) = (tr(a.transposed), tr(b.transposed));
        let (m, n, k, lda, ldb, ldc) = (int(m), int(n), int(k), int(a.ld), int(b.ld), int(ldc));
        let beta = if accumulate { 1.0 } else { 0.0 };
        // SAFETY: the caller's contract; T is the type named by its DTYPE, so the casts are
        // identities; CBLAS reads a and b and writes c only.
        macro_rules! call {
            ($f:expr, $t:ty) => {
                $f(
                    ROW_MAJOR,
                    ta,
                    tb,
                    m,
                    n,
                    k,
                    1.0,
                    a.ptr.cast(),
                    lda,
                    b.ptr.cast(),
                    ldb,
                    beta as $t,
                    c.cast(),
                    ldc,
                )
            };
        }
        unsafe {
            match T::DTYPE {
                DType::F32 => call!(self.sgemm, f32),
                DType::F64 => call!(self.dgemm, f64),
                other => unreachable!("CBLAS products of {other:?}"),
            }
        }
    }
}

/// The library the products use, loaded on first call (`None`: the `gemm` crate).
pub(crate) fn cblas() -> Option<&'static Cblas> {
    static LIB: OnceLock<Option<Cblas>> = OnceLock::new();
    LIB.get_or_init(|| {
        let chosen = std::env::var("EOSLAB_BLAS").ok();
        let names: Vec<String> = match chosen.as_deref() {
            Some("off") => return None,
            Some(path) => vec![path.to_string()],
            None => CANDIDATES.iter().map(|s| s.to_string()).collect(),
        };
        let mut errors = Vec::new();
        for name in &names {
            match load(name) {
                Ok(lib) => return Some(lib),
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        eprintln!(
            "eoslab: built with the `blas` feature but no CBLAS library loaded ({}); \
             using the gemm crate (set EOSLAB_BLAS to a library's path)",
            errors.join("; ")
        );
        None
    })
    .as_ref()
}

/// Load `name` and resolve its products; make it single-threaded where it says how.
fn load(name: &str) -> Result<Cblas, String> {
    // SAFETY: loading a shared library runs its initialisers; CBLAS libraries have benign ones.
    let lib = unsafe { Library::new(name) }.map_err(|e| e.to_string())?;
    // SAFETY: the symbols have the CBLAS signatures declared above (the standard C interface).
    unsafe {
        let sgemm = *lib
            .get::<Gemm<f32>>(b"cblas_sgemm\0")
            .map_err(|e| e.to_string())?;
        let dgemm = *lib
            .get::<Gemm<f64>>(b"cblas_dgemm\0")
            .map_err(|e| e.to_string())?;
        // Threads come from eoslab's blocks; the library's own pool would oversubscribe.
        for sym in [&b"MKL_Set_Num_Threads\0"[..], b"openblas_set_num_threads\0"] {
            if let Ok(set) = lib.get::<SetThreads>(sym) {
                set(1);
            }
        }
        if let Ok(set) = lib.get::<SetThreadsBlis>(b"bli_thread_set_num_threads\0") {
            set(1);
        }
        Ok(Cblas {
            name: name.to_string(),
            sgemm,
            dgemm,
            _lib: lib,
        })
    }
}
