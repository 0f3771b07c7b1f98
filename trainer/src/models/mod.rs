//! Model architectures, one file each.

pub mod bert;
mod fused;
mod gelu;
