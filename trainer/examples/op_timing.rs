use candle_core::{Device, Tensor};
use std::time::Instant;

fn time<F: FnMut()>(label: &str, mut f: F) {
    f();
    let t = Instant::now();
    for _ in 0..3 {
        f();
    }
    println!("{label}: {:.4}s", t.elapsed().as_secs_f64() / 3.0);
}

fn main() {
    let d = Device::Cpu;
    let inter = Tensor::randn(0f32, 1.0, (64, 128, 1536), &d).unwrap();
    let hidden = Tensor::randn(0f32, 1.0, (64, 128, 384), &d).unwrap();
    let scores = Tensor::randn(0f32, 1.0, (64, 12, 128, 128), &d).unwrap();
    let mask = Tensor::zeros((64, 1, 1, 128), candle_core::DType::F32, &d).unwrap();
    let w = Tensor::ones(384, candle_core::DType::F32, &d).unwrap();
    let b = Tensor::zeros(384, candle_core::DType::F32, &d).unwrap();
    time("gelu_erf [64,128,1536]", || {
        inter.gelu_erf().unwrap();
    });
    time("gelu tanh [64,128,1536]", || {
        inter.gelu().unwrap();
    });
    time("mask add [64,12,128,128]", || {
        scores.broadcast_add(&mask).unwrap();
    });
    time("scale mul [64,12,128,128]", || {
        (&scores * 0.17).unwrap();
    });
    time("layer_norm [64,128,384]", || {
        candle_nn::ops::layer_norm(&hidden, &w, &b, 1e-12).unwrap();
    });
    time("residual add [64,128,384]", || {
        (&hidden + &hidden).unwrap();
    });
    time("split heads copy", || {
        hidden
            .reshape((64, 128, 12, 32))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap();
    });
    time("bias add linear [64,128,1536]", || {
        inter
            .broadcast_add(&Tensor::zeros(1536, candle_core::DType::F32, &d).unwrap())
            .unwrap();
    });
}
