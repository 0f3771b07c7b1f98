use candle_core::{DType, Device, Module, Tensor};
use rankdistill_trainer::{CrossEncoder, LoadOptions};
use std::time::Instant;

fn main() {
    let dir =
        std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/rankdistill/all-MiniLM-L6-v2");
    let model = CrossEncoder::load(&dir, &LoadOptions::default()).unwrap();
    let passage = "word ".repeat(200);
    let pairs: Vec<(&str, &str)> = (0..64)
        .map(|_| ("what is the query about", passage.as_str()))
        .collect();
    let batch = model.tokenize(&pairs, 128).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let s = model.score_batch(&batch).unwrap();
        let el = t.elapsed().as_secs_f64();
        println!(
            "forward 64x128: {:.3}s  {:.1} pairs/s  {:.1} GFLOP/s (approx)",
            el,
            64.0 / el,
            64.0 * 128.0 * 22e6 / el / 1e9
        );
        assert_eq!(s.len(), 64);
    }
    let a = Tensor::randn(0f32, 1.0, (64 * 128, 384), &Device::Cpu).unwrap();
    let w = Tensor::randn(0f32, 1.0, (1536, 384), &Device::Cpu).unwrap();
    let lin = candle_nn::Linear::new(w.clone(), None);
    for _ in 0..3 {
        let t = Instant::now();
        let _ = a.matmul(&w.t().unwrap()).unwrap();
        let el = t.elapsed().as_secs_f64();
        println!(
            "2D matmul 8192x384x1536: {:.4}s {:.1} GFLOP/s",
            el,
            2.0 * 8192.0 * 384.0 * 1536.0 / el / 1e9
        );
    }
    let a3 = a.reshape((64, 128, 384)).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let _ = lin.forward(&a3).unwrap();
        let el = t.elapsed().as_secs_f64();
        println!(
            "3D linear: {:.4}s {:.1} GFLOP/s",
            el,
            2.0 * 8192.0 * 384.0 * 1536.0 / el / 1e9
        );
    }
    let q = Tensor::randn(0f32, 1.0, (64, 12, 128, 32), &Device::Cpu).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let s = q.matmul(&q.t().unwrap()).unwrap();
        let el = t.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let p = candle_nn::ops::softmax_last_dim(&s).unwrap();
        let el2 = t2.elapsed().as_secs_f64();
        let t3 = Instant::now();
        let _ = p.matmul(&q).unwrap();
        let el3 = t3.elapsed().as_secs_f64();
        println!("attn scores {:.4}s softmax {:.4}s context {:.4}s", el, el2, el3);
    }
    let _ = DType::F32;
}
