//! With the `python` feature, examples embed Python: give them an rpath to the libpython that pyo3
//! was configured with (PYO3_PYTHON or the active venv's python), so they load it and no other.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "python")]
    pyo3_build_config::add_libpython_rpath_link_args();
}
