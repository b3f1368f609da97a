//! A seeded shuffling batch iterator over an [`ImageSet`] that yields dfdx tensors.
//!
//! A batch holds `N` values per image, `N` being the set's `height * width` (784 for MNIST): the
//! tensor type fixes it, so where the code that uses the images does not, name it
//! (`loader.epoch::<784>(..)`). [`Loader::try_epoch`] checks it against the set.

use super::mnist::ImageSet;
use super::DataError;
use dfdx::prelude::{Const, Cpu, Tensor, TensorFromVec};
use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// How grey levels become model inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View {
    /// Grey level / 255, in [0, 1].
    Grey,
    /// 1 where grey level / 255 exceeds the threshold, else 0.
    Threshold(f32),
    /// 1 with probability grey level / 255, drawn afresh for every batch from the loader's seeded generator.
    Stochastic,
}

impl View {
    /// The expected value of the view of one grey level: the mean this view gives the pixel over many draws.
    ///
    /// ```
    /// use glimpse::data::View;
    /// assert_eq!(View::Grey.expected(51), 0.2);
    /// assert_eq!(View::Stochastic.expected(51), 0.2);
    /// assert_eq!(View::Threshold(0.5).expected(51), 0.0);
    /// ```
    pub fn expected(self, grey: u8) -> f32 {
        match self {
            View::Grey | View::Stochastic => grey as f32 / 255.0,
            View::Threshold(t) => f32::from(grey as f32 / 255.0 > t),
        }
    }

    /// Appends the view of `pixels` to `out`; `rng` is used only by [`View::Stochastic`].
    pub fn extend(self, pixels: &[u8], rng: &mut impl Rng, out: &mut Vec<f32>) {
        match self {
            View::Grey => out.extend(pixels.iter().map(|&p| p as f32 / 255.0)),
            View::Threshold(t) => out.extend(pixels.iter().map(|&p| f32::from(p as f32 / 255.0 > t))),
            View::Stochastic => out.extend(pixels.iter().map(|&p| f32::from(rng.gen::<f32>() < p as f32 / 255.0))),
        }
    }
}

impl ImageSet {
    /// The mean image of the set in `view`: for each pixel, its expected value over the images
    /// (all zeros for an empty set).
    pub fn mean_image(&self, view: View) -> Vec<f32> {
        let mut sums = vec![0.0f64; self.image_len()];
        for image in self.pixels().chunks_exact(self.image_len()) {
            sums.iter_mut().zip(image).for_each(|(s, &p)| *s += f64::from(view.expected(p)));
        }
        let n = self.len().max(1) as f64;
        sums.iter().map(|s| (s / n) as f32).collect()
    }
}

/// One mini-batch: images as a `(batch, N)` tensor (`N = height * width`, 784 for MNIST), with
/// their labels and positions in the set.
#[derive(Debug, Clone)]
pub struct Batch<const N: usize = 784> {
    /// The images, one row-major image per row, in the loader's [`View`].
    pub images: Tensor<(usize, Const<N>), f32, Cpu>,
    /// The class of each image.
    pub labels: Vec<usize>,
    /// The index of each image in the [`ImageSet`].
    pub indices: Vec<usize>,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

impl<const N: usize> Batch<N> {
    /// The images as a `(batch, 1, height, width)` tensor, for convolutional layers.
    pub fn image_planes(&self) -> Tensor<(usize, Const<1>, usize, usize), f32, Cpu> {
        use dfdx::prelude::ReshapeTo;
        self.images.clone().reshape_like(&(self.len(), Const::<1>, self.height, self.width))
    }

    /// Number of images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels as one-hot rows, for cross-entropy losses. A label outside 0..10 (which a batch
    /// drawn from an [`ImageSet`] cannot hold, only one edited by hand) gives a row of zeros; use
    /// [`Batch::try_one_hot`] to have it refused.
    pub fn one_hot(&self, dev: &Cpu) -> Tensor<(usize, Const<10>), f32, Cpu> {
        let mut data = vec![0.0; self.len() * 10];
        for (row, &label) in self.labels.iter().enumerate() {
            if let Some(cell) = data[row * 10..(row + 1) * 10].get_mut(label) {
                *cell = 1.0;
            }
        }
        dev.tensor_from_vec(data, (self.len(), Const))
    }

    /// [`Batch::one_hot`], refusing a label outside 0..10.
    pub fn try_one_hot(&self, dev: &Cpu) -> Result<Tensor<(usize, Const<10>), f32, Cpu>, DataError> {
        if let Some((i, &label)) = self.labels.iter().enumerate().find(|(_, &l)| l >= 10) {
            return Err(DataError::Inconsistent(format!(
                "label {label} of batch row {i} is not a class (expected 0 to 9)"
            )));
        }
        Ok(self.one_hot(dev))
    }
}

/// Produces epochs of mini-batches; the order (and stochastic binarisation) follow one seeded generator,
/// so the same seed gives the same sequence of epochs. The generator is ChaCha12, the stream
/// `rand::rngs::StdRng` gives, and can be saved ([`Loader::generator`]) so that a resumed run
/// continues with the next epoch's order.
#[derive(Debug, Clone)]
pub struct Loader {
    batch_size: usize,
    view: View,
    shuffle: bool,
    drop_last: bool,
    rng: ChaCha12Rng,
}

impl Loader {
    /// A shuffling loader. Panics if `batch_size` is 0.
    pub fn new(batch_size: usize, view: View, seed: u64) -> Self {
        assert!(batch_size > 0, "batch size must be positive");
        Self { batch_size, view, shuffle: true, drop_last: false, rng: ChaCha12Rng::seed_from_u64(seed) }
    }

    /// A loader that visits images in order (for evaluation). Panics if `batch_size` is 0.
    pub fn sequential(batch_size: usize, view: View) -> Self {
        Self { shuffle: false, ..Self::new(batch_size, view, 0) }
    }

    /// Drops the last batch of an epoch when it is smaller than the batch size.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The generator of the order and binarisation (serde: save it in a checkpoint).
    pub fn generator(&self) -> &ChaCha12Rng {
        &self.rng
    }

    /// Replaces the generator, e.g. by one [`Loader::generator`] gave and a checkpoint kept.
    pub fn set_generator(&mut self, rng: ChaCha12Rng) {
        self.rng = rng;
    }

    /// One pass over `set`, reshuffled (when shuffling) from the loader's generator, in batches of
    /// `N`-pixel images. Panics when `N` is not the set's `height * width` (see [`Loader::try_epoch`]).
    pub fn epoch<'a, const N: usize>(&'a mut self, set: &'a ImageSet, dev: &'a Cpu) -> Epoch<'a, N> {
        match self.try_epoch(set, dev) {
            Ok(epoch) => epoch,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Loader::epoch`], or an error when `N` is not the set's `height * width` (the loader's
    /// generator is not advanced then).
    pub fn try_epoch<'a, const N: usize>(
        &'a mut self,
        set: &'a ImageSet,
        dev: &'a Cpu,
    ) -> Result<Epoch<'a, N>, DataError> {
        if set.image_len() != N {
            return Err(DataError::Inconsistent(format!(
                "the set holds {}x{} images ({} pixels), batches of {N} pixels per image were asked for",
                set.height(),
                set.width(),
                set.image_len()
            )));
        }
        let mut order: Vec<usize> = (0..set.len()).collect();
        if self.shuffle {
            order.shuffle(&mut self.rng);
        }
        Ok(Epoch { loader: self, set, dev, order, pos: 0 })
    }
}

/// The batches of one epoch; see [`Loader::epoch`].
pub struct Epoch<'a, const N: usize = 784> {
    loader: &'a mut Loader,
    set: &'a ImageSet,
    dev: &'a Cpu,
    order: Vec<usize>,
    pos: usize,
}

impl<const N: usize> Iterator for Epoch<'_, N> {
    type Item = Batch<N>;

    fn next(&mut self) -> Option<Batch<N>> {
        let end = (self.pos + self.loader.batch_size).min(self.order.len());
        let n = end - self.pos;
        if n == 0 || (self.loader.drop_last && n < self.loader.batch_size) {
            return None;
        }
        let indices = self.order[self.pos..end].to_vec();
        self.pos = end;
        let mut data = Vec::with_capacity(n * N);
        for &i in &indices {
            self.loader.view.extend(self.set.image(i), &mut self.loader.rng, &mut data);
        }
        let labels = indices.iter().map(|&i| self.set.label(i) as usize).collect();
        let (height, width) = (self.set.height(), self.set.width());
        Some(Batch { images: self.dev.tensor_from_vec(data, (n, Const)), labels, indices, height, width })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.order.len() - self.pos;
        let bs = self.loader.batch_size;
        let n = if self.loader.drop_last { left / bs } else { left.div_ceil(bs) };
        (n, Some(n))
    }
}

impl<const N: usize> ExactSizeIterator for Epoch<'_, N> {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;

    fn set() -> ImageSet {
        ImageSet::new(2, 2, (0..40u8).map(|i| i * 6).collect(), vec![0; 10]).unwrap()
    }

    fn epoch_of(loader: &mut Loader, set: &ImageSet, dev: &Cpu) -> (Vec<usize>, Vec<f32>) {
        let batches: Vec<Batch<4>> = loader.epoch::<4>(set, dev).collect();
        (
            batches.iter().flat_map(|b| b.indices.clone()).collect(),
            batches.iter().flat_map(|b| b.images.as_vec()).collect(),
        )
    }

    #[test]
    fn a_saved_generator_continues_the_epochs_and_keeps_std_rngs_stream() {
        let (set, dev) = (set(), Cpu::default());
        let mut whole = Loader::new(3, View::Stochastic, 11);
        let epochs: Vec<_> = (0..3).map(|_| epoch_of(&mut whole, &set, &dev)).collect();
        // Stop after one epoch, save the generator as JSON, continue in a fresh loader.
        let mut first = Loader::new(3, View::Stochastic, 11);
        assert_eq!(epoch_of(&mut first, &set, &dev), epochs[0]);
        let saved = serde_json::to_string(first.generator()).unwrap();
        let mut resumed = Loader::new(3, View::Stochastic, 999);
        resumed.set_generator(serde_json::from_str(&saved).unwrap());
        assert_eq!(epoch_of(&mut resumed, &set, &dev), epochs[1]);
        assert_eq!(epoch_of(&mut resumed, &set, &dev), epochs[2]);
        assert_ne!(epochs[1], epochs[2]);
        // The order is the one StdRng gave before the loader switched to ChaCha12.
        let mut order: Vec<usize> = (0..10).collect();
        order.shuffle(&mut StdRng::seed_from_u64(11));
        assert_eq!(epochs[0].0, order);
    }
}
