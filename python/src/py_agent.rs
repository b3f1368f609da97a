//! `RustAgent`: one agent of [`crate::agents`] for `glimpse/agents.py`, which gives it
//! Stable-Baselines3's habits (`learn`, `predict`, `evaluate`, `save`, `load`).

use std::path::PathBuf;
use std::sync::Mutex;

use numpy::{IntoPyArray, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde_json::{Map, Value};

use crate::agents::{dispatch, settings, Act, Actions, Failure, Kind, Reply, Request};
use crate::dyn_env::make_env;

fn to_py(f: Failure) -> PyErr {
    match f {
        Failure::Config(m) => PyValueError::new_err(m),
        Failure::Run(m) => PyRuntimeError::new_err(m),
    }
}

/// An agent (`dqn`, `ppo`, `a2c`, `reinforce`) for one glimpse env, with its validated settings
/// and, once trained or loaded, its policy.
#[pyclass(module = "glimpse._glimpse")]
pub struct RustAgent {
    kind: Kind,
    env_id: String,
    settings: Value,
    obs_size: usize,
    policy: Mutex<Option<Box<dyn Act>>>,
    /// Draws of `predict(deterministic=False)`.
    rng: Mutex<ChaCha12Rng>,
}

#[pymethods]
impl RustAgent {
    /// `RustAgent(kind, env_id, overrides_json, seed)`: the example's settings for that env with
    /// the JSON object's settings replaced; a bad setting is a `ValueError` naming it.
    #[new]
    fn new(kind: &str, env_id: &str, overrides_json: &str, seed: u64) -> PyResult<Self> {
        let kind = Kind::parse(kind).map_err(PyValueError::new_err)?;
        let overrides: Map<String, Value> = serde_json::from_str(overrides_json)
            .map_err(|e| PyValueError::new_err(format!("settings must be a JSON object: {e}")))?;
        let settings = settings(kind, env_id, &overrides).map_err(to_py)?;
        dispatch(kind, env_id, &settings, Request::Check).map_err(to_py)?;
        let obs_size = make_env(env_id, None).map_err(PyValueError::new_err)?.obs_dim();
        Ok(Self {
            kind,
            env_id: env_id.to_string(),
            settings,
            obs_size,
            policy: Mutex::new(None),
            rng: Mutex::new(ChaCha12Rng::seed_from_u64(seed)),
        })
    }

    /// The full settings as a JSON object.
    fn settings_json(&self) -> String {
        self.settings.to_string()
    }

    /// Values per observation.
    #[getter]
    fn obs_size(&self) -> usize {
        self.obs_size
    }

    /// Trains a new run with `seed` in `run_dir` (which must hold no checkpoint), the GIL
    /// released; then loads its policy. Returns `summary.json` as a string.
    fn learn(&self, py: Python<'_>, seed: u64, run_dir: PathBuf) -> PyResult<String> {
        let reply = py.detach(|| {
            let learned = dispatch(self.kind, &self.env_id, &self.settings, Request::Learn { seed, dir: &run_dir })?;
            let loaded = dispatch(self.kind, &self.env_id, &self.settings, Request::Load { dir: &run_dir })?;
            Ok((learned, loaded))
        });
        match reply.map_err(to_py)? {
            (Reply::Summary(summary), Reply::Policy(policy)) => {
                *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = Some(policy);
                serde_json::to_string(&summary).map_err(|e| PyRuntimeError::new_err(e.to_string()))
            }
            _ => Err(PyRuntimeError::new_err("unexpected reply from the trainer")),
        }
    }

    /// Loads the policy of the last checkpoint in run directory `run_dir`.
    fn load(&self, py: Python<'_>, run_dir: PathBuf) -> PyResult<()> {
        let reply = py.detach(|| dispatch(self.kind, &self.env_id, &self.settings, Request::Load { dir: &run_dir }));
        match reply.map_err(to_py)? {
            Reply::Policy(policy) => {
                *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = Some(policy);
                Ok(())
            }
            _ => Err(PyRuntimeError::new_err("unexpected reply from the trainer")),
        }
    }

    /// The actions for a `float32` batch `[N, obs_size]`: `int64 [N]` for discrete actions,
    /// `float32 [N, A]` for continuous ones.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        obs: PyReadonlyArray2<'py, f32>,
        deterministic: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let shape = obs.shape();
        if shape[1] != self.obs_size {
            return Err(PyValueError::new_err(format!(
                "observations of {} values for {}, which has {}",
                shape[1], self.env_id, self.obs_size
            )));
        }
        let values = obs.as_slice().map(<[f32]>::to_vec).unwrap_or_else(|_| obs.as_array().iter().copied().collect());
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(PyValueError::new_err(format!("observations must be finite, got {bad}")));
        }
        let rows = shape[0];
        let actions = py.detach(|| {
            let policy = self.policy.lock().unwrap_or_else(|p| p.into_inner());
            let policy = policy.as_ref().ok_or("no policy yet: call learn() or load() first")?;
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            if rows == 0 {
                return Ok(None);
            }
            policy.act(&values, deterministic, &mut rng).map(Some)
        });
        let actions = actions.map_err(|e: String| PyRuntimeError::new_err(e))?;
        Ok(match actions {
            None => empty_actions(py, &self.env_id)?,
            Some(Actions::Discrete(a)) => a.into_pyarray(py).into_any(),
            Some(Actions::Continuous { values, width }) => {
                numpy::ndarray::Array2::from_shape_vec((rows, width), values)
                    .map_err(|e| PyRuntimeError::new_err(e.to_string()))?
                    .into_pyarray(py)
                    .into_any()
            }
        })
    }

    /// Greedy evaluation of the policy saved in `run_dir`: `episodes` episodes, episode i reset
    /// with `seed + i`. Returns `(returns, lengths)`.
    fn evaluate(
        &self,
        py: Python<'_>,
        run_dir: PathBuf,
        episodes: usize,
        seed: u64,
    ) -> PyResult<(Vec<f64>, Vec<usize>)> {
        if episodes == 0 {
            return Err(PyValueError::new_err("n_episodes must be at least 1"));
        }
        let request = Request::Evaluate { dir: &run_dir, episodes, seed };
        match py.detach(|| dispatch(self.kind, &self.env_id, &self.settings, request)).map_err(to_py)? {
            Reply::Evaluation(e) => Ok((e.returns, e.lengths)),
            _ => Err(PyRuntimeError::new_err("unexpected reply from the trainer")),
        }
    }
}

/// The actions of no observations, shaped as the env's actions are.
fn empty_actions<'py>(py: Python<'py>, env_id: &str) -> PyResult<Bound<'py, PyAny>> {
    let env = make_env(env_id, None).map_err(PyValueError::new_err)?;
    Ok(if env.discrete() {
        Vec::<i64>::new().into_pyarray(py).into_any()
    } else {
        let width = match env.action_space() {
            glimpse::Space::Box(b) => b.shape.iter().product(),
            glimpse::Space::Discrete(_) => 1,
        };
        numpy::ndarray::Array2::<f32>::zeros((0, width)).into_pyarray(py).into_any()
    })
}
