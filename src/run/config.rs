//! Configs layered from defaults, a TOML/JSON file and command-line flags.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use super::RunError;

/// Reads a config from a `.toml` or `.json` file (decided by the extension; TOML otherwise).
pub fn load_config<T: DeserializeOwned>(path: &Path) -> Result<T, RunError> {
    let value = load_config_value(path)?;
    serde_json::from_value(value).map_err(|e| RunError::Config { path: path.into(), message: e.to_string() })
}

fn load_config_value(path: &Path) -> Result<serde_json::Value, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Io { path: path.into(), source })?;
    let bad = |message: String| RunError::Config { path: path.into(), message };
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
    } else {
        let v: toml::Value = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        serde_json::to_value(v).map_err(|e| bad(e.to_string()))
    }
}

/// Overlays the keys of a TOML/JSON config file on `base`; unknown keys are an error.
pub fn overlay_config<T: Serialize + DeserializeOwned>(base: &T, path: &Path) -> Result<T, RunError> {
    let bad = |message: String| RunError::Config { path: path.into(), message };
    let mut merged = serde_json::to_value(base).map_err(|e| bad(e.to_string()))?;
    let file = load_config_value(path)?;
    let (Some(base), Some(over)) = (merged.as_object_mut(), file.as_object()) else {
        return Err(bad("expected a table of settings".into()));
    };
    for (key, value) in over {
        if !base.contains_key(key) {
            return Err(bad(format!("unknown setting `{key}`")));
        }
        base.insert(key.clone(), value.clone());
    }
    serde_json::from_value(merged).map_err(|e| bad(e.to_string()))
}

/// Layers a config: `defaults`, then the config file (if any), then flags given on the command line.
///
/// `cli` is the config clap parsed (its defaults filled in for flags not given); `matches` tells
/// which flags were really given. Flag ids must equal the serde field names, which clap's derive
/// does (field `batch_size`, flag `--batch-size`). Pass `cli` as `defaults` unless the example has
/// defaults of its own (e.g. another environment's tuned values). Unknown keys in the file are an error.
pub fn resolve_config<T: Serialize + DeserializeOwned>(
    defaults: &T,
    cli: &T,
    file: Option<&Path>,
    matches: &clap::ArgMatches,
) -> Result<T, RunError> {
    let source = file.unwrap_or(Path::new("<command line>"));
    let bad = |message: String| RunError::Config { path: source.into(), message };
    let mut merged = match file {
        Some(path) => serde_json::to_value(overlay_config(defaults, path)?),
        None => serde_json::to_value(defaults),
    }
    .map_err(|e| bad(e.to_string()))?;
    let given = serde_json::to_value(cli).map_err(|e| bad(e.to_string()))?;
    let (Some(base), Some(given)) = (merged.as_object_mut(), given.as_object()) else {
        return Err(bad("expected a table of settings".into()));
    };
    for (key, value) in given {
        let on_command_line = matches.try_get_raw(key).ok().flatten().is_some()
            && matches.value_source(key) == Some(clap::parser::ValueSource::CommandLine);
        if on_command_line {
            if value.is_null() {
                // serde_json writes NaN and infinities as null: say so instead of "expected f64".
                let raw = matches.get_raw(key).into_iter().flatten().map(|v| v.to_string_lossy()).collect::<Vec<_>>();
                return Err(bad(format!("--{} {}: not a finite number", key.replace('_', "-"), raw.join(" "))));
            }
            base.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(merged).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(clap::Parser, Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Cfg {
        /// Learning rate.
        #[arg(long, default_value_t = 0.001)]
        lr: f64,
        /// Batch size.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    }

    fn parse(args: &[&str], file: Option<&Path>) -> Result<Cfg, RunError> {
        let matches = Cfg::command().get_matches_from(args);
        let cli = Cfg::from_arg_matches(&matches).unwrap();
        resolve_config(&cli, &cli, file, &matches)
    }

    #[test]
    fn command_line_flags_override_the_config_file() {
        let dir = std::env::temp_dir().join(format!("glimpse-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("c.toml");
        std::fs::write(&toml_path, "lr = 0.5\nbatch_size = 64\n").unwrap();
        let json_path = dir.join("c.json");
        std::fs::write(&json_path, r#"{"batch_size": 8}"#).unwrap();

        assert_eq!(parse(&["x"], None).unwrap(), Cfg { lr: 0.001, batch_size: 32, seed: 1 });
        assert_eq!(parse(&["x"], Some(&toml_path)).unwrap(), Cfg { lr: 0.5, batch_size: 64, seed: 1 });
        let c = parse(&["x", "--batch-size", "16", "--seed", "3"], Some(&toml_path)).unwrap();
        assert_eq!(c, Cfg { lr: 0.5, batch_size: 16, seed: 3 });
        assert_eq!(parse(&["x"], Some(&json_path)).unwrap().batch_size, 8);

        std::fs::write(&toml_path, "learning_rate = 0.5\n").unwrap();
        let err = parse(&["x"], Some(&toml_path)).unwrap_err().to_string();
        assert!(err.contains("unknown setting `learning_rate`") && err.contains("c.toml"), "{err}");
        std::fs::write(&toml_path, "lr = \"fast\"\n").unwrap();
        assert!(parse(&["x"], Some(&toml_path)).is_err());
        // Example-specific defaults sit under the file and the command line.
        let matches = Cfg::command().get_matches_from(["x", "--lr", "0.2"]);
        let cli = Cfg::from_arg_matches(&matches).unwrap();
        let defaults = Cfg { lr: 9.0, batch_size: 99, seed: 5 };
        std::fs::write(&json_path, r#"{"seed": 8}"#).unwrap();
        let c = resolve_config(&defaults, &cli, Some(&json_path), &matches).unwrap();
        assert_eq!(c, Cfg { lr: 0.2, batch_size: 99, seed: 8 });
        std::fs::remove_dir_all(&dir).unwrap();
        let _ = Cfg::parse_from(["x"]);
    }
}
