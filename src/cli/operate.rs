//! Operating a hub: `run`, `quality`, `remap`, `backfill`, `status`, `audit verify`.

use super::delivery::hub_public_key;
use super::*;

pub(super) fn quality(a: QualityArgs) -> Result<ExitCode> {
    let QualityArgs {
        config,
        pipelines,
        days,
        format,
    } = a;
    let deployment = load_deployment(&config)?;
    for p in &pipelines {
        if deployment.pipeline(p).is_none() {
            bail!("no pipeline `{p}` in {}", config.display());
        }
    }
    let schemas = SchemaSet::load_dir(&deployment.hub.schemas)?;
    let mappings = deployment_mappings(&deployment, &schemas)?;
    let sources = deployment.quality_sources(&mappings, &pipelines);
    let names: Vec<String> = sources.pipelines.iter().map(|p| p.0.clone()).collect();
    tokio_main(async move {
        let board = duijie::quality::from_bus(&deployment.bus(), &sources).await?;
        match format {
            OutputFormat::Table => {
                print!("{}", duijie::quality::report(&board, &names, days))
            }
            OutputFormat::Json => {
                for l in duijie::quality::json_lines(&board, &names, days) {
                    println!("{l}");
                }
            }
        }
        Ok(())
    })
}

pub(super) fn remap(a: RemapArgs) -> Result<ExitCode> {
    let RemapArgs {
        config,
        pipeline,
        from,
        to,
    } = a;
    let deployment = load_deployment(&config)?;
    let from = duijie::calendar::parse_time(&from).map_err(anyhow::Error::msg)?;
    let to = to
        .as_deref()
        .map(duijie::calendar::parse_time)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let command = format!(
        "remap --pipeline {pipeline} --from {from}{}",
        to.map(|t| format!(" --to {t}")).unwrap_or_default()
    );
    tokio_main(audited(deployment.clone(), command, async move {
        let hub = duijie::runtime::Hub::load(deployment)?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        duijie::runtime::spawn_signal_handler(shutdown.clone());
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let s = duijie::runtime::remap::run(&hub, &pipeline, from, to, shutdown, progress).await?;
        Ok(format!(
            "{}: {} raw record(s) read, {} republished, {} dead-lettered; {}",
            s.key,
            s.read,
            s.republished,
            s.dead_lettered,
            if s.finished {
                "done"
            } else {
                "interrupted — run the same command to resume"
            }
        ))
    }))
}

pub(super) fn backfill(a: BackfillArgs) -> Result<ExitCode> {
    let BackfillArgs {
        config,
        pipeline,
        from,
        to,
        rate,
    } = a;
    let deployment = load_deployment(&config)?;
    let from = duijie::runtime::backfill::watermark(&from)?;
    let to = to
        .as_deref()
        .map(duijie::runtime::backfill::watermark)
        .transpose()?;
    if rate.is_some_and(|r| r <= 0.0) {
        bail!("--rate must be positive");
    }
    let command = format!(
        "backfill --pipeline {pipeline} --from {from:?}{}{}",
        to.as_ref()
            .map(|t| format!(" --to {t:?}"))
            .unwrap_or_default(),
        rate.map(|r| format!(" --rate {r}")).unwrap_or_default()
    );
    tokio_main(audited(deployment.clone(), command, async move {
        let hub = duijie::runtime::Hub::load(deployment)?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        duijie::runtime::spawn_signal_handler(shutdown.clone());
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let s = duijie::runtime::backfill::run(&hub, &pipeline, from, to, rate, shutdown, progress)
            .await?;
        Ok(format!(
            "{}: {} fetched, {} delivered, {} dead-lettered, at {}; {}",
            s.key,
            s.fetched,
            s.delivered,
            s.dead_lettered,
            s.watermark.as_deref().unwrap_or("the start"),
            if s.finished {
                "done"
            } else {
                "interrupted — run the same command to resume"
            }
        ))
    }))
}

pub(super) fn status(a: StatusArgs) -> Result<ExitCode> {
    let StatusArgs { config, url } = a;
    let deployment = load_deployment(&config)?;
    let url = match url {
        Some(u) => u,
        None => match &deployment.http {
            Some(h) => format!("http://{}", h.listen),
            None => bail!("{} has no [http] section; pass --url", config.display()),
        },
    };
    tokio_main(async move {
        let token = deployment
            .http
            .as_ref()
            .and_then(|h| h.status_token.clone());
        let Some(token) = token else {
            bail!(
                "{}: [http] status_token is not set; /ready shows its detail only with that token",
                config.display()
            );
        };
        let resp = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?
            .get(format!("{}/ready", url.trim_end_matches('/')))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("no hub answers at {url}"))?;
        let r: duijie::runtime::observe::Readiness = resp.json().await.context(
            "the hub's /ready did not give its detail (is [http] status_token the hub's?)",
        )?;
        print!("{}", duijie::runtime::observe::render(&r));
        if !r.ready {
            std::process::exit(1);
        }
        Ok(())
    })
}

pub(super) fn run_hub(a: RunArgs) -> Result<ExitCode> {
    let RunArgs { config, pipelines } = a;
    let deployment = load_deployment(&config)?;
    tokio_main(async { Ok(duijie::runtime::run_deployment(deployment, pipelines).await?) })
}

pub(super) fn audit_verify(
    config: &Path,
    topic: Option<String>,
    public_key: Option<PathBuf>,
) -> Result<ExitCode> {
    let deployment = load_deployment(config)?;
    let topic = match topic.or_else(|| {
        deployment
            .sections
            .desk
            .as_ref()
            .map(|d| d.audit_topic.clone())
    }) {
        Some(t) => t,
        None => bail!("the deployment has no [desk]: name the audit topic with --topic"),
    };
    let public = hub_public_key(&deployment, public_key)?;
    let signatures = public.is_some();
    let bus = deployment.bus();
    let (text, clean) = tokio_main_value(async move {
        let report = duijie::audit::verify_topic(&bus, &topic, public.as_ref()).await?;
        Ok((report.text(&topic), report.findings.is_empty()))
    })?;
    println!("{text}");
    if !signatures {
        println!("(no SM2 key: the chain's hashes were checked, not its signatures)");
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
