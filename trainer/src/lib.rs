//! Training of cross-encoder rerankers from a rankdistill store: the model files, the contrastive
//! and distillation losses, the streaming loader and the training loop. Nothing is implemented
//! yet; the crate is part of the workspace so that the pipeline's layout is fixed from the start.
