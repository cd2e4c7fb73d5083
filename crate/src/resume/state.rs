//! What a resumable run stores besides the training processes: the measurement state of a
//! process (its [`Stateful`] parts: sharpness records, warm-start vectors, metric log; and its
//! loss history), and the column codecs of the process-layer records that experiments reuse in
//! their [`super::Persist`] impls.
use super::*;
use crate::monitor::Monitor;

/// Write a metric log's rows as columns with prefix `p`.
pub fn put_log(w: &mut TableWriter, p: &str, log: &RunLog) {
    let r = &log.rows;
    w.meta(&format!("{p}run"), log.run.clone());
    w.strings(&format!("{p}branch"), r.iter().map(|x| x.branch.as_str()));
    w.strings(&format!("{p}group"), r.iter().map(|x| x.group.as_str()));
    w.strings(&format!("{p}metric"), r.iter().map(|x| x.metric.as_str()));
    w.u64(
        &format!("{p}seed"),
        &r.iter().map(|x| x.seed).collect::<Vec<_>>(),
    );
    w.u64(
        &format!("{p}step"),
        &r.iter().map(|x| x.step as u64).collect::<Vec<_>>(),
    );
    let n = r.len();
    w.f64(
        &format!("{p}t_eff"),
        &r.iter().map(|x| x.t_eff).collect::<Vec<_>>(),
        vec![n],
    );
    w.f64(
        &format!("{p}value"),
        &r.iter().map(|x| x.value).collect::<Vec<_>>(),
        vec![n],
    );
}

/// Read a metric log written by [`put_log`].
pub fn get_log(t: &TableReader, p: &str) -> Result<RunLog> {
    let (branch, group, metric) = (
        t.strings(&format!("{p}branch"))?,
        t.strings(&format!("{p}group"))?,
        t.strings(&format!("{p}metric"))?,
    );
    let (seed, step) = (t.u64(&format!("{p}seed"))?, t.u64(&format!("{p}step"))?);
    let (t_eff, value) = (t.f64(&format!("{p}t_eff"))?, t.f64(&format!("{p}value"))?);
    let n = branch.len();
    if [
        group.len(),
        metric.len(),
        seed.len(),
        step.len(),
        t_eff.len(),
        value.len(),
    ]
    .iter()
    .any(|&k| k != n)
    {
        return Err(Error::data(&t.path, "log columns have different lengths"));
    }
    let mut log = RunLog::new(t.meta(&format!("{p}run"))?);
    for i in 0..n {
        log.rows.push(MetricRow {
            branch: branch[i].clone(),
            seed: seed[i],
            step: step[i] as usize,
            t_eff: t_eff[i],
            group: group[i].clone(),
            metric: metric[i].clone(),
            value: value[i],
        });
    }
    Ok(log)
}

/// A part of a training process's measurement state (a sharpness tracker, a metric log, a
/// monitor holding both) that is saved with each checkpoint and restored with it, so the
/// driver ([`super::drive`]) restores any set of parts, not one fixed triple.
pub trait Stateful {
    /// Write this part's columns.
    fn put_state(&self, w: &mut TableWriter) -> Result<()>;
    /// Read them back from a table written by [`Stateful::put_state`], tensors on `device`.
    fn get_state(&mut self, t: &TableReader, device: &Device) -> Result<()>;
}

impl Stateful for SharpnessTracker {
    fn put_state(&self, w: &mut TableWriter) -> Result<()> {
        put_records(w, "rec.", &self.records);
        if let Some(vs) = &self.vectors {
            w.meta("vectors", vs.len().to_string());
            for (i, v) in vs.iter().enumerate() {
                w.tensor(&format!("vector.{i}"), v)?;
            }
        }
        Ok(())
    }
    fn get_state(&mut self, t: &TableReader, device: &Device) -> Result<()> {
        self.records = get_records(t, "rec.")?;
        self.vectors = get_vectors(t, device)?;
        Ok(())
    }
}

impl Stateful for RunLog {
    fn put_state(&self, w: &mut TableWriter) -> Result<()> {
        put_log(w, "log.", self);
        Ok(())
    }
    fn get_state(&mut self, t: &TableReader, _: &Device) -> Result<()> {
        *self = get_log(t, "log.")?;
        Ok(())
    }
}

impl Stateful for Monitor {
    fn put_state(&self, w: &mut TableWriter) -> Result<()> {
        self.tracker.put_state(w)?;
        self.log.put_state(w)
    }
    fn get_state(&mut self, t: &TableReader, device: &Device) -> Result<()> {
        self.tracker.get_state(t, device)?;
        self.log.get_state(t, device)
    }
}

/// The warm-start eigenvectors stored by [`SharpnessTracker`]'s [`Stateful::put_state`].
fn get_vectors(t: &TableReader, device: &Device) -> Result<Option<Vec<Tensor>>> {
    let Ok(n) = t.meta("vectors") else {
        return Ok(None);
    };
    let n: usize = n
        .parse()
        .map_err(|_| Error::data(&t.path, "bad vector count"))?;
    (0..n)
        .map(|i| t.tensor(&format!("vector.{i}"), device))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Write a checkpoint's measurement file: the process's step and loss history, then `parts`.
pub(super) fn save_parts(
    path: &Path,
    step: usize,
    history: &[StepRecord],
    parts: &[&mut dyn Stateful],
) -> Result<()> {
    let mut w = TableWriter::default();
    w.meta("step", step.to_string());
    put_history(&mut w, "hist.", history);
    for p in parts {
        p.put_state(&mut w)?;
    }
    w.write(path)
}

/// Read the step of a file written by [`save_parts`].
pub(super) fn get_step(t: &TableReader) -> Result<usize> {
    t.meta("step")?
        .parse()
        .map_err(|_| Error::data(&t.path, "bad step"))
}

/// The measurement state of a monitored process at a step, as a checkpoint of a process
/// measured by a [`Monitor`] holds it: sharpness records, warm-start vectors, log, and the
/// process's loss history.
pub struct MonitorState {
    /// Step of the process when saved.
    pub step: usize,
    /// The process's per-step records so far.
    pub history: Vec<StepRecord>,
    /// Sharpness records so far.
    pub records: Vec<SharpnessRecord>,
    /// Latest eigenvectors (warm start).
    pub vectors: Option<Vec<Tensor>>,
    /// Metric log so far.
    pub log: RunLog,
}

impl MonitorState {
    /// Load, with the eigenvectors on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<MonitorState> {
        MonitorState::from_table(&TableReader::open(path)?, device)
    }

    /// The measurement state in an opened table file, with the eigenvectors on `device`.
    pub fn from_table(t: &TableReader, device: &Device) -> Result<MonitorState> {
        let step = get_step(t)?;
        let records = get_records(t, "rec.")?;
        let vectors = get_vectors(t, device)?;
        Ok(MonitorState {
            step,
            history: get_history(t, "hist.")?,
            records,
            vectors,
            log: get_log(t, "log.")?,
        })
    }
}

/// Write sharpness records as columns with prefix `p`.
pub fn put_records(w: &mut TableWriter, p: &str, r: &[SharpnessRecord]) {
    let n = r.len();
    let col = |f: fn(&SharpnessRecord) -> f64| r.iter().map(f).collect::<Vec<_>>();
    w.u64(
        &format!("{p}k"),
        &r.iter().map(|x| x.values.len() as u64).collect::<Vec<_>>(),
    );
    w.u64(
        &format!("{p}step"),
        &r.iter().map(|x| x.step as u64).collect::<Vec<_>>(),
    );
    w.u64(
        &format!("{p}iterations"),
        &r.iter().map(|x| x.iterations as u64).collect::<Vec<_>>(),
    );
    w.u64(
        &format!("{p}flags"),
        &r.iter()
            .map(|x| x.converged as u64 | (x.warm as u64) << 1)
            .collect::<Vec<_>>(),
    );
    w.f64(&format!("{p}t_eff"), &col(|x| x.t_eff), vec![n]);
    w.f64(&format!("{p}lr"), &col(|x| x.lr), vec![n]);
    w.f64(&format!("{p}threshold"), &col(|x| x.threshold), vec![n]);
    let vals: Vec<f64> = r.iter().flat_map(|x| x.values.iter().copied()).collect();
    let res: Vec<f64> = r.iter().flat_map(|x| x.residuals.iter().copied()).collect();
    w.f64(&format!("{p}values"), &vals, vec![vals.len()]);
    w.f64(&format!("{p}residuals"), &res, vec![res.len()]);
}

/// Read sharpness records written by [`put_records`].
pub fn get_records(t: &TableReader, p: &str) -> Result<Vec<SharpnessRecord>> {
    let c = |n: &str| format!("{p}{n}");
    let (k, st, it, fl) = (
        t.u64(&c("k"))?,
        t.u64(&c("step"))?,
        t.u64(&c("iterations"))?,
        t.u64(&c("flags"))?,
    );
    let (te, lr, th) = (
        t.f64(&c("t_eff"))?,
        t.f64(&c("lr"))?,
        t.f64(&c("threshold"))?,
    );
    let (vals, res) = (t.f64(&c("values"))?, t.f64(&c("residuals"))?);
    let n = k.len();
    if [st.len(), it.len(), fl.len(), te.len(), lr.len(), th.len()]
        .iter()
        .any(|&m| m != n)
    {
        return Err(Error::data(
            &t.path,
            "sharpness columns have different lengths",
        ));
    }
    let mut out = Vec::with_capacity(n);
    let mut off = 0usize;
    for i in 0..n {
        let ki = k[i] as usize;
        // Checked: `k` comes from the file, and a huge count must not wrap around.
        let end = off
            .checked_add(ki)
            .filter(|&e| e <= vals.len() && e <= res.len());
        let Some(end) = end else {
            return Err(Error::data(&t.path, "sharpness records truncated"));
        };
        out.push(SharpnessRecord {
            step: st[i] as usize,
            t_eff: te[i],
            lr: lr[i],
            threshold: th[i],
            values: vals[off..end].to_vec(),
            residuals: res[off..end].to_vec(),
            iterations: it[i] as usize,
            converged: fl[i] & 1 == 1,
            warm: fl[i] & 2 == 2,
        });
        off = end;
    }
    Ok(out)
}

/// Write per-step records as columns with prefix `p`.
pub fn put_history(w: &mut TableWriter, p: &str, h: &[StepRecord]) {
    let n = h.len();
    let col = |f: fn(&StepRecord) -> f64| h.iter().map(f).collect::<Vec<_>>();
    w.u64(
        &format!("{p}step"),
        &h.iter().map(|x| x.step as u64).collect::<Vec<_>>(),
    );
    w.f64(&format!("{p}t_eff"), &col(|x| x.t_eff), vec![n]);
    w.f64(&format!("{p}lr"), &col(|x| x.lr), vec![n]);
    w.f64(&format!("{p}loss"), &col(|x| x.loss), vec![n]);
    w.f64(&format!("{p}grad_norm"), &col(|x| x.grad_norm), vec![n]);
}

/// Read per-step records written by [`put_history`].
pub fn get_history(t: &TableReader, p: &str) -> Result<Vec<StepRecord>> {
    let c = |n: &str| format!("{p}{n}");
    let st = t.u64(&c("step"))?;
    let (te, lr, lo, gn) = (
        t.f64(&c("t_eff"))?,
        t.f64(&c("lr"))?,
        t.f64(&c("loss"))?,
        t.f64(&c("grad_norm"))?,
    );
    if [te.len(), lr.len(), lo.len(), gn.len()]
        .iter()
        .any(|&m| m != st.len())
    {
        return Err(Error::data(
            &t.path,
            "history columns have different lengths",
        ));
    }
    Ok((0..st.len())
        .map(|i| StepRecord {
            step: st[i] as usize,
            t_eff: te[i],
            lr: lr[i],
            loss: lo[i],
            grad_norm: gn[i],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_record_length_is_an_error_not_an_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("monitor.safetensors");
        let mut w = TableWriter::default();
        for c in ["rec.step", "rec.iterations", "rec.flags"] {
            w.u64(c, &[0, 0]);
        }
        // The second record's length wraps `offset + length` around to 0 unless checked.
        w.u64("rec.k", &[1, u64::MAX]);
        for c in [
            "rec.t_eff",
            "rec.lr",
            "rec.threshold",
            "rec.values",
            "rec.residuals",
        ] {
            w.f64(c, &[1.0, 2.0], vec![2]);
        }
        w.write(&p).unwrap();
        let e = get_records(&TableReader::open(&p).unwrap(), "rec.")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("monitor.safetensors") && e.contains("truncated"),
            "{e}"
        );
    }
}
