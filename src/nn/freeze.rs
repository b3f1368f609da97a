//! Frozen parameters: gradients through a network to its input without gradients for its own
//! weights, as PyTorch's `requires_grad_(False)` on a module.

use std::cell::Cell;

thread_local! {
    static FROZEN: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the parameters of glimpse's layers frozen ([`crate::nn::Dense`],
/// [`crate::nn::Conv2D`], [`crate::nn::MaskedConv2D`], [`crate::nn::BatchNorm2D`]): the ops they
/// record on a tape inside `f` pass gradients to their inputs but compute none for their weights
/// and biases, which then have no gradient entry. A GAN's generator step backpropagates through
/// the discriminator this way without paying for the discriminator's weight gradients.
pub fn with_frozen_parameters<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            FROZEN.set(self.0);
        }
    }
    let _restore = Restore(FROZEN.replace(true));
    f()
}

/// Whether layers running now on this thread should record no parameter gradients.
pub(crate) fn parameters_frozen() -> bool {
    FROZEN.get()
}
