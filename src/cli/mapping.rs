//! Mapping commands: `check`, `mapping test`, `mapping diff`, `map`, `validate`.

use super::*;
use duijie::ident::IdKind;
use std::io::Write;

pub(super) fn check(config: &Path, registry: Option<&str>) -> Result<ExitCode> {
    let mut report = duijie::check::check_deployment(config);
    if let (Some(url), Some(loaded)) = (registry, &report.loaded)
        && report.problems.is_empty()
    {
        report.problems =
            tokio_main_value(async { Ok(duijie::check::registry_breaks(loaded, url).await) })?;
        if report.problems.is_empty() {
            report.summary = format!(
                "{}\nschemas compatible with {url} under each subject's compatibility level",
                report.summary
            );
        }
    }
    for line in &report.warnings {
        eprintln!("{line}");
    }
    for line in &report.problems {
        eprintln!("{line}");
    }
    if report.problems.is_empty() {
        println!("{}", report.summary);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} problem(s) in {}",
            report.problems.len(),
            config.display()
        );
        Ok(ExitCode::FAILURE)
    }
}

pub(super) fn mapping_test(
    mappings: &Path,
    schemas: &Path,
    fixtures: Option<PathBuf>,
    only: Option<String>,
    bless: Option<String>,
) -> Result<ExitCode> {
    let (_, set) = load_schemas_and_mappings(mappings, schemas)?;
    for name in only.iter().chain(bless.iter().filter(|b| !b.is_empty())) {
        if !set.mappings.contains_key(name) {
            anyhow::bail!(
                "no mapping `{name}` in {} (mappings: {})",
                mappings.display(),
                set.mappings.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let bless = match bless {
        None => golden::Bless::Nothing,
        Some(b) if b.is_empty() => golden::Bless::All,
        Some(b) => golden::Bless::One(b),
    };
    let fixtures = fixtures.unwrap_or_else(|| mappings.join("tests"));
    let results = golden::run_all(&set, &fixtures, only.as_deref(), &bless);
    let mut failed = 0;
    for r in &results {
        if r.diff.is_empty() {
            println!("ok   {} / {}", r.mapping, r.case);
        } else {
            failed += 1;
            println!("FAIL {} / {}", r.mapping, r.case);
            for line in &r.diff {
                println!("  {line}");
            }
        }
    }
    println!(
        "{} case(s), {} passed, {failed} failed, {} mapping(s)",
        results.len(),
        results.len() - failed,
        set.mappings.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `duijie mapping diff`.
///
/// Long because `duijie mapping diff`'s report in order: load both
/// mappings, read the raw records, compare field by field, print.
pub(super) fn mapping_diff(args: MappingDiffArgs) -> Result<ExitCode> {
    let MappingDiffArgs {
        config,
        mapping,
        file,
        codes,
        schemas: edited_schemas,
        sample,
        from,
        format,
    } = args;
    let name = mapping.as_str();
    let deployment = load_deployment(&config)?;
    let schemas = SchemaSet::load_dir(&deployment.hub.schemas)?;
    let edited_schemas = edited_schemas
        .map(|dir| SchemaSet::load_dir(&dir))
        .transpose()?;
    let set = deployment_mappings(&deployment, &schemas)?;
    let Some(current) = set.get(name) else {
        bail!(
            "no mapping `{name}` in {}",
            deployment.hub.mappings.display()
        );
    };
    let edited_file = file.unwrap_or_else(|| current.file.clone());
    let edited = set
        .load_edited(
            &edited_file,
            codes.as_deref(),
            edited_schemas.as_ref().unwrap_or(&schemas),
        )
        .map_err(load_errors)?;
    // The schema change the edit brings (another record, or an edited
    // schema folder), judged both ways.
    let schema = duijie::schema::compat::change(&current.schema.json, &edited.schema.json);
    let raw_topics: Vec<String> = deployment
        .pipelines
        .iter()
        .filter(|p| p.mapping == name)
        .filter_map(|p| p.raw_topic())
        .collect();
    if raw_topics.is_empty() {
        bail!(
            "no pipeline with mapping `{name}` keeps raw records: add `raw = {{ retention = \"30d\" }}` to it"
        );
    }
    let from_ms = from
        .as_deref()
        .map(duijie::calendar::parse_time)
        .transpose()
        .map_err(anyhow::Error::msg)?
        .map(|t| t.timestamp_millis());
    let sample = sample.unwrap_or(1000);
    let bus = deployment.bus();
    let diff = tokio_main_value(async move {
        let mut records: Vec<(i64, duijie_connectors::RawRecord, String)> = Vec::new();
        for topic in &raw_topics {
            let span = duijie::bus::inspect::Span {
                from_ms,
                last_per_partition: from_ms.is_none().then_some(sample as i64),
                ..Default::default()
            };
            let mut rx = duijie::bus::inspect::stream_span(&bus, topic, span);
            while let Some(item) = rx.recv().await {
                match item? {
                    duijie::bus::inspect::SpanItem::Bounds(_) => {}
                    duijie::bus::inspect::SpanItem::Record(r, ts) => {
                        if let Some(raw) = duijie::runtime::remap::raw_of(&r, ts) {
                            let place = format!("{topic}/{}/{}", r.partition, r.offset);
                            records.push((ts, raw, place));
                        }
                    }
                }
            }
        }
        if from_ms.is_none() {
            // The most recent `sample` across partitions and pipelines.
            records.sort_by_key(|(ts, _, _)| std::cmp::Reverse(*ts));
            records.truncate(sample);
        }
        let records: Vec<_> = records.into_iter().map(|(_, r, p)| (r, p)).collect();
        Ok(duijie::mapping::diff::diff(&current, &edited, &records))
    })?;
    match format {
        OutputFormat::Table => {
            print!("{}", schema.report());
            print!("{}", duijie::mapping::diff::report(&diff, name));
        }
        OutputFormat::Json => {
            let mut v = serde_json::to_value(&diff)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("schema".into(), serde_json::to_value(&schema)?);
            }
            println!("{v}");
        }
    }
    Ok(if diff.changes_anything() || schema.is_change() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Where and how `duijie map` writes.
pub(super) struct MapOutputs {
    pub(super) output: Option<PathBuf>,
    pub(super) rejects: Option<PathBuf>,
    pub(super) format: duijie::mapping::stream::OutputFormat,
    pub(super) threads: Option<usize>,
}

/// `duijie map`: streams JSON lines through the mapping (bounded memory,
/// every core, input order kept); an XML mapping maps the whole file as one
/// record.
pub(super) fn map(
    name: &str,
    input: &Path,
    to: MapOutputs,
    mappings: &Path,
    schemas: &Path,
) -> Result<ExitCode> {
    use duijie::mapping::stream::{OutputFormat, StreamOptions, stream_map};
    use std::io::IsTerminal;
    let (_, set) = load_schemas_and_mappings(mappings, schemas)?;
    let mapping = set
        .get(name)
        .with_context(|| format!("no mapping `{name}` in {}", mappings.display()))?;
    let create = |p: &Path| {
        std::fs::File::create(p)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("creating {}", p.display()))
    };
    let out: Box<dyn Write> = match &to.output {
        Some(p) => Box::new(create(p)?),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let rej: Box<dyn Write> = match &to.rejects {
        Some(p) => Box::new(create(p)?),
        None => Box::new(std::io::BufWriter::new(std::io::stderr().lock())),
    };
    let counts = if mapping.format == duijie_connectors::PayloadFormat::Xml {
        if to.format == OutputFormat::Avro {
            anyhow::bail!("`--format avro` is for JSON-lines inputs; mapping `{name}` reads XML");
        }
        let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
        let run = golden::dry_run(&mapping, &bytes);
        let (mut out, mut rej) = (out, rej);
        for r in &run.records {
            writeln!(out, "{r}")?;
        }
        for r in &run.rejects {
            writeln!(rej, "{r}")?;
        }
        out.flush()?;
        rej.flush()?;
        (run.records.len() as u64, run.rejects.len() as u64)
    } else {
        let file =
            std::fs::File::open(input).with_context(|| format!("reading {}", input.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // Progress on a terminal, for inputs worth waiting on.
        let bar = if std::io::stderr().is_terminal() && size > 32 << 20 && to.rejects.is_some() {
            indicatif::ProgressBar::new(size).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("a progress template"),
            )
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut options = StreamOptions {
            format: to.format,
            ..StreamOptions::default()
        };
        if to.format == OutputFormat::Avro {
            // An Avro value tree is several times its JSON line: smaller
            // chunks keep the resident set flat and low.
            options.chunk_bytes = 256 << 10;
        }
        if let Some(n) = to.threads {
            options.threads = n.max(1);
        }
        let counts = stream_map(
            &mapping,
            std::io::BufReader::with_capacity(1 << 20, file),
            out,
            rej,
            &options,
            &mut |bytes| bar.set_position(bytes),
        )
        .with_context(|| format!("mapping {}", input.display()))?;
        bar.finish_and_clear();
        (counts.records, counts.rejects)
    };
    eprintln!(
        "{}: {} record(s), {} reject(s)",
        input.display(),
        counts.0,
        counts.1
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn validate(kind: ValidateKind, values: &[String]) -> ExitCode {
    let kind = match kind {
        ValidateKind::Uscc => IdKind::Uscc,
        ValidateKind::Id => IdKind::ResidentId,
    };
    let mut all_valid = true;
    for v in values {
        let checked = kind.check(v);
        match &checked.invalid {
            None if checked.first_generation => println!(
                "{v}\tvalid\t{}\tfirst-generation (15-digit) number, normalised to 18",
                checked.normalized
            ),
            None => println!("{v}\tvalid\t{}", checked.normalized),
            Some(why) => {
                all_valid = false;
                println!("{v}\tinvalid\t{}\t{why}", checked.normalized);
            }
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
