//! The Recurrent Attention Model (Mnih, Heess, Graves and Kavukcuoglu 2014) for glimpse: a model
//! that classifies an image from a few small multi-resolution glimpses, learning where to look by
//! REINFORCE.
//!
//! Built so far:
//! - [`sensor`]: the glimpse sensor ([`Retina`]), batched;
//! - [`tasks`]: the paper's tasks ([`Task`]: 28×28, translated 60×60, cluttered 60×60 and
//!   100×100), generated from seeded streams, and external test sets from `.npy` files.
//!
//! The networks, the hybrid loss and the `ram_mnist` trainer come next (issue 14).

pub mod sensor;
pub mod tasks;

pub use sensor::Retina;
pub use tasks::{load_test_set, Task};
