//! Second-order autodiff guard.
//!
//! candle detaches every gradient it computes unless `CANDLE_GRAD_DO_NOT_DETACH` is set, and it
//! reads that variable once per thread, at the thread's first backward pass. Without it a second
//! backward (a Hessian-vector product) silently returns *no* gradient: zeros, no error. eoslab
//! sets the variable itself before any backward it runs, and then checks on every thread, with a
//! one-op probe, that gradients really keep their graph; if they do not, it returns an error
//! instead of a zero Hessian.
use crate::{Error, Result};
use candle_core::{Device, Tensor, Var};
use std::cell::Cell;
use std::sync::Once;

static SET_ENV: Once = Once::new();

thread_local! {
    static CHECKED: Cell<bool> = const { Cell::new(false) };
}

/// Name of candle's switch for differentiable gradients.
pub const DO_NOT_DETACH: &str = "CANDLE_GRAD_DO_NOT_DETACH";

/// Make gradients computed on this thread differentiable, or explain why they cannot be.
///
/// Called by every eoslab function that runs a backward pass; users never need to call it, but
/// may, early, if they also run their own candle backward passes on the same thread.
pub fn ensure_second_order() -> Result<()> {
    if CHECKED.with(|c| c.get()) {
        return Ok(());
    }
    SET_ENV.call_once(|| {
        if std::env::var(DO_NOT_DETACH)
            .map(|v| v.is_empty() || v == "0")
            .unwrap_or(true)
        {
            // SAFETY: done once per process, before eoslab's first backward pass. Another
            // thread reading the environment at this very moment is the only hazard; eoslab
            // starts no threads before this point.
            unsafe { std::env::set_var(DO_NOT_DETACH, "1") };
        }
    });
    if !gradients_keep_graph()? {
        return Err(Error::Numerics(format!(
            "second-order gradients are disabled on this thread: a candle backward pass ran here \
             before eoslab could set {DO_NOT_DETACH}=1 (candle reads it once per thread). Set \
             {DO_NOT_DETACH}=1 in the environment before starting the program, or call \
             eoslab::autodiff::ensure_second_order() before any other backward pass"
        )));
    }
    CHECKED.with(|c| c.set(true));
    Ok(())
}

/// Probe: does a gradient computed on this thread still carry its graph?
pub fn gradients_keep_graph() -> Result<bool> {
    let a = Var::new(&[1.5f64], &Device::Cpu)?;
    let y = a.as_tensor().sqr()?.sum_all()?;
    let g = y.backward()?;
    let ga = g
        .get(a.as_tensor())
        .ok_or_else(|| Error::Numerics("autodiff probe: no gradient".into()))?;
    Ok(ga.track_op())
}

/// Error unless `t` (a gradient to be differentiated again) is attached to a graph.
pub fn require_graph(t: &Tensor, what: &str) -> Result<()> {
    if t.track_op() {
        Ok(())
    } else {
        Err(Error::Numerics(format!(
            "{what} is detached from the computation graph: a second backward pass would silently \
             return zero (is {DO_NOT_DETACH}=1 set before the first backward on this thread?)"
        )))
    }
}
