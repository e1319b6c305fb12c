//! Image parameterisations and transformation robustness for activation
//! maximisation, after Lucent (`lucent.optvis.param`, `lucent.optvis.transform`):
//!
//! - `Pixel`: the image is the parameter tensor itself (initialised N(0, 0.01²));
//! - `Fft`: the parameter is the image's real FFT spectrum, scaled by 1/frequency
//!   (decay power 1) and divided by Lucent's "magic" 4, so low frequencies dominate;
//! - optional colour decorrelation for 3-channel images (Lucent's
//!   `color_correlation_svd_sqrt`, normalised by its largest column norm);
//! - a sigmoid maps the result into [0, 1].
//!
//! Random numbers (initial values, transform draws) come from a ChaCha8 generator
//! seeded by the request, never from libtorch's global generator, so a seeded job gives
//! the same images whatever else the daemon runs at the same time.

use crate::error::{Error, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameterization {
    Pixel,
    Fft,
}

/// Lucent's colour correlation square root (ImageNet statistics).
const COLOR_CORRELATION_SVD_SQRT: [[f32; 3]; 3] = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];
/// Lucent's initial standard deviation of pixels or spectrum coefficients.
const INIT_SD: f64 = 0.01;
/// Lucent's divisor of the FFT image ("increasing this seems to reduce saturation").
const FFT_MAGIC: f64 = 4.0;

/// The optimised parameter and how it becomes an image in [0, 1].
pub struct ImageParam {
    pub parameter: Tensor,
    kind: Parameterization,
    /// (1, 1, H, W/2+1(+1), 1) frequency scale for the FFT spectrum.
    scale: Option<Tensor>,
    decorrelation: Option<Tensor>,
    shape: [i64; 4],
}

fn normal_tensor(shape: &[i64], sd: f64, rng: &mut ChaCha8Rng, device: Device) -> Tensor {
    let count: i64 = shape.iter().product();
    let normal = Normal::new(0.0f32, sd as f32).expect("a positive standard deviation");
    let values: Vec<f32> = (0..count).map(|_| normal.sample(rng)).collect();
    Tensor::from_slice(&values).reshape(shape).to_device(device)
}

/// numpy's `fft.fftfreq(n)`.
fn fft_frequencies(n: i64) -> Vec<f64> {
    (0..n).map(|index| if index < (n + 1) / 2 { index } else { index - n }).map(|k| k as f64 / n as f64).collect()
}

impl ImageParam {
    /// A batch of `shape = (batch, channels, height, width)` images.
    pub fn new(shape: [i64; 4], kind: Parameterization, decorrelate: bool, rng: &mut ChaCha8Rng, device: Device) -> ImageParam {
        let [batch, channels, height, width] = shape;
        let (parameter, scale) = match kind {
            Parameterization::Pixel => (normal_tensor(&shape, INIT_SD, rng, device), None),
            Parameterization::Fft => {
                // Lucent's rfft2d_freqs: an odd width keeps one more frequency, cut off later.
                let fy = fft_frequencies(height);
                let fx: Vec<f64> = fft_frequencies(width).into_iter().take((width / 2 + if width % 2 == 1 { 2 } else { 1 }) as usize).collect();
                let floor = 1.0 / width.max(height) as f64;
                let scale: Vec<f32> = fy.iter().flat_map(|y| fx.iter().map(move |x| (1.0 / (x * x + y * y).sqrt().max(floor)) as f32)).collect();
                let scale = Tensor::from_slice(&scale).reshape([1, 1, height, fx.len() as i64, 1]).to_device(device);
                (normal_tensor(&[batch, channels, height, fx.len() as i64, 2], INIT_SD, rng, device), Some(scale))
            }
        };
        let decorrelation = (decorrelate && channels == 3).then(|| {
            let column_norm = |column: usize| (0..3).map(|row| COLOR_CORRELATION_SVD_SQRT[row][column].powi(2)).sum::<f32>().sqrt();
            let max_norm = (0..3).map(column_norm).fold(0.0f32, f32::max);
            // x_rgb = M · x, applied as x (…, 3) @ Mᵀ with M normalised by its largest column norm.
            let transposed: Vec<f32> = (0..3).flat_map(|row| (0..3).map(move |column| COLOR_CORRELATION_SVD_SQRT[column][row] / max_norm)).collect();
            Tensor::from_slice(&transposed).reshape([3, 3]).to_device(device)
        });
        ImageParam { parameter: parameter.set_requires_grad(true), kind, scale, decorrelation, shape }
    }

    /// The images in [0, 1], (batch, channels, height, width), on the autograd path.
    pub fn images(&self) -> Tensor {
        let [_, _, height, width] = self.shape;
        let raw = match (self.kind, &self.scale) {
            (Parameterization::Fft, Some(scale)) => {
                let spectrum = (&self.parameter * scale).view_as_complex();
                let image = spectrum.fft_irfftn(Some([height, width].as_slice()), Some([2i64, 3].as_slice()), "ortho");
                image.narrow(2, 0, height).narrow(3, 0, width) / FFT_MAGIC
            }
            _ => self.parameter.shallow_clone(),
        };
        let raw = match &self.decorrelation {
            Some(matrix) => raw.permute([0, 2, 3, 1]).matmul(matrix).permute([0, 3, 1, 2]),
            None => raw,
        };
        raw.sigmoid()
    }
}

/// One draw of Lucent's `standard_transforms`: pad(12, constant 0.5), jitter(8),
/// random_scale(1 + (i - 5)/50, i = 0..10), random_rotate(-10..10° plus five more 0°),
/// jitter(4). Pixel amounts are Lucent's for images of 128 px and more and scale down
/// in proportion with smaller images (rounded down: an 8×8 input gets no padding or
/// jitter, only scaling and rotation, which do not depend on the size). The result is
/// cropped around its centre (or padded with grey) back to the size the model takes,
/// so a model with a fixed input size sees its content at the scale it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transforms {
    Standard,
    None,
}

impl Transforms {
    pub fn parse(text: &str) -> Result<Transforms> {
        match text {
            "" | "standard" => Ok(Transforms::Standard),
            "none" => Ok(Transforms::None),
            other => Err(Error::bad_input(format!("transforms '{other}' are unknown; use 'standard' (Lucent's standard_transforms) or 'none'"))),
        }
    }

    /// Applies one random draw to `images` (in [0, 1]) and brings the result back to
    /// (height, width), the size the model takes, by a centred crop or grey padding.
    pub fn apply(self, images: &Tensor, rng: &mut ChaCha8Rng) -> Tensor {
        if self == Transforms::None {
            return images.shallow_clone();
        }
        let size = images.size();
        let (height, width) = (size[2], size[3]);
        let side = height.max(width) as f64;
        let pixels = |amount: f64| (amount * (side / 128.0).min(1.0)).floor() as i64;
        let jitter = |image: Tensor, amount: i64, rng: &mut ChaCha8Rng| {
            if amount <= 1 {
                return image;
            }
            let (h, w) = (image.size()[2], image.size()[3]);
            let (dy, dx) = (rng.random_range(0..amount), rng.random_range(0..amount));
            image.narrow(2, dy, h - amount).narrow(3, dx, w - amount)
        };
        let pad = pixels(12.0);
        let mut image = if pad > 0 { images.pad([pad, pad, pad, pad], "constant", Some(0.5)) } else { images.shallow_clone() };
        image = jitter(image, pixels(8.0), rng);
        let scales: Vec<f64> = (0..11).map(|index| 1.0 + (index as f64 - 5.0) / 50.0).collect();
        let scale = scales[rng.random_range(0..scales.len())];
        let (h, w) = (image.size()[2], image.size()[3]);
        let scaled = [(scale * h as f64).ceil() as i64, (scale * w as f64).ceil() as i64];
        image = image.upsample_bilinear2d(scaled, true, None, None);
        let angles: Vec<f64> = (-10..=10).map(f64::from).chain(std::iter::repeat_n(0.0, 5)).collect();
        let angle = angles[rng.random_range(0..angles.len())].to_radians();
        if angle != 0.0 {
            let batch = image.size()[0];
            let (sin, cos) = (angle.sin() as f32, angle.cos() as f32);
            let theta = Tensor::from_slice(&[cos, -sin, 0.0, sin, cos, 0.0])
                .reshape([1, 2, 3])
                .to_device(image.device())
                .expand([batch, 2, 3], false)
                .contiguous();
            let grid = Tensor::affine_grid_generator(&theta, image.size().as_slice(), false);
            // Bilinear, zeros outside (kornia's warp_affine, which Lucent uses).
            image = image.grid_sampler(&grid, 0, 0, false);
        }
        image = jitter(image, pixels(4.0), rng);
        fit(image, height, width)
    }
}

/// `image` cropped around its centre, or padded with grey (0.5) on both sides, to
/// (height, width).
fn fit(image: Tensor, height: i64, width: i64) -> Tensor {
    let mut image = image;
    for (dim, target) in [(2usize, height), (3usize, width)] {
        let size = image.size()[dim];
        if size > target {
            image = image.narrow(dim as i64, (size - target) / 2, target);
        } else if size < target {
            let before = (target - size) / 2;
            let after = target - size - before;
            let pad = if dim == 3 { [before, after, 0, 0] } else { [0, 0, before, after] };
            image = image.pad(pad, "constant", Some(0.5));
        }
    }
    image
}

/// Per image: mean square distance from mid-range (0.5).
pub fn l2_penalty(images: &Tensor) -> Tensor {
    (images - 0.5).square().flatten(1, -1).mean_dim(1, false, Kind::Float)
}

/// Per image: mean absolute difference between neighbouring pixels, across and down.
pub fn total_variation(images: &Tensor) -> Tensor {
    let (h, w) = (images.size()[2], images.size()[3]);
    let down = (images.narrow(2, 1, h - 1) - images.narrow(2, 0, h - 1)).abs().flatten(1, -1).mean_dim(1, false, Kind::Float);
    let across = (images.narrow(3, 1, w - 1) - images.narrow(3, 0, w - 1)).abs().flatten(1, -1).mean_dim(1, false, Kind::Float);
    down + across
}

/// Per image: mean square distance from a 3×3 box-blurred copy that is held constant
/// (Lucent's `blur_input_each_step` as a penalty).
pub fn blur_penalty(images: &Tensor) -> Tensor {
    let channels = images.size()[1];
    let kernel = Tensor::ones([channels, 1, 3, 3], (Kind::Float, images.device())) / 9.0;
    let blurred = images.detach().conv2d(&kernel, None::<Tensor>, [1, 1], [1, 1], [1, 1], channels);
    (images - blurred).square().flatten(1, -1).mean_dim(1, false, Kind::Float)
}

/// Adam as torch.optim.Adam computes it (β = (0.9, 0.999), ε = 1e-8, no weight decay).
pub struct Adam {
    learning_rate: f64,
    step: i32,
    first: Tensor,
    second: Tensor,
}

impl Adam {
    pub fn new(parameter: &Tensor, learning_rate: f64) -> Adam {
        Adam { learning_rate, step: 0, first: parameter.zeros_like(), second: parameter.zeros_like() }
    }

    /// One update of `parameter` (a leaf tensor) with `gradient`.
    pub fn step(&mut self, parameter: &mut Tensor, gradient: &Tensor) {
        let (beta1, beta2, eps) = (0.9, 0.999, 1e-8);
        self.step += 1;
        let _no_grad = tch::no_grad_guard();
        let _ = self.first.g_mul_scalar_(beta1).g_add_(&(gradient * (1.0 - beta1)));
        let _ = self.second.g_mul_scalar_(beta2).g_add_(&(gradient.square() * (1.0 - beta2)));
        let correction1 = 1.0 - beta1.powi(self.step);
        let correction2 = 1.0 - beta2.powi(self.step);
        let denominator = self.second.sqrt() / correction2.sqrt() + eps;
        let _ = parameter.g_sub_(&(&self.first / &denominator * (self.learning_rate / correction1)));
    }
}
