//! With the `python` feature, binaries of this crate embed Python: give them an rpath to the
//! libpython that pyo3 was configured with, so that they load it rather than another Python's.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "python")]
    pyo3_build_config::add_libpython_rpath_link_args();
}
