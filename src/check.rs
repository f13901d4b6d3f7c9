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
    /// The deployment and its mappings as read, when they could be (what
    /// [`registry_breaks`] judges).
    pub loaded: Option<Loaded>,
}

/// A deployment and its mappings, as `check` read them.
#[derive(Debug)]
pub struct Loaded {
    pub deployment: Deployment,
    pub mappings: MappingSet,
}

/// The GB/T 2260 division codes the repository holds
/// (`mappings/divisions/gbt2260.yaml`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Divisions {
    standard: String,
    /// Prefectures (first four digits) whose county-level codes are all
    /// listed: a county code under one of them must be listed; under
    /// another, its prefecture must be.
    complete_under: Vec<String>,
    divisions: std::collections::BTreeMap<String, String>,
}

impl Divisions {
    pub fn load(file: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
    }

    /// Whether a route key (a division code, or a longer code that starts
    /// with one: a street `420502001`) names a division that exists.
    pub fn check(&self, code: &str) -> Result<(), String> {
        let head: String = code.chars().take(6).collect();
        if head.len() < 6 || !head.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "`{code}` does not start with a six-digit {} division code",
                self.standard
            ));
        }
        let exists = |c: &str| self.divisions.contains_key(c);
        let prefecture = format!("{}00", &head[..4]);
        // A province or prefecture code, or a county code under a
        // prefecture listed in full, must be listed itself; another county
        // code, its prefecture.
        let listed_in_full = head.ends_with("00")
            || self
                .complete_under
                .iter()
                .any(|p| head.starts_with(p.as_str()));
        let known = if listed_in_full {
            exists(&head)
        } else {
            exists(&prefecture)
        };
        if known {
            Ok(())
        } else {
            let near: Vec<String> = self
                .divisions
                .iter()
                .filter(|(c, _)| c.starts_with(&head[..4]))
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            Err(format!(
                "division code `{head}` (in `{code}`) does not exist in {} (mappings/divisions/gbt2260.yaml); under {prefecture}: {}",
                self.standard,
                if near.is_empty() {
                    "none".into()
                } else {
                    near.join(", ")
                }
            ))
        }
    }
}

/// Every division code the deployment routes by: (table, key, code).
fn division_codes(d: &Deployment) -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    for p in &d.pipelines {
        if let Some(lead) = &p.lead {
            for code in lead.routes.keys() {
                out.push((format!("pipelines.{}.lead", p.name), "routes", code.clone()));
            }
        }
    }
    for (name, delivery) in &d.deliveries {
        if let crate::delivery::TransformConfig::LicenceNotice { routes, .. } = &delivery.transform
        {
            for code in routes.keys() {
                out.push((format!("deliveries.{name}"), "transform", code.clone()));
            }
        }
    }
    out
}

/// The older forms a deployment file still may write, each with its line
/// and the form that replaced it: a source's `login = {…}` (now `auth = {
/// scheme = "login", … }`).
fn older_forms(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut table = String::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with('[') {
            table = code.trim_matches(|c| c == '[' || c == ']').to_owned();
        } else if table.starts_with("pipelines.")
            && table.ends_with(".source")
            && code
                .strip_prefix("login")
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            out.push((
                i + 1,
                format!(
                    "{table}.login is the older form of `auth = {{ scheme = \"login\", … }}` (still read)"
                ),
            ));
        }
    }
    out
}

/// Long because `duijie check`'s steps in the order it reports them (file,
/// secrets, schemas, mappings, references, code tables), collecting every
/// problem rather than stopping at the first.
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
        report.warnings.extend(
            older_forms(&text)
                .into_iter()
                .map(|(line, what)| format!("{}:{line}: warning: {what}", config.display())),
        );
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
    // A lead reads its jurisdiction and its power-list fields from the
    // canonical record: each must be a field of the mapping's schema, or
    // every lead would be routed nowhere, or outside the powers.
    for p in &deployment.pipelines {
        let (Some(lead), Some(m)) = (&p.lead, mappings.get(&p.mapping)) else {
            continue;
        };
        let mut paths = vec![("jurisdiction", lead.jurisdiction.as_str())];
        if let Some(power) = &lead.power {
            paths.push(("power", power.item.as_str()));
            paths.push(("power", power.team.as_str()));
            paths.extend(power.name.as_deref().map(|n| ("power", n)));
        }
        for (key, path) in paths {
            if m.schema.leaf(path).is_none() {
                report.problems.push(
                    deployment
                        .locate_in(
                            &format!("pipelines.{}.lead", p.name),
                            key,
                            format!(
                                "`{path}` is not a field of `{}` (mapping `{}`)",
                                m.schema.full_name, m.name
                            ),
                        )
                        .to_string(),
                );
            }
        }
    }
    // The supervision rates and the desk's page read the power list
    // (权责清单): its table must load, with the columns the page shows.
    if let Some(c) = &deployment.sections.supervision {
        let problem = match crate::mapping::Rows::load(&deployment.hub.mappings, &c.power_list) {
            Err(why) => Some(why),
            Ok(rows) => {
                let missing: Vec<&str> = ["name", "kind", "basis", "team"]
                    .into_iter()
                    .filter(|c| !rows.has_column(c))
                    .collect();
                (!missing.is_empty()).then(|| {
                    format!(
                        "the power list `{}` has no column {}",
                        c.power_list,
                        missing.join(", ")
                    )
                })
            }
        };
        if let Some(why) = problem {
            report.problems.push(
                deployment
                    .locate_in("supervision", "power_list", why)
                    .to_string(),
            );
        }
    }
    // A canonical topic that keeps full ID numbers is sealed at rest when
    // the deployment seals (GB/T 39786-2021 level 3, confidentiality at
    // rest; 个人信息保护法 art. 51).
    if let Some(e) = &deployment.hub.encryption {
        for p in &deployment.pipelines {
            let Some(m) = mappings.get(&p.mapping) else {
                continue;
            };
            let fields = m.full_id_fields();
            if !fields.is_empty() && !e.topics.contains(&p.topic) {
                report.problems.push(
                    deployment
                        .locate_in(
                            "hub.encryption",
                            "topics",
                            format!(
                                "`{}` keeps full resident ID numbers ({}, mapping `{}`) and is not sealed: add it",
                                p.topic,
                                fields.join(", "),
                                m.name
                            ),
                        )
                        .to_string(),
                );
            }
        }
    }
    match Divisions::load(&deployment.hub.mappings.join("divisions/gbt2260.yaml")) {
        Ok(divisions) => {
            for (table, key, code) in division_codes(&deployment) {
                if let Err(why) = divisions.check(&code) {
                    report
                        .problems
                        .push(deployment.locate_in(&table, key, why).to_string());
                }
            }
        }
        Err(why) => report.problems.push(why),
    }
    report.summary = format!(
        "{}: ok — {} pipeline(s), {} mapping(s), {} schema(s)",
        config.display(),
        deployment.pipelines.len(),
        mappings.mappings.len(),
        schemas.iter().count()
    );
    report.loaded = Some(Loaded {
        deployment,
        mappings,
    });
    report
}

/// `duijie check --registry URL`: the schema each pipeline would register
/// (under its subject, `[kafka] subject_strategy`) against what the registry holds for that
/// subject, under the subject's compatibility level (its own, else the
/// registry's, else `BACKWARD`; [`crate::schema::compat`]). One line per
/// rule broken, naming the pipeline (file and line), the subject, the
/// schema, the version and the field; a registry that cannot be asked is a
/// problem too (nothing is assumed compatible).
pub async fn registry_breaks(loaded: &Loaded, url: &str) -> Vec<String> {
    let Loaded {
        deployment,
        mappings,
    } = loaded;
    let registry =
        crate::schema::registry::RegistryClient::new(url, deployment.kafka.subject_strategy);
    let mut problems = Vec::new();
    let mut judged = std::collections::BTreeSet::new();
    for p in &deployment.pipelines {
        let Some(m) = mappings.get(&p.mapping) else {
            continue;
        };
        // The schema under its subject, and each record it references
        // (`Party`) under its own, the record's full name.
        let main = (
            registry.subject(&p.topic, &m.schema.full_name),
            m.schema.full_name.as_str(),
            m.schema.json.as_str(),
        );
        let referenced = m
            .schema
            .references
            .iter()
            .map(|(name, json)| (name.clone(), name.as_str(), json.as_str()));
        for (subject, record, json) in std::iter::once(main).chain(referenced) {
            if !judged.insert((subject.clone(), record.to_owned())) {
                continue;
            }
            let asked = async {
                Ok::<_, crate::schema::RegistryError>((
                    registry.level(&subject).await?,
                    registry.versions(&subject).await?,
                ))
            };
            let (level, versions) = match asked.await {
                Ok(a) => a,
                Err(e) => {
                    problems.push(
                        deployment
                            .locate(&p.name, "topic", format!("cannot judge `{subject}`: {e}"))
                            .to_string(),
                    );
                    continue;
                }
            };
            for b in crate::schema::compat::check(level, json, &versions) {
                problems.push(
                    deployment
                        .locate(
                            &p.name,
                            "mapping",
                            format!(
                                "schema `{record}` (mapping `{}`) is not {} compatible with subject `{subject}`: {} version {}: {}",
                                m.name,
                                level.name(),
                                b.direction,
                                b.version,
                                b.reason
                            ),
                        )
                        .to_string(),
                );
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sources_older_login_is_named_with_its_line_and_its_newer_form() {
        let text = "[pipelines.grid.source]\nkind = \"http_poll\"\nlogin = { url = \"http://x/login\", username = \"u\", password = \"${env:P}\" }\n\n[pipelines.grid]\nlogin_note = 1\n";
        let found = super::older_forms(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, 3);
        assert!(found[0].1.contains("pipelines.grid.source.login"));
        assert!(found[0].1.contains("auth = { scheme = \"login\""));
    }
}
