//! Tests of run directories: identity checks, exact logs, interrupted claims.
use super::identity::without_device;
use super::*;

#[test]
fn diff_names_every_changed_field_and_ignores_device() {
    let a = serde_json::json!({"run": {"lr": 0.01, "device": "cpu", "hidden": [512, 512]}, "seeds": [0, 1]});
    let b = serde_json::json!({"run": {"lr": 0.02, "device": "cuda:0", "hidden": [512, 256]}, "seeds": [0, 1]});
    let d = config_diff(&without_device(&a), &without_device(&b));
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].starts_with("run.hidden[1]: 512"), "{d:?}");
    assert!(d[1].starts_with("run.lr: 0.01"), "{d:?}");
}

#[test]
fn log_roundtrip_is_exact_with_nan() {
    let mut log = RunLog::new("x");
    for (i, v) in [1.0 / 3.0, f64::NAN, -0.0, 1e-310].iter().enumerate() {
        log.rows.push(MetricRow {
            branch: if i % 2 == 0 { "eos" } else { "stable" }.into(),
            seed: 7,
            step: i * 32,
            t_eff: i as f64 * 0.01,
            group: "inlier".into(),
            metric: "loss".into(),
            value: *v,
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.safetensors");
    let mut w = TableWriter::default();
    put_log(&mut w, "", &log);
    w.write(&p).unwrap();
    let back = get_log(&TableReader::open(&p).unwrap(), "").unwrap();
    assert_eq!(back.rows.len(), 4);
    for (a, b) in log.rows.iter().zip(&back.rows) {
        assert_eq!(a.value.to_bits(), b.value.to_bits());
        assert_eq!((&a.branch, a.step, a.t_eff), (&b.branch, b.step, b.t_eff));
    }
}

#[test]
fn open_refuses_foreign_and_mismatched_directories() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = serde_json::json!({"run": {"lr": 0.01, "device": "cpu"}});
    let d = dir.path().join("run");
    Resume::open(&d, cfg.clone(), "abc", ResumeOptions::default()).unwrap();
    // Same config on another device: fine. Other lr, or other data: errors.
    let other_dev = serde_json::json!({"run": {"lr": 0.01, "device": "cuda:0"}});
    Resume::open(&d, other_dev, "abc", ResumeOptions::default()).unwrap();
    let e = Resume::open(
        &d,
        serde_json::json!({"run": {"lr": 0.02, "device": "cpu"}}),
        "abc",
        ResumeOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("run.lr: 0.01 (directory) vs 0.02 (now)"), "{e}");
    let e = Resume::open(&d, cfg.clone(), "xyz", ResumeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("training set differs"), "{e}");
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    let e = Resume::open(&foreign, cfg, "abc", ResumeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty"), "{e}");
}

#[test]
fn open_completes_a_claim_interrupted_between_its_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = serde_json::json!({"run": {"lr": 0.01}});
    let d = dir.path().join("run");
    Resume::open(&d, cfg.clone(), "abc", ResumeOptions::default()).unwrap();
    // As a run killed after writing resume.json, and inside its write of config.json.
    std::fs::remove_file(d.join("config.json")).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let tmp = d.join(format!(".config.json.tmp-{}-1", child.id()));
    std::fs::write(&tmp, b"{").unwrap();
    Resume::open(&d, cfg.clone(), "abc", ResumeOptions::default()).unwrap();
    assert!(d.join("config.json").exists() && !tmp.exists());
    // A resume.json beside other files, or not this module's, is not taken for one.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("resume.json"), b"{\"format\": \"mine\"}").unwrap();
    let e = Resume::open(&other, cfg, "abc", ResumeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty"), "{e}");
}
