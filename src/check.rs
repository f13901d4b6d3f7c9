//! `duijie check`: everything a deployment needs, checked without touching
//! the network — the deployment file, the schemas, the mappings, and how
//! they refer to each other.

use crate::config::Deployment;
use crate::mapping::MappingSet;
use crate::schema::SchemaSet;
use std::path::Path;

/// What `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// One line per problem, each naming its file (and line where known).
    pub problems: Vec<String>,
    /// Things that work but should not stay so (credentials in clear).
    pub warnings: Vec<String>,
    pub summary: String,
}

pub fn check_deployment(config: &Path) -> CheckReport {
    let mut report = CheckReport::default();
    if let Ok(text) = std::fs::read_to_string(config) {
        report.warnings = crate::secrets::plaintext_credentials(&text)
            .into_iter()
            .map(|(line, what)| {
                format!(
                    "{}:{line}: warning: {what}; write it as \"${{env:NAME}}\" or \"${{file:PATH}}\"",
                    config.display()
                )
            })
            .collect();
    }
    let deployment = match Deployment::load(config) {
        Ok(d) => d,
        Err(errors) => {
            report.problems = errors.iter().map(ToString::to_string).collect();
            return report;
        }
    };
    let schemas = match SchemaSet::load_dir(&deployment.hub.schemas) {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    let mappings = match MappingSet::load_dir(&deployment.hub.mappings, &schemas) {
        Ok(m) => m,
        Err(errors) => {
            report.problems = errors.iter().map(ToString::to_string).collect();
            return report;
        }
    };
    for p in &deployment.pipelines {
        match mappings.get(&p.mapping) {
            None => {
                let known: Vec<&String> = mappings.mappings.keys().collect();
                report.problems.push(
                    deployment
                        .locate(
                            &p.name,
                            "mapping",
                            format!(
                                "no mapping `{}` in {} (known: {known:?})",
                                p.mapping,
                                deployment.hub.mappings.display()
                            ),
                        )
                        .to_string(),
                );
            }
            Some(m) if m.system != p.system => {
                report.problems.push(
                    deployment
                        .locate(
                            &p.name,
                            "system",
                            format!(
                                "pipeline says `{}` but mapping `{}` reads system `{}`",
                                p.system, m.name, m.system
                            ),
                        )
                        .to_string(),
                );
            }
            Some(_) => {}
        }
    }
    report.summary = format!(
        "{}: ok — {} pipeline(s), {} mapping(s), {} schema(s)",
        config.display(),
        deployment.pipelines.len(),
        mappings.mappings.len(),
        schemas.iter().count()
    );
    report
}
