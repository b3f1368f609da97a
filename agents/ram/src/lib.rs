//! The Recurrent Attention Model (Mnih, Heess, Graves and Kavukcuoglu 2014) for glimpse: a model
//! that classifies an image from a few small multi-resolution glimpses, learning where to look by
//! REINFORCE.
//!
//! - [`sensor`]: the glimpse sensor ([`Retina`]), batched;
//! - [`tasks`]: the paper's tasks ([`Task`]: 28×28, translated 60×60, cluttered 60×60 and
//!   100×100), generated from seeded streams, and external test sets from `.npy` files;
//! - [`model`]: the glimpse, core, location, baseline and classifier networks ([`Ram`]) and one
//!   episode of glimpses;
//! - [`loss`]: the hybrid loss (cross-entropy, REINFORCE with a baseline, the baseline's error);
//! - [`train`], [`config`], [`cli`]: the `ram_mnist` trainer on glimpse's run layer, and
//!   [`figures`], the picture of where it looks.

pub mod cli;
pub mod config;
pub mod figures;
pub mod loss;
pub mod model;
pub mod sensor;
pub mod tasks;
pub mod train;

/// What stops training or evaluating: glimpse's epoch-trainer error.
pub use glimpse::run::TrainError as RamError;

pub use loss::{hybrid_loss, BatchStats, HybridLoss};
pub use model::{Core, Episode, Looking, LstmCore, Ram, RnnCore};
pub use sensor::Retina;
pub use tasks::{load_test_set, Task};
