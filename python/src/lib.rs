//! `mgc._mgc`, the compiler inside the Python package `mgc`: the CLI's library functions
//! ([`mgc_cli::api`]) with their JSON as Python values and their diagnostics as `mgc.MgcError`,
//! and the whole command line ([`mgc_cli::main_with_args`]) for the `mgc` console command; and a
//! plan's picture as PNG ([`png`]).

mod png;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use mgc_cli::Status;
use mgc_cli::api::{self, Failure, PlanOrWorkflow, Workflow};
use mgc_core::{Bytes, DetectedDevice, Device, Hardware};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use serde::Deserialize;

create_exception!(
    mgc,
    MgcError,
    PyException,
    "What mgc found wrong with its input. `str(error)` is the diagnostic as `mgc` prints it;
`.diagnostics` the list of errors of `--format json` (message, file, span, line, column, label,
help); `.status` the exit code `mgc` gives (1: the input has problems, 2: mgc itself failed)."
);

/// JSON text as a Python value.
fn loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// A failure as the `MgcError` to raise.
fn raise(py: Python<'_>, failure: Failure) -> PyErr {
    let error = MgcError::new_err(failure.rendered.trim_end().to_owned());
    let set = |name: &str, value: PyResult<Bound<'_, PyAny>>| value.and_then(|v| error.value(py).setattr(name, v));
    let diagnostics = loads(py, &failure.diagnostics);
    if let Err(e) = set("diagnostics", diagnostics)
        .and_then(|()| set("status", Ok((failure.status as u8).into_pyobject(py)?.into_any())))
    {
        return e;
    }
    error
}

fn result(py: Python<'_>, result: Result<String, Failure>) -> PyResult<Bound<'_, PyAny>> {
    match result {
        Ok(json) => loads(py, &json),
        Err(failure) => Err(raise(py, failure)),
    }
}

/// The allocation string `s` as `mgc check --allocation S --format json` prints it:
/// `{"mode": ..., "entries": [...]}`.
#[pyfunction]
fn check_allocation<'py>(py: Python<'py>, s: &str) -> PyResult<Bound<'py, PyAny>> {
    result(py, api::check_allocation(s))
}

/// What a model file (`.safetensors`, `.gguf`) holds, from its header, as
/// `mgc inspect FILE --format json` prints it.
#[pyfunction]
fn inspect<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    result(py, api::inspect(&path))
}

/// The devices a caller gives instead of detecting them: the detected-hardware format,
/// `{"devices": [{"device": "cuda:0", "memory": BYTES, "description": "..."}], "notes": [...]}`,
/// or its `devices` list alone.
#[derive(Deserialize)]
#[serde(untagged)]
enum HardwareIn {
    Full {
        devices: Vec<DeviceIn>,
        #[serde(default)]
        notes: Vec<String>,
    },
    Devices(Vec<DeviceIn>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceIn {
    device: Device,
    memory: u64,
    #[serde(default)]
    description: String,
}

impl From<HardwareIn> for Hardware {
    fn from(hardware: HardwareIn) -> Self {
        let (devices, notes) = match hardware {
            HardwareIn::Full { devices, notes } => (devices, notes),
            HardwareIn::Devices(devices) => (devices, Vec::new()),
        };
        let devices = devices
            .into_iter()
            .map(|d| DetectedDevice { device: d.device, memory: Bytes(d.memory), description: d.description })
            .collect();
        Self { devices, notes }
    }
}

fn hardware(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Hardware> {
    let text: String = py.import("json")?.call_method1("dumps", (value,))?.extract()?;
    serde_json::from_str::<HardwareIn>(&text).map(Hardware::from).map_err(|_| {
        PyValueError::new_err(
            "`hardware` is a list of devices, each `{\"device\": \"cuda:0\", \"memory\": BYTES}` \
             (optionally with a `description`), or `{\"devices\": [...], \"notes\": [...]}`",
        )
    })
}

/// Whether a string is a workflow's TOML text rather than a path: it has a line break, or it
/// names no file and has a `=`.
fn is_text(s: &str) -> bool {
    s.contains('\n') || (s.contains('=') && !Path::new(s).is_file())
}

/// The plan of a workflow, as `mgc compile` writes it. `workflow` is a path (a `str` or an
/// `os.PathLike`; the plan's model paths are then relative to the workflow's folder) or the
/// workflow's TOML text (a `str` with a line break; paths relative to the current folder).
/// `hardware` replaces the devices mgc detects on this machine.
#[pyfunction]
#[pyo3(signature = (workflow, *, hardware = None))]
fn compile<'py>(
    py: Python<'py>,
    workflow: &Bound<'py, PyAny>,
    hardware: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let given = hardware.filter(|h| !h.is_none()).map(|h| self::hardware(py, h)).transpose()?;
    let detect = || given.clone().unwrap_or_else(mgc_devices::detect);
    let text = workflow.cast::<PyString>().ok().map(|s| s.to_string()).filter(|s| is_text(s));
    let compiled = match text {
        Some(text) => api::compile(Workflow::Text(&text), &detect),
        None => {
            let path: PathBuf = workflow.extract()?;
            api::compile(Workflow::File(&path), &detect)
        }
    };
    result(py, compiled)
}

/// Whether a string given to `explain` is a plan's JSON or a workflow's TOML rather than a path.
fn is_explained_text(s: &str) -> bool {
    is_text(s) || s.trim_start_matches('\u{feff}').trim_start().starts_with('{')
}

/// What `mgc explain` shows of a plan, as `{"table": TEXT, "svg": TEXT}`: the text
/// `mgc explain PLAN` prints and the picture `mgc explain PLAN --svg FILE` draws. `plan_or_workflow`
/// is a plan (as `compile` returns it, or its JSON text), a workflow's TOML text, or a path to
/// either (a `str` or an `os.PathLike`); a workflow is compiled first (`hardware` as for
/// `compile`). With `stage` (`graph`, `budgets`, `placement`, `schedule`, `peaks` or `plan`), the
/// table is that stage of the compiler as `mgc explain WORKFLOW --stage STAGE` prints it (JSON
/// text), and `svg` is `None`.
#[pyfunction]
#[pyo3(signature = (plan_or_workflow, stage = None, *, hardware = None))]
fn explain<'py>(
    py: Python<'py>,
    plan_or_workflow: &Bound<'py, PyAny>,
    stage: Option<&str>,
    hardware: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let given = hardware.filter(|h| !h.is_none()).map(|h| self::hardware(py, h)).transpose()?;
    let detect = || given.clone().unwrap_or_else(mgc_devices::detect);
    let text: Option<String> = if let Ok(s) = plan_or_workflow.cast::<PyString>() {
        Some(s.to_string()).filter(|s| is_explained_text(s))
    } else if plan_or_workflow.is_instance_of::<PyDict>() {
        Some(py.import("json")?.call_method1("dumps", (plan_or_workflow,))?.extract()?)
    } else {
        None
    };
    let path: Option<PathBuf> = if text.is_none() { Some(plan_or_workflow.extract()?) } else { None };
    let input = match (&text, &path) {
        (Some(text), _) => PlanOrWorkflow::Text(text),
        (None, Some(path)) => PlanOrWorkflow::File(path),
        (None, None) => return Err(PyValueError::new_err("`plan_or_workflow` is a plan, a workflow's text or a path")),
    };
    let out = PyDict::new(py);
    match stage {
        Some(stage) => {
            let form = api::explain_stage(input, stage, &detect).map_err(|f| raise(py, f))?;
            out.set_item("table", form)?;
            out.set_item("svg", py.None())?;
        }
        None => {
            let explanation = api::explain(input, &detect).map_err(|f| raise(py, f))?;
            out.set_item("table", explanation.table)?;
            out.set_item("svg", explanation.svg)?;
        }
    }
    Ok(out)
}

/// The PNG of a picture (SVG text, such as `explain(plan)["svg"]`), `scale` times its size, as
/// bytes. Text is set in DejaVu Sans, embedded, so that every machine draws the same pixels.
#[pyfunction]
#[pyo3(signature = (svg, scale = 1.0))]
fn render_png<'py>(py: Python<'py>, svg: &str, scale: f32) -> PyResult<Bound<'py, PyBytes>> {
    let drawn = py.detach(|| png::svg_to_png(svg, scale));
    match drawn {
        Ok(bytes) => Ok(PyBytes::new(py, &bytes)),
        Err(error) => Err(raise(py, Failure::new(Status::InputProblem, None, &[error]))),
    }
}

/// The plan's JSON Schema, as `mgc schema` prints it.
#[pyfunction]
fn schema(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    loads(py, &api::schema())
}

/// Runs the `mgc` command line with `args` (the program's name first) in this process, printing
/// on its stdout and stderr; returns the exit code.
#[pyfunction]
fn main_with_args(args: Vec<OsString>) -> u8 {
    mgc_cli::main_with_args(args)
}

#[pymodule]
fn _mgc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MgcError", m.py().get_type::<MgcError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(check_allocation, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(schema, m)?)?;
    m.add_function(wrap_pyfunction!(explain, m)?)?;
    m.add_function(wrap_pyfunction!(render_png, m)?)?;
    m.add_function(wrap_pyfunction!(main_with_args, m)?)?;
    Ok(())
}
