//! Model architectures, one file each.

pub mod bert;
pub mod dropout;
mod fused;
mod gelu;
