//! `glimpse._glimpse`: the Rust core of the `glimpse` Python package.
//!
//! [`RustEnv`] is one glimpse environment, [`RustVecEnv`] a batch of them stepped in one call.
//! The Python classes in `glimpse/` wrap them as `gymnasium.Env` and `gymnasium.vector.VectorEnv`.

mod agents;
mod batch;
mod dyn_env;
mod py_agent;
mod saved;

use batch::{make_batch, ActionsIn, BatchError, DynBatch};
use dyn_env::{make_env, ActionIn, DynEnv, ENVS};
use glimpse::image::Image;
use glimpse::{EnvError, Space};
use numpy::ndarray::{Array2, Array3};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use saved::{check_same, parse, to_json, SavedEnv, SavedVecEnv, ENV_KIND, VEC_ENV_KIND};

create_exception!(_glimpse, InvalidAction, PyValueError, "An action outside the environment's action space.");
create_exception!(_glimpse, ResetNeeded, PyRuntimeError, "`step` before `reset`, or after the episode ended.");
create_exception!(_glimpse, GlimpseEnvError, PyRuntimeError, "Any other error reported by a glimpse environment.");

/// Turns an [`EnvError`] into the matching Python exception.
fn to_py(e: EnvError) -> PyErr {
    match e {
        EnvError::InvalidAction(m) => InvalidAction::new_err(m),
        EnvError::NeedsReset(m) => ResetNeeded::new_err(m),
        other => GlimpseEnvError::new_err(other.to_string()),
    }
}

/// A space as a dict that `glimpse/_spaces.py` turns into a gymnasium space.
fn space_dict<'py>(py: Python<'py>, space: &Space) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match space {
        Space::Discrete(s) => {
            d.set_item("kind", "discrete")?;
            d.set_item("n", s.n)?;
            d.set_item("start", s.start)?;
        }
        Space::Box(b) => {
            d.set_item("kind", "box")?;
            d.set_item("low", PyArray1::from_slice(py, &b.low))?;
            d.set_item("high", PyArray1::from_slice(py, &b.high))?;
            d.set_item("shape", b.shape.clone())?;
        }
    }
    Ok(d)
}

/// A state as a numpy array: float64, or float32 where gymnasium would hold float32.
fn state_to_numpy(py: Python<'_>, state: Vec<f64>, is_f32: bool) -> Bound<'_, PyAny> {
    if is_f32 {
        PyArray1::from_vec(py, state.iter().map(|&v| v as f32).collect()).into_any()
    } else {
        PyArray1::from_vec(py, state).into_any()
    }
}

/// A state from any numeric array-like: the values in float64, and whether it was float32.
fn state_from_numpy(value: &Bound<'_, PyAny>) -> PyResult<(Vec<f64>, bool)> {
    let py = value.py();
    let np = py.import("numpy")?;
    let array = np.call_method1("asarray", (value,))?;
    let is_f32 = array.getattr("dtype")?.eq(np.getattr("float32")?)?;
    let kind: String = array.getattr("dtype")?.getattr("kind")?.extract()?;
    if !matches!(kind.as_str(), "f" | "i" | "u") {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "state must be a numeric array, got dtype kind {kind:?}"
        )));
    }
    let flat = np.call_method1("ravel", (array.call_method1("astype", ("float64",))?,))?;
    Ok((flat.cast::<PyArray1<f64>>()?.to_vec()?, is_f32))
}

/// A ValueError unless every value of a physical state is finite (JSON cannot hold NaN or inf).
fn check_finite(state: &[f64], what: &str) -> PyResult<()> {
    if state.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    Err(PyValueError::new_err(format!("{what}: cannot save a state holding NaN or infinity: {state:?}")))
}

/// A frame as a numpy `uint8` array `[height, width, channels]` (it takes the pixels, no copy).
fn frame_array(py: Python<'_>, frame: Image) -> Bound<'_, PyArray3<u8>> {
    let shape = (frame.height, frame.width, frame.channels);
    Array3::from_shape_vec(shape, frame.data).expect("height*width*channels bytes").into_pyarray(py)
}

/// Reads one action for a single environment.
fn action_from<'a>(discrete: bool, action: &'a Bound<'_, PyAny>, buf: &'a mut Vec<f32>) -> PyResult<ActionIn<'a>> {
    if discrete {
        // `__index__` only: Python ints, numpy integers and 0-d integer arrays; floats are a TypeError.
        let a: i64 = action.extract().map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "a discrete action must be an integer, got {}",
                action.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })?;
        return Ok(ActionIn::Discrete(a));
    }
    let array: PyReadonlyArray1<f32> = action
        .extract()
        .map_err(|_| pyo3::exceptions::PyTypeError::new_err("a continuous action must be a 1-d float32 numpy array"))?;
    buf.clear();
    buf.extend(array.as_array().iter());
    Ok(ActionIn::Box(buf))
}

/// One glimpse environment, raw (no time limit) or registered (with its time limit).
#[pyclass(module = "glimpse._glimpse")]
struct RustEnv {
    env: Box<dyn DynEnv>,
    /// The episode ended (terminated or truncated) and `reset` was not called since.
    done: bool,
    obs: Vec<f32>,
    action_buf: Vec<f32>,
}

#[pymethods]
impl RustEnv {
    /// `RustEnv(id, max_episode_steps=None)`: `id` as in `ids()`; raw (gymnasium's `TimeLimit`
    /// wrapper adds the limit) unless `max_episode_steps` is given.
    #[new]
    #[pyo3(signature = (env_id, max_episode_steps = None))]
    fn new(env_id: &str, max_episode_steps: Option<usize>) -> PyResult<Self> {
        let env = make_env(env_id, max_episode_steps).map_err(PyValueError::new_err)?;
        let obs = vec![0.0; env.obs_dim()];
        Ok(Self { env, done: true, obs, action_buf: Vec::new() })
    }

    /// The observation space as a dict.
    fn observation_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        space_dict(py, &self.env.observation_space())
    }

    /// The action space as a dict.
    fn action_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        space_dict(py, &self.env.action_space())
    }

    /// Starts an episode (reseeding with `seed`); returns the first observation.
    #[pyo3(signature = (seed = None))]
    fn reset<'py>(&mut self, py: Python<'py>, seed: Option<u64>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        self.env.reset(seed, &mut self.obs).map_err(to_py)?;
        self.done = false;
        Ok(PyArray1::from_slice(py, &self.obs))
    }

    /// Applies `action`; returns `(obs, reward, terminated, truncated)`.
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        action: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArray1<f32>>, f64, bool, bool)> {
        if self.done {
            return Err(ResetNeeded::new_err(format!(
                "{}: the episode ended (or never started): call reset before step",
                self.env.id()
            )));
        }
        let action = action_from(self.env.discrete(), action, &mut self.action_buf)?;
        let (reward, terminated, truncated) = self.env.step(action, &mut self.obs).map_err(to_py)?;
        self.done = terminated || truncated;
        Ok((PyArray1::from_slice(py, &self.obs), reward, terminated, truncated))
    }

    /// The physical state, like gymnasium's `env.unwrapped.state` (a copy).
    #[getter]
    fn get_state<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        let (state, is_f32) = self.env.state();
        state_to_numpy(py, state, is_f32)
    }

    /// Sets the physical state; the episode continues from it (no reset needed).
    #[setter]
    fn set_state(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let (values, as_f32) = state_from_numpy(value)?;
        self.env.set_state(&values, as_f32).map_err(PyValueError::new_err)?;
        self.done = false;
        Ok(())
    }

    /// The environment id.
    #[getter]
    fn id(&self) -> &'static str {
        self.env.id()
    }

    /// The current state as an RGB frame, `uint8 [height, width, 3]`, laid out as gymnasium's
    /// `render_mode="rgb_array"` (drawn without holding the GIL).
    fn render<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let frame = py.detach(|| self.env.render()).map_err(to_py)?;
        Ok(frame_array(py, frame))
    }

    /// The complete state as JSON (physics, random generator, time limit counter, whether a reset
    /// is due): `set_state_json` on an env of the same id and time limit continues exactly from here.
    fn get_state_json(&self) -> PyResult<String> {
        check_finite(&self.env.state().0, self.env.id())?;
        let saved = SavedEnv {
            kind: ENV_KIND.into(),
            id: self.env.id().into(),
            max_episode_steps: self.env.time_limit(),
            done: self.done,
            env: self.env.save_state().map_err(to_py)?,
        };
        to_json(&saved).map_err(GlimpseEnvError::new_err)
    }

    /// Restores a state written by `get_state_json`; a state that does not fit (bad JSON, another
    /// env, another time limit) raises ValueError and leaves this env as it was.
    fn set_state_json(&mut self, json: &str) -> PyResult<()> {
        let saved: SavedEnv = parse(json, ENV_KIND).map_err(PyValueError::new_err)?;
        let (id, limit) = (self.env.id(), self.env.time_limit());
        check_same("id", saved.id.as_str(), id).map_err(PyValueError::new_err)?;
        check_same("max_episode_steps", saved.max_episode_steps, limit).map_err(PyValueError::new_err)?;
        let mut env = make_env(id, limit).map_err(PyValueError::new_err)?;
        env.restore_state(&saved.env).map_err(|e| PyValueError::new_err(e.to_string()))?;
        self.env = env;
        self.done = saved.done;
        Ok(())
    }

    /// Arguments that rebuild an empty env of this kind (pickle, `copy.deepcopy`).
    fn __getnewargs__(&self) -> (&'static str, Option<usize>) {
        (self.env.id(), self.env.time_limit())
    }

    /// Pickle's state: `get_state_json`.
    fn __getstate__(&self) -> PyResult<String> {
        self.get_state_json()
    }

    /// Restores pickle's state: `set_state_json`.
    fn __setstate__(&mut self, state: &str) -> PyResult<()> {
        self.set_state_json(state)
    }
}

/// `num_envs` copies of one registered environment (with its time limit), stepped in one call.
///
/// Autoreset like gymnasium's vector envs: in "next_step" mode an env whose episode ended is reset
/// by the following `step` (its action ignored, reward 0); in "same_step" mode it is reset in the
/// step that ends the episode and the last observation is returned as `final_obs`.
#[pyclass(module = "glimpse._glimpse")]
struct RustVecEnv {
    batch: Box<dyn DynBatch>,
    env_id: String,
    max_episode_steps: usize,
    same_step: bool,
    started: bool,
}

/// Arrays returned by [`RustVecEnv::step`]: obs, rewards, terminated, truncated, final obs (if any).
type VecStepOut<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<bool>>,
    Bound<'py, PyArray1<bool>>,
    Option<Bound<'py, PyArray2<f32>>>,
);

impl RustVecEnv {
    /// `[N, DIM]` numpy array that takes ownership of `data` (no copy).
    fn obs_array<'py>(&self, py: Python<'py>, data: Vec<f32>) -> Bound<'py, PyArray2<f32>> {
        let shape = (self.batch.len(), self.batch.obs_dim());
        Array2::from_shape_vec(shape, data).expect("N*DIM values").into_pyarray(py)
    }

    fn check_index(&self, index: usize) -> PyResult<()> {
        if index >= self.batch.len() {
            return Err(PyValueError::new_err(format!("no env {index} in {} envs", self.batch.len())));
        }
        Ok(())
    }
}

#[pymethods]
impl RustVecEnv {
    /// `RustVecEnv(id, num_envs, max_episode_steps, same_step=False)`.
    #[new]
    #[pyo3(signature = (env_id, num_envs, max_episode_steps, same_step = false))]
    fn new(env_id: &str, num_envs: usize, max_episode_steps: usize, same_step: bool) -> PyResult<Self> {
        let batch = make_batch(env_id, num_envs, max_episode_steps).map_err(batch_error)?;
        Ok(Self { batch, env_id: env_id.to_string(), max_episode_steps, same_step, started: false })
    }

    /// Number of environments.
    #[getter]
    fn num_envs(&self) -> usize {
        self.batch.len()
    }

    /// The observation space of one environment, as a dict.
    fn observation_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        space_dict(py, &self.batch.observation_space())
    }

    /// The action space of one environment, as a dict.
    fn action_space<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        space_dict(py, &self.batch.action_space())
    }

    /// Resets every env; env i gets `seeds[i]` (None: continue its random stream).
    /// Returns observations `[num_envs, obs_dim]`.
    fn reset<'py>(&mut self, py: Python<'py>, seeds: Vec<Option<u64>>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        if seeds.len() != self.batch.len() {
            return Err(PyValueError::new_err(format!("{} seeds for {} envs", seeds.len(), self.batch.len())));
        }
        let obs = self.batch.reset(&seeds).map_err(to_py)?;
        self.started = true;
        Ok(self.obs_array(py, obs))
    }

    /// Steps env i with `actions[i]` (int64 `[N]` or float32 `[N, act_dim]`, C-contiguous).
    /// Returns `(obs, rewards, terminated, truncated, final_obs or None)`. A bad action raises
    /// before any env steps.
    fn step<'py>(&mut self, py: Python<'py>, actions: &Bound<'py, PyAny>) -> PyResult<VecStepOut<'py>> {
        if !self.started {
            return Err(ResetNeeded::new_err("call reset before step"));
        }
        let n = self.batch.len();
        let discrete_actions: PyReadonlyArray1<i64>;
        let box_actions: PyReadonlyArray2<f32>;
        let (batch, len) = match self.batch.action_space() {
            Space::Discrete(_) => {
                discrete_actions = actions.extract().map_err(|_| {
                    pyo3::exceptions::PyTypeError::new_err("discrete actions must be an int64 array [num_envs]")
                })?;
                (ActionsIn::Discrete(discrete_actions.as_slice()?), discrete_actions.len())
            }
            Space::Box(b) => {
                box_actions = actions.extract().map_err(|_| {
                    pyo3::exceptions::PyTypeError::new_err(
                        "continuous actions must be a float32 array [num_envs, act_dim]",
                    )
                })?;
                let (rows, dim) = (box_actions.shape()[0], box_actions.shape()[1]);
                if dim != b.dim() {
                    return Err(PyValueError::new_err(format!(
                        "actions have {dim} values per env, expected {}",
                        b.dim()
                    )));
                }
                (ActionsIn::Box { values: box_actions.as_slice()?, dim }, rows)
            }
        };
        if len != n {
            return Err(PyValueError::new_err(format!("{len} actions for {n} envs")));
        }
        let same_step = self.same_step;
        let out = py.detach(|| self.batch.step(&batch, same_step)).map_err(to_py)?;
        let final_obs = out.final_obs.map(|f| self.obs_array(py, f));
        Ok((
            self.obs_array(py, out.obs),
            out.rewards.into_pyarray(py),
            out.terminated.into_pyarray(py),
            out.truncated.into_pyarray(py),
            final_obs,
        ))
    }

    /// The state of env `index` (a copy), like `env.unwrapped.state`.
    fn get_state<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyAny>> {
        self.check_index(index)?;
        let (state, is_f32) = self.batch.state(index);
        Ok(state_to_numpy(py, state, is_f32))
    }

    /// Sets the state of env `index`; its episode continues from there.
    fn set_state(&mut self, index: usize, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_index(index)?;
        let (values, as_f32) = state_from_numpy(value)?;
        self.batch.set_state(index, &values, as_f32).map_err(PyValueError::new_err)
    }

    /// Env `index`'s current state as an RGB frame, `uint8 [height, width, 3]` (see
    /// `RustEnv.render`).
    fn render<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyArray3<u8>>> {
        self.check_index(index)?;
        let frame = py.detach(|| self.batch.render(index)).map_err(to_py)?;
        Ok(frame_array(py, frame))
    }

    /// The complete state of every env as JSON (physics, random generators, time limit counters,
    /// pending autoresets): `set_state_json` on a vector env built with the same arguments
    /// continues exactly from here.
    fn get_state_json(&self) -> PyResult<String> {
        for i in 0..self.batch.len() {
            check_finite(&self.batch.state(i).0, &format!("{} env {i}", self.env_id))?;
        }
        let saved = SavedVecEnv {
            kind: VEC_ENV_KIND.into(),
            id: self.env_id.clone(),
            num_envs: self.batch.len(),
            max_episode_steps: self.max_episode_steps,
            same_step: self.same_step,
            started: self.started,
            batch: self.batch.save_state().map_err(to_py)?,
        };
        to_json(&saved).map_err(GlimpseEnvError::new_err)
    }

    /// Restores a state written by `get_state_json`; a state that does not fit raises ValueError
    /// and leaves this vector env as it was.
    fn set_state_json(&mut self, json: &str) -> PyResult<()> {
        let saved: SavedVecEnv = parse(json, VEC_ENV_KIND).map_err(PyValueError::new_err)?;
        let n = self.batch.len();
        let fits = check_same("id", saved.id.as_str(), self.env_id.as_str())
            .and(check_same("num_envs", saved.num_envs, n))
            .and(check_same("max_episode_steps", saved.max_episode_steps, self.max_episode_steps))
            .and(check_same("same_step autoreset", saved.same_step, self.same_step));
        fits.map_err(PyValueError::new_err)?;
        let mut batch = make_batch(&self.env_id, n, self.max_episode_steps).map_err(batch_error)?;
        batch.restore_state(&saved.batch).map_err(|e| PyValueError::new_err(e.to_string()))?;
        self.batch = batch;
        self.started = saved.started;
        Ok(())
    }

    /// Arguments that rebuild a fresh vector env of this kind (pickle, `copy.deepcopy`).
    fn __getnewargs__(&self) -> (String, usize, usize, bool) {
        (self.env_id.clone(), self.batch.len(), self.max_episode_steps, self.same_step)
    }

    /// Pickle's state: `get_state_json`.
    fn __getstate__(&self) -> PyResult<String> {
        self.get_state_json()
    }

    /// Restores pickle's state: `set_state_json`.
    fn __setstate__(&mut self, state: &str) -> PyResult<()> {
        self.set_state_json(state)
    }
}

/// The environments this module provides: `[(id, max_episode_steps)]`.
#[pyfunction]
fn registry() -> Vec<(&'static str, usize)> {
    ENVS.iter().map(|(id, steps, _)| (*id, *steps)).collect()
}

#[pymodule]
fn _glimpse(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RustEnv>()?;
    m.add_class::<RustVecEnv>()?;
    m.add_class::<py_agent::RustAgent>()?;
    m.add_function(wrap_pyfunction!(registry, m)?)?;
    m.add("InvalidAction", m.py().get_type::<InvalidAction>())?;
    m.add("ResetNeeded", m.py().get_type::<ResetNeeded>())?;
    m.add("GlimpseEnvError", m.py().get_type::<GlimpseEnvError>())?;
    Ok(())
}

/// A [`BatchError`] as the Python exception it stands for (`ValueError` or `MemoryError`).
fn batch_error(e: BatchError) -> PyErr {
    match e {
        BatchError::Value(message) => PyValueError::new_err(message),
        BatchError::Memory(message) => pyo3::exceptions::PyMemoryError::new_err(message),
    }
}
