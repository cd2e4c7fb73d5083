//! The seed inputs of the fuzz corpora, written with the library's own writers (and a few
//! hand-made malformed cases): `cargo test --test fuzz_regressions -- --ignored
//! write_seed_corpus` rewrites `fuzz/corpus/<target>/seed-*`.
use super::*;
use eoslab::checkpoint::{self, CheckpointMeta};
use eoslab::data::Dataset;
use eoslab::loss::LossKind;
use eoslab::metrics::{MetricRow, RunLog};
use eoslab::model::{Activation, InitSpec, Model, ModelSpec};
use eoslab::objective::Objective;
use eoslab::resume::TableWriter;
use eoslab::sharpness::SharpnessRecord;
use eoslab::train::{GradientDescent, StepRecord};
use std::collections::BTreeMap;
use std::io::Write;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// The MNIST target's packing of an images file and a labels file.
fn pack(images: &[u8], labels: &[u8]) -> Vec<u8> {
    let mut b = (images.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(images);
    b.extend_from_slice(labels);
    b
}

fn small_dataset() -> Dataset {
    let x: Vec<f64> = (0..12).map(|i| i as f64 * 0.25 - 1.0).collect();
    let mut ds = Dataset::new("seed[0,1]", x, vec![0, 1, 2], 4, 3).unwrap();
    ds.group = vec![0, 1, 0];
    ds.image_shape = Some([1, 2, 2]);
    ds
}

/// A safetensors file of raw tensors and metadata.
fn raw_safetensors(
    t: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)],
    meta: &[(&str, &str)],
) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = t
        .iter()
        .map(|(n, dt, s, b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(*dt, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// A checkpoint of a tiny process (`spec`, `momentum`), as written by the library.
fn checkpoint_bytes(
    dir: &Path,
    spec: &ModelSpec,
    dtype: candle_core::DType,
    momentum: f64,
) -> Vec<u8> {
    use candle_core::{Device, Tensor};
    let model = Model::new(
        spec,
        InitSpec {
            scale: 1.0,
            seed: 3,
        },
        &Device::Cpu,
        dtype,
    )
    .unwrap();
    let (n, d) = (4, spec.input_dim());
    let x: Vec<f64> = (0..n * d).map(|i| (i as f64 * 0.7).sin()).collect();
    let x = Tensor::from_vec(x, (n, d), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let y = Tensor::from_vec(vec![0u32, 1, 1, 0], n, &Device::Cpu).unwrap();
    let obj = Objective::new(x, y, spec.output_dim(), LossKind::Mse, None).unwrap();
    let mut gd = GradientDescent::new(model, obj, 0.05, momentum).unwrap();
    gd.run(2, &mut []).unwrap();
    let meta = CheckpointMeta::for_process(
        &gd,
        BTreeMap::from([("init".to_string(), 3)]),
        "0123456789abcdef",
        serde_json::json!({"lr": 0.05}),
    );
    let p = dir.join("ck.safetensors");
    checkpoint::save(&p, &gd, &meta).unwrap();
    std::fs::read(&p).unwrap()
}

#[test]
#[ignore = "rewrites fuzz/corpus/*/seed-*; run by hand after a format change"]
fn write_seed_corpus() {
    use safetensors::Dtype;
    let tmp = tempfile::tempdir().unwrap();
    let mut seeds: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    let mut add = |t: &'static str, name: &'static str, b: Vec<u8>| seeds.push((t, name, b));

    let csvs: [(&str, &str); 6] = [
        ("plain", "1.5,2,0\n-3,4e-1,2\n\n0,0,1.0\n"),
        ("header", "\u{feff}a,\"label\",b\r\n1,1,2\r\n3,0,4\r\n"),
        ("ragged", "1,2,0\n1,0\n"),
        ("text", "f,g,label\n1,2,0\n1,x,1\n"),
        ("nan-label", "1,nan,0\n2,1,1.5\n"),
        ("big-label", "1,2,70000\n"),
    ];
    for (name, text) in csvs {
        add("csv", name, text.as_bytes().to_vec());
    }
    add("csv_gz", "plain", gzip(csvs[0].1.as_bytes()));
    add("csv_gz", "header", gzip(csvs[1].1.as_bytes()));
    let mut two = gzip(b"1,2,1\n");
    two.extend(gzip(b"3,4,0\n"));
    add("csv_gz", "two-members", two);
    add("csv_gz", "not-utf8", gzip(&[b'1', b',', 0xff, b'\n']));

    let ds = small_dataset();
    let p = tmp.path().join("d.safetensors");
    tensors::export(&ds, &p, &[("seed".into(), "7".into())]).unwrap();
    add("safetensors", "export", std::fs::read(&p).unwrap());
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    add(
        "safetensors",
        "f32-images-u8-labels",
        raw_safetensors(
            &[
                (
                    "x",
                    Dtype::F32,
                    vec![2, 1, 1, 2],
                    f32s(&[0.5, -1.0, 2.0, 3.25]),
                ),
                ("y", Dtype::U8, vec![2], vec![0, 3]),
            ],
            &[("n_classes", "4"), ("image_shape", "[1,1,2]")],
        ),
    );
    add(
        "safetensors",
        "f16-bf16",
        raw_safetensors(
            &[
                ("x", Dtype::F16, vec![1, 2], vec![0x00, 0x3c, 0x00, 0xc0]),
                ("y", Dtype::I32, vec![1], vec![1, 0, 0, 0]),
                ("group", Dtype::I16, vec![1], vec![2, 0]),
            ],
            &[("name", "seed")],
        ),
    );

    let record = |label: u8| {
        let mut r = vec![label];
        r.extend((0..cifar::PIXELS).map(|k| (k * 7 % 256) as u8));
        r
    };
    add("cifar", "one-record", record(3));
    add("cifar", "two-records", [record(9), record(0)].concat());
    add("cifar", "bad-label", record(10));

    let images = idx(
        mnist::IMAGES_MAGIC,
        &[2, 2, 3],
        &[0, 50, 100, 150, 200, 255, 1, 2, 3, 4, 5, 6],
    );
    let labels = idx(mnist::LABELS_MAGIC, &[2], &[7, 1]);
    add("mnist_idx", "raw", pack(&images, &labels));
    add("mnist_idx", "gzipped", pack(&gzip(&images), &gzip(&labels)));
    add("mnist_idx", "swapped", pack(&labels, &images));

    let mlp = ModelSpec::mlp(&[3, 4, 2], Activation::Tanh);
    let cnn = ModelSpec::Cnn {
        input: [1, 4, 4],
        channels: vec![2],
        kernel: 3,
        pool: 2,
        outputs: 2,
        activation: Activation::Relu,
    };
    add(
        "checkpoint",
        "mlp-f64-momentum",
        checkpoint_bytes(tmp.path(), &mlp, candle_core::DType::F64, 0.9),
    );
    add(
        "checkpoint",
        "mlp-f32",
        checkpoint_bytes(tmp.path(), &mlp, candle_core::DType::F32, 0.0),
    );
    add(
        "checkpoint",
        "cnn-f32",
        checkpoint_bytes(tmp.path(), &cnn, candle_core::DType::F32, 0.0),
    );

    add("run_config", "same", CONFIG.as_bytes().to_vec());
    add(
        "run_config",
        "other-device-and-lr",
        br#"{"run":{"lr":0.02,"device":"cuda:0","hidden":[512],"loss":"mse","extra":{"a":[1,{"b":null}]}},"seeds":[0,1]}"#.to_vec(),
    );
    add(
        "run_config",
        "not-object",
        b"[1, 2.5e3, \"x\", true]".to_vec(),
    );
    add("resume_state", "same", RESUME.as_bytes().to_vec());
    add(
        "resume_state",
        "other-data",
        br#"{"format":"eoslab-resume-v1","train_fingerprint":"ffffffffffffffff"}"#.to_vec(),
    );
    add(
        "resume_state",
        "other-format",
        br#"{"format":"x","train_fingerprint":7}"#.to_vec(),
    );

    let p = tmp.path().join("monitor.safetensors");
    let mut w = TableWriter::default();
    w.meta("step", "2");
    let history: Vec<StepRecord> = (0..2)
        .map(|i| StepRecord {
            step: i,
            t_eff: i as f64 * 0.1,
            lr: 0.1,
            loss: 1.0 / (i + 1) as f64,
            grad_norm: f64::NAN,
        })
        .collect();
    eoslab::resume::put_history(&mut w, "hist.", &history);
    let record = SharpnessRecord {
        step: 1,
        t_eff: 0.1,
        lr: 0.1,
        threshold: 20.0,
        values: vec![3.0, 2.0],
        residuals: vec![1e-9, 1e-8],
        iterations: 7,
        converged: true,
        warm: false,
    };
    eoslab::resume::put_records(&mut w, "rec.", &[record]);
    w.meta("vectors", "1");
    let v = candle_core::Tensor::new(&[1.0f32, -2.0, 0.5], &candle_core::Device::Cpu).unwrap();
    w.tensor("vector.0", &v).unwrap();
    let mut log = RunLog::new("seed");
    log.rows.push(MetricRow {
        branch: "eos".into(),
        seed: 0,
        step: 1,
        t_eff: 0.1,
        group: "inlier".into(),
        metric: "loss".into(),
        value: 0.5,
    });
    eoslab::resume::put_log(&mut w, "log.", &log);
    w.write(&p).unwrap();
    add("monitor_state", "two-steps", std::fs::read(&p).unwrap());

    for (target, name, bytes) in seeds {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}
