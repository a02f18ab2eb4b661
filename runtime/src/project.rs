//! The project file `sluice.yaml`: an optional build step and the deployments to make.
//!
//! It is read strictly, in two steps: into private types mirroring what was written (every
//! struct denies unknown keys, and every value that can be wrong is checked as it is read, so
//! serde_yaml reports it with its line), then resolved into the validated [`Project`] the rest
//! of the code uses (paths made absolute, names unique).

use crate::artifact::Digest;
use crate::core::deployment::Durability;
use crate::core::duration::parse_duration;
use crate::core::grants::{Grants, HostPattern, check_secret_name};
use crate::core::schedule::Schedule;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The project file's usual name.
pub const FILE_NAME: &str = "sluice.yaml";

/// The most memory a deployment may ask for: a wasm32 memory holds at most 4 GiB.
pub const MAX_MEMORY_MIB: u32 = 4096;

/// A commented starter project file, written by `sluice init`.
pub const STARTER: &str = r#"# sluice.yaml: how to build this project's flows and the deployments to make of them.
# Paths are relative to this file. Unknown keys are refused, so typos do not go unnoticed.

# Run before the artifacts are pushed (optional).
build:
  command: cargo build --release --target wasm32-wasip2
  # workdir: .

deployments:
  # A deployment is a named way to run one flow; flow/name must be unique.
  - name: default
    flow: hello
    # The compiled component: a path, or sha256:<64 hex> for one already pushed.
    artifact: target/wasm32-wasip2/release/hello_flow.wasm
    # Default parameters, checked against the flow's schema.
    parameters: {}
    # description: Says hello
    # version: "1.0"
    # tags: [demo]
    # Run by itself: every N seconds (or 30s, 5m, 2h, 1d), or on a cron expression.
    # schedule: {interval: 60}
    # schedule: {cron: "0 2 * * *", timezone: Europe/Paris}
    # paused: false
    # pool: default
    # queue: default
    # limits: {memory_mib: 64, timeout: 10m, concurrency: 1, task_cpu: 1m, run_cpu: 10m, durability: strict}
    # grants: {allow_hosts: [api.example.com], secrets: [API_TOKEN]}
"#;

/// A project file, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Project {
    /// What to run before pushing, if anything.
    pub build: Option<BuildStep>,
    /// The deployments, in file order, at least one.
    pub deployments: Vec<DeploymentEntry>,
}

/// The build step: a shell command run in a folder.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildStep {
    /// The command line, as written.
    pub command: String,
    /// Where to run it: absolute, the file's folder unless the file says otherwise.
    pub workdir: PathBuf,
}

/// One deployment of the project file.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentEntry {
    /// The deployment's name, unique per flow.
    pub name: String,
    /// The flow it runs.
    pub flow: String,
    /// The component holding the flow.
    pub artifact: ArtifactRef,
    /// Default parameters (checked against the flow's schema later, once the artifact is known).
    pub parameters: Map<String, Value>,
    /// What it is for.
    pub description: Option<String>,
    /// Its version label.
    pub version: Option<String>,
    /// Tags, in file order.
    pub tags: Vec<String>,
    /// When it runs by itself.
    pub schedule: Option<Schedule>,
    /// Whether its schedule starts paused.
    pub paused: bool,
    /// Work pool.
    pub pool: Option<String>,
    /// Work queue in the pool.
    pub queue: Option<String>,
    /// Limits of its runs.
    pub limits: Limits,
    /// Capabilities granted to its runs.
    pub grants: Grants,
    /// Events that start it: each becomes an automation named `{flow}-{name}-trigger-{n}`.
    pub triggers: Vec<TriggerEntry>,
}

/// A `triggers:` entry: when events match, run the deployment it is on.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerEntry {
    /// Which events, how many, within what window.
    pub trigger: crate::core::events::Trigger,
    /// The run's parameters taken from the event (`who: $.payload.user`).
    pub param_map: Map<String, Value>,
}

impl DeploymentEntry {
    /// `flow/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.flow, self.name)
    }
}

/// Where a deployment's component comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ArtifactRef {
    /// A file, absolute (resolved against the project file's folder).
    Path(PathBuf),
    /// An artifact already pushed: `sha256:<64 lower-case hex>`.
    Digest(String),
}

/// Limits a deployment sets on its runs; `None` leaves the default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// Memory per instance, in MiB (1 to [`MAX_MEMORY_MIB`]).
    pub memory_mib: Option<u32>,
    /// Wall-clock limit of a flow run.
    pub timeout: Option<Duration>,
    /// Runs of this deployment allowed at once (at least 1).
    pub concurrency: Option<u32>,
    /// CPU time of one task attempt.
    pub task_cpu: Option<Duration>,
    /// CPU time of a whole flow run.
    pub run_cpu: Option<Duration>,
    /// Times a failed or crashed flow run runs again, resuming from its journal.
    pub retries: u32,
    /// Wait before a flow retry.
    pub retry_delay: Option<Duration>,
    /// When the runs' records are committed (strict when absent).
    pub durability: Option<Durability>,
}

/// Reads, parses and resolves the project file at `path`. Relative paths in it are resolved
/// against its folder.
pub fn load(path: &Path) -> Result<Project, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    parse(&text, folder, &path.display().to_string())
}

/// Parses and resolves a project file's `text`; relative paths are resolved against
/// `base_dir` (made absolute first), and messages name the file `file_name`.
pub fn parse(text: &str, base_dir: &Path, file_name: &str) -> Result<Project, String> {
    // A first pass as plain YAML reports syntax errors and collects the deployments' names,
    // so that later messages can say "deployment 2 (nightly)" rather than "deployments[1]".
    let plain: serde_yaml::Value = serde_yaml::from_str(text).map_err(|error| yaml_error(&error, file_name, &[]))?;
    if plain.is_null() {
        return Err(no_deployments(file_name));
    }
    let names = deployment_names(&plain);
    // Parsed from the text again, not from `plain`: only the text carries line numbers.
    let written: ProjectFile = serde_yaml::from_str(text).map_err(|error| yaml_error(&error, file_name, &names))?;
    resolve(written, base_dir, file_name)
}

fn no_deployments(file_name: &str) -> String {
    format!("{file_name}: no deployments; list at least one under `deployments:` (`sluice init` writes an example)")
}

/// Turns the file as written into a [`Project`]: what could not be checked value by value.
fn resolve(written: ProjectFile, base_dir: &Path, file_name: &str) -> Result<Project, String> {
    if written.deployments.is_empty() {
        return Err(no_deployments(file_name));
    }
    let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
    let build = written.build.map(|build| BuildStep {
        command: build.command.0,
        workdir: build.workdir.map_or_else(|| base_dir.clone(), |workdir| resolve_path(&base_dir, &workdir.0)),
    });
    let mut deployments: Vec<DeploymentEntry> = Vec::with_capacity(written.deployments.len());
    let mut positions: HashMap<String, usize> = HashMap::new();
    for (index, deployment) in written.deployments.into_iter().enumerate() {
        let limits = deployment.limits.unwrap_or_default();
        let grants = deployment.grants.unwrap_or_default();
        let mut triggers = Vec::with_capacity(deployment.triggers.len());
        for (number, written) in deployment.triggers.into_iter().enumerate() {
            let trigger = crate::core::events::Trigger {
                event: written.event,
                deployment: written.deployment,
                tags: written.tags,
                threshold: written.threshold.unwrap_or(1),
                within_seconds: written.within.map(|within| within.0.as_secs()),
            };
            let param_map = written.parameters.unwrap_or_default();
            trigger
                .check()
                .and_then(|()| crate::core::events::check_param_map(&param_map))
                .map_err(|why| format!("{file_name}: deployment {} trigger {}: {why}", index + 1, number + 1))?;
            triggers.push(TriggerEntry { trigger, param_map });
        }
        let entry = DeploymentEntry {
            name: deployment.name.0,
            flow: deployment.flow.0,
            artifact: match deployment.artifact.0 {
                WrittenArtifact::Path(path) => ArtifactRef::Path(resolve_path(&base_dir, &path)),
                WrittenArtifact::Digest(digest) => ArtifactRef::Digest(digest),
            },
            parameters: deployment.parameters.unwrap_or_default(),
            description: deployment.description,
            version: deployment.version,
            tags: deployment.tags.unwrap_or_default().into_iter().map(|tag| tag.0).collect(),
            schedule: deployment.schedule.map(|schedule| schedule.0),
            paused: deployment.paused,
            pool: deployment.pool.map(|pool| pool.0),
            queue: deployment.queue.map(|queue| queue.0),
            limits: Limits {
                memory_mib: limits.memory_mib.map(|memory| memory.0),
                timeout: limits.timeout.map(|timeout| timeout.0),
                concurrency: limits.concurrency.map(|concurrency| concurrency.0),
                task_cpu: limits.task_cpu.map(|cpu| cpu.0),
                run_cpu: limits.run_cpu.map(|cpu| cpu.0),
                retries: deployment.retries,
                retry_delay: deployment.retry_delay.map(|delay| delay.0),
                durability: limits.durability,
            },
            grants: Grants {
                allow_hosts: grants.allow_hosts.unwrap_or_default().into_iter().map(|host| host.0).collect(),
                secrets: grants.secrets.unwrap_or_default().into_iter().map(|name| name.0).collect(),
            },
            triggers,
        };
        let full_name = entry.full_name();
        if let Some(first) = positions.insert(full_name.clone(), index) {
            return Err(format!(
                "{file_name}: deployments {} and {} are both `{full_name}`; deployments of one flow need different names",
                first + 1,
                index + 1
            ));
        }
        deployments.push(entry);
    }
    Ok(Project { build, deployments })
}

/// `path` against `base_dir` unless already absolute, without `.` parts. `..` is kept:
/// removing it by hand would be wrong where a symbolic link leads elsewhere.
fn resolve_path(base_dir: &Path, path: &Path) -> PathBuf {
    base_dir.join(path).components().filter(|component| *component != Component::CurDir).collect()
}

/// The deployments' names as written, by position, for messages.
fn deployment_names(plain: &serde_yaml::Value) -> Vec<Option<String>> {
    let Some(deployments) = plain.get("deployments").and_then(serde_yaml::Value::as_sequence) else {
        return Vec::new();
    };
    deployments
        .iter()
        .map(|deployment| match deployment.get("name")? {
            serde_yaml::Value::String(name) => Some(name.clone()),
            serde_yaml::Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
        .collect()
}

/// "deployment 2 (nightly)", or "deployment 2" when it has no readable name.
fn deployment_label(index: usize, names: &[Option<String>]) -> String {
    match names.get(index) {
        Some(Some(name)) => format!("deployment {} ({name})", index + 1),
        _ => format!("deployment {}", index + 1),
    }
}

/// A serde_yaml error as `sluice.yaml line 7, deployment 1 (leo): unknown field ...`.
fn yaml_error(error: &serde_yaml::Error, file_name: &str, names: &[Option<String>]) -> String {
    let mut message = error.to_string();
    let mut place = file_name.to_string();
    if let Some(location) = error.location() {
        // The position moves to the front, where people look for it.
        message = message.replacen(&format!(" at line {} column {}", location.line(), location.column()), "", 1);
        place = format!("{file_name} line {}", location.line());
    }
    // serde_yaml starts a message with the path of the value, `deployments[0].limits: ...`;
    // people count deployments from 1 and know them by name.
    let in_deployment = message.strip_prefix("deployments[").and_then(|rest| {
        let (index, rest) = rest.split_once(']')?;
        let label = deployment_label(index.parse().ok()?, names);
        Some(match rest.strip_prefix('.') {
            Some(field_path) => format!("{place}, {label}, {field_path}"),
            None => format!("{place}, {label}{rest}"),
        })
    });
    let in_build = || message.starts_with("build:") || message.starts_with("build.");
    in_deployment
        .unwrap_or_else(|| if in_build() { format!("{place}, {message}") } else { format!("{place}: {message}") })
}

// ---------------------------------------------------------------------------------------
// The file as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    build: Option<BuildFile>,
    #[serde(default)]
    deployments: Vec<DeploymentFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildFile {
    command: Command,
    workdir: Option<RelativePath>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentFile {
    name: Name,
    flow: Name,
    artifact: Artifact,
    // `Option` so that a key left empty (`parameters:`) reads as none rather than an error.
    parameters: Option<Map<String, Value>>,
    description: Option<String>,
    version: Option<String>,
    tags: Option<Vec<Tag>>,
    schedule: Option<ScheduleSpec>,
    #[serde(default)]
    paused: bool,
    pool: Option<Name>,
    queue: Option<Name>,
    limits: Option<LimitsFile>,
    grants: Option<GrantsFile>,
    /// Flow retries, as Prefect's `@flow(retries=…)`: resumed from the journal.
    #[serde(default)]
    retries: u32,
    retry_delay: Option<Timeout>,
    #[serde(default)]
    triggers: Vec<TriggerFile>,
}

/// A trigger as written: `{event: sluice.flow-run.Completed, deployment: etl/nightly, parameters: {day: $.time}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerFile {
    event: String,
    deployment: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    threshold: Option<u32>,
    within: Option<Timeout>,
    parameters: Option<Map<String, Value>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    memory_mib: Option<MemoryMib>,
    timeout: Option<Timeout>,
    concurrency: Option<Concurrency>,
    task_cpu: Option<Timeout>,
    run_cpu: Option<Timeout>,
    durability: Option<Durability>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsFile {
    allow_hosts: Option<Vec<AllowedHost>>,
    secrets: Option<Vec<SecretName>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    interval: Option<IntervalSeconds>,
    anchor: Option<DateTime<Utc>>,
    cron: Option<String>,
    timezone: Option<String>,
}

enum WrittenArtifact {
    Path(PathBuf),
    Digest(String),
}

/// Reads a scalar and checks it at once: an error raised inside serde_yaml's own call is
/// given that scalar's line, one raised after it returns would get the enclosing mapping's.
fn checked<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    check: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct CheckedVisitor<T> {
        expecting: &'static str,
        check: fn(&str) -> Result<T, String>,
    }
    impl<T> Visitor<'_> for CheckedVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
            (self.check)(text).map_err(E::custom)
        }
    }
    // serde_yaml hands any scalar to `visit_str` as written, so `60` and `1.0` arrive as text.
    deserializer.deserialize_str(CheckedVisitor { expecting, check })
}

/// A private newtype read with [`checked`].
macro_rules! checked_scalar {
    ($name:ident, $inner:ty, $expecting:literal, $check:expr) => {
        struct $name($inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                checked(deserializer, $expecting, $check).map($name)
            }
        }
    };
}

checked_scalar!(Name, String, "a name", check_name);
checked_scalar!(Tag, String, "a tag", |text: &str| match text.trim() {
    "" => Err("a tag cannot be empty".to_string()),
    tag => Ok(tag.to_string()),
});
checked_scalar!(Command, String, "a command line", |text: &str| match text.trim() {
    "" =>
        Err("the build command is empty; write one, such as cargo build --release --target wasm32-wasip2".to_string()),
    command => Ok(command.to_string()),
});
checked_scalar!(RelativePath, PathBuf, "a path", |text: &str| match text.trim() {
    "" => Err("the path is empty".to_string()),
    path => Ok(PathBuf::from(path)),
});
checked_scalar!(Artifact, WrittenArtifact, "a path or sha256:<hex>", check_artifact);
checked_scalar!(IntervalSeconds, u64, "a number of seconds or a duration", check_interval);
checked_scalar!(Timeout, Duration, "a duration", |text: &str| match parse_duration(text)? {
    Duration::ZERO => Err("a timeout of 0 would stop every run at once; give a duration such as 10m".to_string()),
    timeout => Ok(timeout),
});
checked_scalar!(AllowedHost, String, "a host", |text: &str| HostPattern::parse(text).map(|_| text.trim().to_string()));
checked_scalar!(SecretName, String, "a secret name", |text: &str| check_secret_name(text).map(|()| text.to_string()));
checked_scalar!(MemoryMib, u32, "a number of MiB", |text: &str| {
    text.trim().parse().ok().filter(|mib| (1..=MAX_MEMORY_MIB).contains(mib)).ok_or_else(|| {
        format!("memory_mib `{text}` must be a whole number of MiB from 1 to {MAX_MEMORY_MIB}, such as 64")
    })
});
checked_scalar!(Concurrency, u32, "a number of runs", |text: &str| {
    text.trim()
        .parse()
        .ok()
        .filter(|&runs: &u32| runs >= 1)
        .ok_or_else(|| format!("concurrency `{text}` must be a whole number of runs, at least 1"))
});

/// Names of deployments, flows, pools and queues: they end up in `flow/name` and on
/// command lines, so they keep to characters that need no quoting.
fn check_name(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("a name cannot be empty".to_string());
    }
    if !text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(format!("`{text}` is not a valid name; use letters, digits, `_`, `.` and `-`, as in hello-daily"));
    }
    Ok(text.to_string())
}

fn check_artifact(text: &str) -> Result<WrittenArtifact, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the artifact is empty; give the path of a .wasm file or sha256:<64 hex>".to_string());
    }
    if text.starts_with("sha256:") {
        // Canonical (lower-case) form, as the artifact store names it.
        return Ok(WrittenArtifact::Digest(Digest::parse(text)?.to_string()));
    }
    Ok(WrittenArtifact::Path(PathBuf::from(text)))
}

fn check_interval(text: &str) -> Result<u64, String> {
    let interval = parse_duration(text)?;
    if interval.subsec_nanos() != 0 && interval >= Duration::from_secs(1) {
        return Err(format!("an interval must be a whole number of seconds; got `{text}`"));
    }
    // Under a second, `as_secs` is 0, which the constructor refuses with its own message.
    Schedule::interval(interval.as_secs())?;
    Ok(interval.as_secs())
}

/// A schedule, checked as a whole once its mapping is read (so within serde_yaml's call for
/// that mapping, which gives errors its line).
struct ScheduleSpec(Schedule);

impl<'de> Deserialize<'de> for ScheduleSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScheduleVisitor;
        impl<'de> Visitor<'de> for ScheduleVisitor {
            type Value = Schedule;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a schedule such as {interval: 60} or {cron: \"0 2 * * *\", timezone: Europe/Paris}")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Schedule, A::Error> {
                let written = ScheduleFile::deserialize(de::value::MapAccessDeserializer::new(map))?;
                written.resolve().map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_map(ScheduleVisitor).map(ScheduleSpec)
    }
}

impl ScheduleFile {
    fn resolve(self) -> Result<Schedule, String> {
        match (self.interval, self.cron) {
            (Some(IntervalSeconds(seconds)), None) => {
                if self.timezone.is_some() {
                    return Err("`timezone` goes with `cron`; an interval runs every N seconds in any zone".to_string());
                }
                Ok(Schedule::Interval { seconds, anchor: self.anchor })
            }
            (None, Some(expression)) => {
                if self.anchor.is_some() {
                    return Err("`anchor` goes with `interval`, not `cron`".to_string());
                }
                Schedule::cron(&expression, self.timezone.as_deref())
            }
            (Some(_), Some(_)) => Err("a schedule has `interval` or `cron`, not both".to_string()),
            (None, None) => {
                Err("a schedule needs `interval` (seconds, or 30s, 5m, 2h) or `cron` (such as \"0 * * * *\")"
                    .to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"# sluice.yaml
build:                      # optional: run before pushing
  command: cargo build --release --target wasm32-wasip2
  workdir: .                # optional, relative to the file
deployments:
  - name: leo               # deployment name; flow/name must be unique
    flow: hello
    artifact: target/wasm32-wasip2/release/hello_flow.wasm   # a path (relative to the file) or sha256:<hex>
    parameters: {name: Leo}
    description: Says hello to Leo
    version: "1.0"
    tags: [demo]
    schedule: {interval: 60}             # or {cron: "0 2 * * *", timezone: Europe/Paris}
    paused: false
    pool: default
    queue: default
    limits: {memory_mib: 64, timeout: 10m, concurrency: 1}
"#;

    const DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn parse_text(text: &str) -> Result<Project, String> {
        parse(text, Path::new("/projects/demo"), "sluice.yaml")
    }

    /// One deployment `hello/leo` with `extra` lines appended to it.
    fn one_deployment(extra: &str) -> String {
        format!("deployments:\n  - name: leo\n    flow: hello\n    artifact: hello.wasm\n{extra}")
    }

    #[test]
    fn the_documented_example_parses() {
        let project = parse_text(EXAMPLE).unwrap();
        assert_eq!(
            project.build,
            Some(BuildStep {
                command: "cargo build --release --target wasm32-wasip2".into(),
                workdir: PathBuf::from("/projects/demo"),
            })
        );
        let expected = DeploymentEntry {
            name: "leo".into(),
            flow: "hello".into(),
            artifact: ArtifactRef::Path(PathBuf::from("/projects/demo/target/wasm32-wasip2/release/hello_flow.wasm")),
            parameters: serde_json::json!({"name": "Leo"}).as_object().unwrap().clone(),
            description: Some("Says hello to Leo".into()),
            version: Some("1.0".into()),
            tags: vec!["demo".into()],
            schedule: Some(Schedule::interval(60).unwrap()),
            paused: false,
            pool: Some("default".into()),
            queue: Some("default".into()),
            limits: Limits {
                memory_mib: Some(64),
                timeout: Some(Duration::from_secs(600)),
                concurrency: Some(1),
                ..Limits::default()
            },
            grants: Grants::default(),
            triggers: Vec::new(),
        };
        assert_eq!(project.deployments, vec![expected]);
        assert_eq!(project.deployments[0].full_name(), "hello/leo");
    }

    #[test]
    fn grants_and_cpu_limits_are_read_and_checked() {
        let text = one_deployment(
            "    limits: {task_cpu: 250ms, run_cpu: 1m}\n    grants: {allow_hosts: [\"127.0.0.1:8080\"], secrets: [API_TOKEN]}\n",
        );
        let entry = &parse_text(&text).unwrap().deployments[0];
        assert_eq!(entry.limits.task_cpu, Some(Duration::from_millis(250)));
        assert_eq!(entry.limits.run_cpu, Some(Duration::from_secs(60)));
        assert_eq!(entry.grants.allow_hosts, ["127.0.0.1:8080"]);
        assert_eq!(entry.grants.secrets, ["API_TOKEN"]);
        let message = parse_text(&one_deployment("    grants: {allow_hosts: [\"https://x.com\"]}\n")).unwrap_err();
        assert!(message.contains("without scheme or path"), "{message}");
        let message = parse_text(&one_deployment("    grants: {secrets: [1BAD]}\n")).unwrap_err();
        assert!(message.contains("not a valid secret name"), "{message}");
        let message = parse_text(&one_deployment("    grants: {files: [/etc]}\n")).unwrap_err();
        assert!(message.contains("unknown field `files`"), "{message}");
    }

    #[test]
    fn durability_is_read_and_a_wrong_mode_named() {
        let entry = &parse_text(&one_deployment("    limits: {durability: batched}\n")).unwrap().deployments[0];
        assert_eq!(entry.limits.durability, Some(Durability::Batched));
        let entry = &parse_text(&one_deployment("    limits: {}\n")).unwrap().deployments[0];
        assert_eq!(entry.limits.durability, None);
        let message = parse_text(&one_deployment("    limits: {durability: lazy}\n")).unwrap_err();
        assert!(message.contains("unknown variant `lazy`") && message.contains("batched"), "{message}");
    }

    #[test]
    fn optional_keys_may_be_left_out_or_empty() {
        let project = parse_text(&one_deployment("    parameters:\n    tags:\n")).unwrap();
        let entry = &project.deployments[0];
        assert_eq!(project.build, None);
        assert!(entry.parameters.is_empty() && entry.tags.is_empty() && entry.schedule.is_none());
        assert_eq!(entry.limits, Limits::default());
        assert!(!entry.paused);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let text = EXAMPLE.replace("    parameters:", "    paramters:");
        let message = parse_text(&text).unwrap_err();
        assert!(
            message.starts_with("sluice.yaml line 9, deployment 1 (leo): unknown field `paramters`, expected one of"),
            "{message}"
        );
        let message = parse_text(&EXAMPLE.replace("concurrency: 1", "concurency: 1")).unwrap_err();
        assert!(
            message.starts_with("sluice.yaml line 17, deployment 1 (leo), limits: unknown field `concurency`"),
            "{message}"
        );
        let message = parse_text(&EXAMPLE.replace("  workdir: .", "  folder: .")).unwrap_err();
        assert!(message.starts_with("sluice.yaml line 4, build: unknown field `folder`"), "{message}");
        let message = parse_text(&format!("{EXAMPLE}extra: 1\n")).unwrap_err();
        assert!(message.starts_with("sluice.yaml line 18: unknown field `extra`"), "{message}");
    }

    #[test]
    fn bad_values_are_refused_with_their_line_and_deployment() {
        let text = format!(
            "{}  - name: nightly\n    flow: hello\n    artifact: hello.wasm\n    schedule: {{cron: \"0 25 * * *\"}}\n",
            one_deployment("")
        );
        let message = parse_text(&text).unwrap_err();
        assert!(
            message.starts_with("sluice.yaml line 8, deployment 2 (nightly), schedule: `0 25 * * *` is not a cron"),
            "{message}"
        );
        let message = parse_text(&one_deployment("    schedule: {interval: 0}\n")).unwrap_err();
        assert!(
            message.starts_with("sluice.yaml line 5, deployment 1 (leo), schedule.interval: an interval"),
            "{message}"
        );
        let message = parse_text(&one_deployment("    schedule: {interval: 250ms}\n")).unwrap_err();
        assert!(message.contains("at least 1 s"), "{message}");
        let message =
            parse_text(&one_deployment("    schedule: {cron: \"0 2 * * *\", timezone: Mars/Olympus}\n")).unwrap_err();
        assert!(message.contains("deployment 1 (leo), schedule: `Mars/Olympus` is not a time zone"), "{message}");
        let message = parse_text(&one_deployment("    schedule: {interval: 60, cron: \"0 * * * *\"}\n")).unwrap_err();
        assert!(message.contains("not both"), "{message}");
        let message = parse_text(&one_deployment("    limits: {timeout: soon}\n")).unwrap_err();
        assert!(
            message.starts_with("sluice.yaml line 5, deployment 1 (leo), limits.timeout: `soon` is not a duration"),
            "{message}"
        );
        let message = parse_text(&one_deployment("    limits: {memory_mib: 0}\n")).unwrap_err();
        assert!(message.contains("from 1 to 4096"), "{message}");
        let message =
            parse_text("deployments:\n  - name: leo hello\n    flow: hello\n    artifact: a.wasm\n").unwrap_err();
        assert!(
            message.starts_with("sluice.yaml line 2, deployment 1 (leo hello), name: `leo hello` is not a valid name"),
            "{message}"
        );
        let message = parse_text("deployments:\n  - name: leo\n    artifact: a.wasm\n").unwrap_err();
        assert!(message.starts_with("sluice.yaml line 2, deployment 1 (leo): missing field `flow`"), "{message}");
    }

    #[test]
    fn schedules_of_both_kinds_resolve() {
        let cron = "    schedule:\n      cron: \"0 2 * * *\"\n      timezone: Europe/Paris\n";
        let project = parse_text(&one_deployment(cron)).unwrap();
        assert_eq!(project.deployments[0].schedule, Some(Schedule::cron("0 2 * * *", Some("Europe/Paris")).unwrap()));
        let anchored = "    schedule: {interval: 1h, anchor: \"2026-01-01T00:15:00Z\"}\n";
        let project = parse_text(&one_deployment(anchored)).unwrap();
        let anchor = DateTime::parse_from_rfc3339("2026-01-01T00:15:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(project.deployments[0].schedule, Some(Schedule::Interval { seconds: 3600, anchor: Some(anchor) }));
    }

    #[test]
    fn duplicate_deployments_are_refused() {
        let text = format!("{}  - name: leo\n    flow: hello\n    artifact: other.wasm\n", one_deployment(""));
        let message = parse_text(&text).unwrap_err();
        assert_eq!(
            message,
            "sluice.yaml: deployments 1 and 2 are both `hello/leo`; deployments of one flow need different names"
        );
        // The same name for another flow is fine.
        let text = format!("{}  - name: leo\n    flow: bye\n    artifact: other.wasm\n", one_deployment(""));
        assert_eq!(parse_text(&text).unwrap().deployments.len(), 2);
    }

    #[test]
    fn artifact_paths_resolve_against_the_base_dir() {
        let entry = |artifact: &str| {
            let text = format!("deployments:\n  - name: leo\n    flow: hello\n    artifact: {artifact}\n");
            parse_text(&text).map(|project| project.deployments[0].artifact.clone())
        };
        assert_eq!(entry("./flows/hello.wasm"), Ok(ArtifactRef::Path("/projects/demo/flows/hello.wasm".into())));
        assert_eq!(entry("../shared/hello.wasm"), Ok(ArtifactRef::Path("/projects/demo/../shared/hello.wasm".into())));
        assert_eq!(entry("/opt/hello.wasm"), Ok(ArtifactRef::Path("/opt/hello.wasm".into())));
        let workdir =
            "build: {command: make, workdir: ./guest}\ndeployments:\n  - {name: a, flow: b, artifact: c.wasm}\n";
        assert_eq!(parse_text(workdir).unwrap().build.unwrap().workdir, PathBuf::from("/projects/demo/guest"));
    }

    #[test]
    fn digests_are_validated_and_made_canonical() {
        let entry = |artifact: &str| {
            let text = format!("deployments:\n  - name: leo\n    flow: hello\n    artifact: \"{artifact}\"\n");
            parse_text(&text).map(|project| project.deployments[0].artifact.clone())
        };
        assert_eq!(entry(DIGEST), Ok(ArtifactRef::Digest(DIGEST.into())));
        assert_eq!(entry(&DIGEST.to_uppercase().replace("SHA256:", "sha256:")), Ok(ArtifactRef::Digest(DIGEST.into())));
        let message = entry("sha256:abc").unwrap_err();
        assert!(
            message.starts_with("sluice.yaml line 4, deployment 1 (leo), artifact: `sha256:abc` is not a digest"),
            "{message}"
        );
    }

    #[test]
    fn empty_files_and_bad_yaml_are_refused() {
        assert!(parse_text("").unwrap_err().contains("no deployments"));
        assert!(parse_text("# nothing yet\n").unwrap_err().contains("no deployments"));
        assert!(parse_text("deployments: []\n").unwrap_err().contains("no deployments"));
        let message = parse_text("deployments:\n  - name: leo\n   flow: hello\n").unwrap_err();
        assert!(message.starts_with("sluice.yaml line 3"), "{message}");
    }

    #[test]
    fn the_starter_parses() {
        let project = parse_text(STARTER).unwrap();
        assert_eq!(project.deployments.len(), 1);
        assert_eq!(project.deployments[0].full_name(), "hello/default");
        assert!(project.build.is_some());
    }

    #[test]
    fn load_reads_the_file_and_resolves_against_its_folder() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join(FILE_NAME);
        std::fs::write(&path, EXAMPLE).unwrap();
        let project = load(&path).unwrap();
        let ArtifactRef::Path(artifact) = &project.deployments[0].artifact else { panic!("not a path") };
        assert_eq!(artifact, &folder.path().join("target/wasm32-wasip2/release/hello_flow.wasm"));
        let message = load(&folder.path().join("missing.yaml")).unwrap_err();
        assert!(message.starts_with("cannot read") && message.contains("missing.yaml"), "{message}");
    }
}
