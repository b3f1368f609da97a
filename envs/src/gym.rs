//! [`GymEnv`]: any registered gymnasium environment, driven through an embedded Python (pyo3),
//! as a typed glimpse [`Env`].
//!
//! Needs the cargo feature `python` and a Python with `gymnasium` and `numpy`. pyo3 embeds the
//! Python it was built against (`PYO3_PYTHON`, else `python3` on `PATH`); when `VIRTUAL_ENV` is
//! set (an activated venv), that venv's `site-packages` is added to `sys.path` on first use.
//!
//! ```no_run
//! use glimpse::Env;
//! use glimpse_envs::gym::GymEnv;
//!
//! let mut env: GymEnv<4> = GymEnv::make("CartPole-v1").unwrap();
//! let (obs, _info) = env.reset(Some(0)).unwrap();
//! let step = env.step(&1).unwrap();
//! assert_eq!(obs.len(), step.obs.len());
//! ```

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Once;

use glimpse::{BoxSpace, Discrete, Env, EnvError, EnvState, Info, Space, Step};
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// A keyword argument for `gymnasium.make`.
#[derive(Debug, Clone, PartialEq)]
pub enum KwArg {
    /// Python `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int`.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
}

impl From<bool> for KwArg {
    fn from(v: bool) -> Self {
        KwArg::Bool(v)
    }
}
impl From<i64> for KwArg {
    fn from(v: i64) -> Self {
        KwArg::Int(v)
    }
}
impl From<f64> for KwArg {
    fn from(v: f64) -> Self {
        KwArg::Float(v)
    }
}
impl From<&str> for KwArg {
    fn from(v: &str) -> Self {
        KwArg::Str(v.to_string())
    }
}

impl KwArg {
    fn to_python<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            KwArg::None => py.None().into_bound(py),
            KwArg::Bool(v) => v.into_pyobject(py)?.to_owned().into_any(),
            KwArg::Int(v) => v.into_pyobject(py)?.into_any(),
            KwArg::Float(v) => v.into_pyobject(py)?.into_any(),
            KwArg::Str(v) => v.into_pyobject(py)?.into_any(),
        })
    }
}

/// An action type a [`GymEnv`] can send to Python: `usize` for `Discrete`, `[f32; M]` for `Box`.
pub trait GymAction: Clone + Send + Sync + Debug + 'static {
    /// Checks that the gymnasium action space can take this action type.
    fn check_space(space: &Space) -> Result<(), String>;
    /// Builds the Python action, or explains why `self` is not in `space`.
    fn to_python<'py>(&self, py: Python<'py>, space: &Space) -> Result<Bound<'py, PyAny>, EnvError>;
}

impl GymAction for usize {
    fn check_space(space: &Space) -> Result<(), String> {
        match space {
            Space::Discrete(_) => Ok(()),
            Space::Box(b) => Err(format!("action type usize needs a Discrete action space, got Box{:?}", b.shape)),
        }
    }

    fn to_python<'py>(&self, py: Python<'py>, space: &Space) -> Result<Bound<'py, PyAny>, EnvError> {
        let d = space.as_discrete().expect("checked at construction");
        if *self >= d.n {
            return Err(EnvError::InvalidAction(format!("action {self} is not in Discrete({})", d.n)));
        }
        let value = d.start + *self as i64;
        Ok(pyo3::types::PyInt::new(py, value).into_any())
    }
}

impl<const M: usize> GymAction for [f32; M] {
    fn check_space(space: &Space) -> Result<(), String> {
        match space {
            Space::Box(b) if b.dim() == M => Ok(()),
            Space::Box(b) => {
                Err(format!("action type [f32; {M}] does not fit the Box action space of shape {:?}", b.shape))
            }
            Space::Discrete(d) => {
                Err(format!("action type [f32; {M}] needs a Box action space, got Discrete({})", d.n))
            }
        }
    }

    fn to_python<'py>(&self, py: Python<'py>, space: &Space) -> Result<Bound<'py, PyAny>, EnvError> {
        if self.iter().any(|v| v.is_nan()) {
            return Err(EnvError::InvalidAction(format!("action {self:?} contains NaN")));
        }
        let shape = &space.as_box().expect("checked at construction").shape;
        let array = PyArray1::from_slice(py, self);
        if shape.len() == 1 {
            return Ok(array.into_any());
        }
        Ok(array.reshape(shape.clone()).map_err(|e| py_error(py, e))?.into_any())
    }
}

/// A gymnasium environment made with `gymnasium.make(id, **kwargs)`, seen as a glimpse [`Env`]
/// with observations `[f32; N]` (the Box observation space must hold exactly `N` values, any
/// shape, flattened row-major) and actions `A` (`usize` or `[f32; M]`).
pub struct GymEnv<const N: usize, A: GymAction = usize> {
    env: Py<PyAny>,
    id: String,
    observation_space: Space,
    action_space: Space,
    /// `numpy.ascontiguousarray`, to turn any observation into float32 in one call.
    as_f32: Py<PyAny>,
    float32: Py<PyAny>,
    _action: PhantomData<fn(A)>,
}

impl<const N: usize, A: GymAction> Debug for GymEnv<N, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GymEnv").field("id", &self.id).field("action_space", &self.action_space).finish()
    }
}

impl<const N: usize, A: GymAction> GymEnv<N, A> {
    /// `gymnasium.make(id)`.
    pub fn make(id: &str) -> Result<Self, EnvError> {
        Self::make_with(id, &[])
    }

    /// `gymnasium.make(id, **kwargs)`; fails with the Python message when gymnasium does, and
    /// when the spaces do not fit `N` and `A`.
    pub fn make_with(id: &str, kwargs: &[(&str, KwArg)]) -> Result<Self, EnvError> {
        // Before attaching: the one-time setup attaches itself (see `add_venv_site_packages`).
        add_venv_site_packages();
        Python::attach(|py| {
            let err = |e: PyErr| EnvError::Other(format!("gymnasium.make({id:?}): {}", describe(py, &e)));
            let gym = py.import("gymnasium").map_err(err)?;
            let np = py.import("numpy").map_err(err)?;
            let kw = PyDict::new(py);
            for (k, v) in kwargs {
                kw.set_item(k, v.to_python(py).map_err(err)?).map_err(err)?;
            }
            let env = gym.call_method("make", (id,), Some(&kw)).map_err(err)?;
            let observation_space = space_from_python(&env.getattr("observation_space").map_err(err)?)
                .map_err(|m| EnvError::Other(format!("{id}: observation space: {m}")))?;
            let action_space = space_from_python(&env.getattr("action_space").map_err(err)?)
                .map_err(|m| EnvError::Other(format!("{id}: action space: {m}")))?;
            match &observation_space {
                Space::Box(b) if b.dim() == N => {}
                Space::Box(b) => {
                    let _ = env.call_method0("close");
                    return Err(EnvError::Other(format!(
                        "{id}: observation space Box of shape {:?} holds {} values, but GymEnv<{N}> expects {N}",
                        b.shape,
                        b.dim()
                    )));
                }
                Space::Discrete(d) => {
                    let _ = env.call_method0("close");
                    return Err(EnvError::Other(format!(
                        "{id}: observation space Discrete({}) is not supported, GymEnv needs a Box",
                        d.n
                    )));
                }
            }
            if let Err(m) = A::check_space(&action_space) {
                let _ = env.call_method0("close");
                return Err(EnvError::Other(format!("{id}: {m}")));
            }
            Ok(Self {
                env: env.unbind(),
                id: id.to_string(),
                observation_space,
                action_space,
                as_f32: np.getattr("ascontiguousarray").map_err(err)?.unbind(),
                float32: np.getattr("float32").map_err(err)?.unbind(),
                _action: PhantomData,
            })
        })
    }

    /// The id the environment was made with.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs `f` with the Python environment object (for example to read `env.unwrapped.state`).
    pub fn with_python<R>(&self, f: impl for<'py> FnOnce(Python<'py>, &Bound<'py, PyAny>) -> R) -> R {
        Python::attach(|py| f(py, self.env.bind(py)))
    }

    fn error(&self, py: Python<'_>, call: &str, e: PyErr) -> EnvError {
        EnvError::Other(format!("{}.{call}: {}", self.id, describe(py, &e)))
    }

    /// Copies an observation into `[f32; N]` through one numpy conversion.
    fn observation(&self, py: Python<'_>, obs: &Bound<'_, PyAny>) -> Result<[f32; N], EnvError> {
        let converted;
        let array = match obs.cast::<PyArrayDyn<f32>>() {
            Ok(a) if a.is_c_contiguous() => a,
            _ => {
                converted = self
                    .as_f32
                    .bind(py)
                    .call1((obs, self.float32.bind(py)))
                    .map_err(|e| self.error(py, "observation", e))?;
                converted.cast::<PyArrayDyn<f32>>().map_err(|e| self.error(py, "observation", e.into()))?
            }
        };
        let ro = array.try_readonly().map_err(|e| EnvError::Other(format!("{}: observation: {e}", self.id)))?;
        let values = ro.as_slice().map_err(|e| EnvError::Other(format!("{}: observation: {e}", self.id)))?;
        values
            .try_into()
            .map_err(|_| EnvError::Other(format!("{}: observation has {} values, expected {N}", self.id, values.len())))
    }
}

impl<const N: usize, A: GymAction> Env for GymEnv<N, A> {
    type Obs = [f32; N];
    type Act = A;

    fn observation_space(&self) -> Space {
        self.observation_space.clone()
    }

    fn action_space(&self) -> Space {
        self.action_space.clone()
    }

    fn save_state(&self) -> Result<EnvState, EnvError> {
        Err(EnvError::Unsupported(format!(
            "GymEnv({}): a Python gymnasium env cannot save its internal state, so a run on it cannot resume exactly",
            self.id
        )))
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<([f32; N], Info), EnvError> {
        Python::attach(|py| {
            let kw = PyDict::new(py);
            kw.set_item("seed", seed).map_err(|e| self.error(py, "reset", e))?;
            let out = self.env.bind(py).call_method("reset", (), Some(&kw)).map_err(|e| self.error(py, "reset", e))?;
            let (obs, info): (Bound<PyAny>, Bound<PyAny>) =
                out.extract().map_err(|e: PyErr| self.error(py, "reset", e))?;
            Ok((self.observation(py, &obs)?, info_from_python(&info)))
        })
    }

    fn step(&mut self, action: &A) -> Result<Step<[f32; N]>, EnvError> {
        Python::attach(|py| {
            let action = action.to_python(py, &self.action_space)?;
            let out = self.env.bind(py).call_method1("step", (action,)).map_err(|e| self.error(py, "step", e))?;
            let tuple = out.cast::<PyTuple>().map_err(|e| self.error(py, "step", e.into()))?;
            if tuple.len() != 5 {
                return Err(EnvError::Other(format!("{}.step returned {} values, expected 5", self.id, tuple.len())));
            }
            let item = |i| tuple.get_item(i).map_err(|e| self.error(py, "step", e));
            let extract_err = |e: PyErr| self.error(py, "step", e);
            Ok(Step {
                obs: self.observation(py, &item(0)?)?,
                reward: item(1)?.extract().map_err(extract_err)?,
                terminated: item(2)?.is_truthy().map_err(extract_err)?,
                truncated: item(3)?.is_truthy().map_err(extract_err)?,
                info: info_from_python(&item(4)?),
            })
        })
    }
}

impl<const N: usize, A: GymAction> Drop for GymEnv<N, A> {
    fn drop(&mut self) {
        Python::attach(|py| {
            let _ = self.env.bind(py).call_method0("close");
        });
    }
}

/// `ExceptionType: message`, as Python prints the last line of a traceback.
fn describe(py: Python<'_>, e: &PyErr) -> String {
    let name = e.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "Exception".into());
    format!("{name}: {}", e.value(py))
}

fn py_error(py: Python<'_>, e: PyErr) -> EnvError {
    EnvError::Other(describe(py, &e))
}

/// Maps a gymnasium `Discrete` or `Box` space.
fn space_from_python(space: &Bound<'_, PyAny>) -> Result<Space, String> {
    let py = space.py();
    let msg = |e: PyErr| describe(py, &e);
    let class: String = space.get_type().name().map_err(msg)?.to_string();
    match class.as_str() {
        "Discrete" => {
            let n: usize = space.getattr("n").and_then(|v| v.extract()).map_err(msg)?;
            let start: i64 = space.getattr("start").and_then(|v| v.extract()).map_err(msg)?;
            Ok(Discrete { n, start }.into())
        }
        "Box" => {
            let shape: Vec<usize> = space.getattr("shape").and_then(|v| v.extract()).map_err(msg)?;
            let bound = |name: &str| -> Result<Vec<f32>, String> {
                let np = py.import("numpy").map_err(msg)?;
                let flat = np
                    .call_method1("ravel", (space.getattr(name).map_err(msg)?,))
                    .and_then(|a| a.call_method1("astype", ("float32",)))
                    .map_err(msg)?;
                let array = flat.cast::<PyArray1<f32>>().map_err(|e| msg(e.into()))?;
                let ro = array.try_readonly().map_err(|e| e.to_string())?;
                let values = ro.as_slice().map_err(|e| e.to_string())?.to_vec();
                Ok(values)
            };
            let (low, high) = (bound("low")?, bound("high")?);
            let mut b = BoxSpace::new(low, high);
            b.shape = shape;
            Ok(b.into())
        }
        other => Err(format!("{other} spaces are not supported (only Discrete and Box)")),
    }
}

/// Numeric entries of a gymnasium info dict (numbers and bools); other entries are skipped.
fn info_from_python(info: &Bound<'_, PyAny>) -> Info {
    let mut out = Info::default();
    if let Ok(dict) = info.cast::<PyDict>() {
        for (k, v) in dict.iter() {
            if let (Ok(key), Ok(value)) = (k.extract::<String>(), v.extract::<f64>()) {
                out.values.push((key, value));
            }
        }
    }
    out
}

/// Puts an activated venv's `site-packages` on `sys.path` (once), since an embedded Python does
/// not find it from `VIRTUAL_ENV` by itself.
fn add_venv_site_packages() {
    // Called without holding the GIL: a thread that waits on this `Once` while attached would
    // deadlock with the thread inside it, whose imports release and retake the GIL.
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        Python::attach(|py| {
            let Some(venv) = std::env::var_os("VIRTUAL_ENV") else { return };
            let result = (|| -> PyResult<()> {
                let sys = py.import("sys")?;
                let (major, minor): (u32, u32) = (
                    sys.getattr("version_info")?.getattr("major")?.extract()?,
                    sys.getattr("version_info")?.getattr("minor")?.extract()?,
                );
                let dir = std::path::Path::new(&venv).join(format!("lib/python{major}.{minor}/site-packages"));
                if dir.is_dir() {
                    py.import("site")?.call_method1("addsitedir", (dir.to_string_lossy().as_ref(),))?;
                }
                Ok(())
            })();
            if let Err(e) = result {
                eprintln!("glimpse: could not add the venv's site-packages: {}", describe(py, &e));
            }
        })
    });
}
