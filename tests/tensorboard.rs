//! The event files `glimpse::log` writes are read back by the real `tensorboard` package.
//!
//! Needs `$GLIMPSE_PYTHON` (a Python with `tensorboard`); skipped when unset unless
//! `GLIMPSE_REQUIRE_PYTHON=1`.

use glimpse::image::Image;
use glimpse::log::SummaryWriter;
use std::process::Command;

const READER: &str = r#"
import json, sys, io
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0, "images": 0})
acc.Reload()
out = {"scalars": {}, "histograms": {}, "images": {}}
for tag in acc.Tags()["scalars"]:
    out["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
for tag in acc.Tags()["histograms"]:
    out["histograms"][tag] = [
        {"step": e.step, "min": e.histogram_value.min, "max": e.histogram_value.max,
         "num": e.histogram_value.num, "sum": e.histogram_value.sum,
         "sum_squares": e.histogram_value.sum_squares,
         "bucket": list(e.histogram_value.bucket), "bucket_limit": list(e.histogram_value.bucket_limit)}
        for e in acc.Histograms(tag)]
for tag in acc.Tags()["images"]:
    out["images"][tag] = [{"step": e.step, "width": e.width, "height": e.height,
                           "png": list(e.encoded_image_string)} for e in acc.Images(tag)]
print(json.dumps(out))
"#;

fn python() -> Option<String> {
    match std::env::var("GLIMPSE_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var("GLIMPSE_REQUIRE_PYTHON").as_deref() == Ok("1") => {
            panic!("GLIMPSE_REQUIRE_PYTHON=1 but GLIMPSE_PYTHON is not set")
        }
        _ => {
            eprintln!("skipped: set GLIMPSE_PYTHON to a Python with tensorboard to run this test");
            None
        }
    }
}

#[test]
fn tensorboard_reads_scalars_histograms_and_images() {
    let Some(py) = python() else { return };
    let dir = std::env::temp_dir().join(format!("glimpse-tb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = SummaryWriter::new(&dir).unwrap();
    for step in 0..5u64 {
        w.scalar("charts/episodic_return", 10.0 * step as f64 + 0.5, step * 100).unwrap();
    }
    w.scalar("losses/td_loss", 0.25, 7).unwrap();
    let values: Vec<f32> = (0..1000).map(|i| (i as f32 / 999.0) * 4.0 - 1.0).collect();
    w.histogram("q_values", &values, 3).unwrap();
    // Non-square RGB image whose pixel values encode their position: a transposed image would differ.
    let (width, height) = (40, 20);
    let data: Vec<u8> =
        (0..height).flat_map(|y| (0..width).flat_map(move |x| [x as u8 * 6, y as u8 * 12, 7])).collect();
    let img = Image::new(width, height, 3, data).unwrap();
    w.image("samples", &img, 9).unwrap();
    w.flush().unwrap();

    let out = Command::new(&py).arg("-c").arg(READER).arg(&dir).output().expect("run GLIMPSE_PYTHON");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let ret = v["scalars"]["charts/episodic_return"].as_array().unwrap();
    assert_eq!(ret.len(), 5);
    for (i, e) in ret.iter().enumerate() {
        assert_eq!(e[0].as_u64().unwrap(), i as u64 * 100);
        assert!((e[1].as_f64().unwrap() - (10.0 * i as f64 + 0.5)).abs() < 1e-6);
    }
    assert_eq!(v["scalars"]["losses/td_loss"][0][1].as_f64().unwrap(), 0.25);

    let h = &v["histograms"]["q_values"][0];
    assert_eq!(h["step"], 3);
    assert_eq!(h["num"].as_f64().unwrap(), 1000.0);
    assert!((h["min"].as_f64().unwrap() + 1.0).abs() < 1e-6 && (h["max"].as_f64().unwrap() - 3.0).abs() < 1e-6);
    let sum: f64 = values.iter().map(|&x| x as f64).sum();
    assert!((h["sum"].as_f64().unwrap() - sum).abs() < 1e-6);
    let buckets: Vec<f64> = h["bucket"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
    assert_eq!(buckets.len(), 30);
    assert_eq!(buckets.iter().sum::<f64>(), 1000.0);
    assert!(buckets.iter().all(|&b| (33.0..=34.0).contains(&b)), "{buckets:?}");

    let im = &v["images"]["samples"][0];
    assert_eq!(
        (im["width"].as_u64().unwrap(), im["height"].as_u64().unwrap(), im["step"].as_u64().unwrap()),
        (40, 20, 9)
    );
    let png_bytes: Vec<u8> = im["png"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
    assert_eq!(png_bytes, img.to_png().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}
