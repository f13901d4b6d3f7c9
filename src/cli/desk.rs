//! The desk's rooms from the command line: `referrals`, `entity`.

use super::*;

pub(super) fn entity(a: EntityArgs) -> Result<ExitCode> {
    let EntityArgs { config, command } = a;
    let deployment = load_deployment(&config)?;
    if deployment.sections.entities.is_none() {
        bail!("{} has no [entities] section", config.display());
    }
    let calendar = std::sync::Arc::new(duijie::calendar::Calendar::load_dir(
        &deployment.hub.calendar,
    )?);
    let schemas = std::sync::Arc::new(SchemaSet::load_dir(&deployment.hub.schemas)?);
    tokio_main(async move {
        let setting = deployment
            .entity_setting()
            .map_err(anyhow::Error::msg)?
            .context("the deployment has no [entities] section")?;
        let library = duijie::entity::api::Library::from_bus(
            &setting,
            calendar,
            schemas,
            std::time::Duration::from_secs(600),
        )
        .await?;
        match command {
            EntityCommand::List { query, format } => {
                let (_, rows) = library.list_json(query.as_deref(), 0, usize::MAX)?;
                match format {
                    OutputFormat::Table => {
                        print!("{}", duijie::entity::report::list_table(&rows))
                    }
                    OutputFormat::Json => {
                        for r in rows {
                            println!("{r}");
                        }
                    }
                }
            }
            EntityCommand::Show { code, format } => {
                let key = duijie::entity::api::Library::key_of(&code);
                let Some(p) = library.profile_json(&key)? else {
                    bail!("no entity `{key}` on the bus");
                };
                match format {
                    OutputFormat::Table => print!("{}", duijie::entity::report::show(&p)),
                    OutputFormat::Json => println!("{p}"),
                }
            }
        }
        Ok(())
    })
}

pub(super) fn referrals(a: ReferralsArgs) -> Result<ExitCode> {
    let ReferralsArgs { config, command } = a;
    let deployment = load_deployment(&config)?;
    let Some(desk) = deployment.sections.desk.clone() else {
        bail!("{} has no [desk] section", config.display());
    };
    if let ReferralsCommand::Rules { format } = &command {
        match format {
            OutputFormat::Table => {
                print!("{}", duijie::desk::report::rules_table(&desk.limits))
            }
            OutputFormat::Json => {
                for line in duijie::desk::report::rules_json(&desk.limits) {
                    println!("{line}");
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let calendar = duijie::calendar::Calendar::load_dir(&deployment.hub.calendar)?;
    if let ReferralsCommand::Replay { input, now, format } = &command {
        let now = match now {
            Some(t) => duijie::calendar::parse_time(t).map_err(anyhow::Error::msg)?,
            None => chrono::Utc::now(),
        };
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("reading {}", input.display()))?;
        let views = duijie::desk::report::replay(
            &text,
            &input.display().to_string(),
            &desk.limits,
            desk.at_risk_share,
            &calendar,
            now,
        )?;
        match format {
            OutputFormat::Table => println!("{}", duijie::desk::report::table(&views)),
            OutputFormat::Json => {
                for v in &views {
                    println!("{}", duijie::desk::report::replay_json(v, now));
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let schemas = SchemaSet::load_dir(&deployment.hub.schemas)?;
    tokio_main(async move {
        let mut views = duijie::desk::views_from_topic(
            &deployment.bus(),
            &schemas,
            &desk.tracker(),
            &calendar,
            chrono::Utc::now(),
        )
        .await?;
        duijie::desk::report::sort_for_desk(&mut views);
        match command {
            ReferralsCommand::List { state } => {
                if let Some(state) = state {
                    views.retain(|v| v.state.is_some_and(|s| s.code() == state.to_uppercase()));
                }
                println!("{}", duijie::desk::report::table(&views));
            }
            ReferralsCommand::Overdue => {
                views.retain(|v| v.late || v.at_risk || v.clock_error.is_some());
                println!("{}", duijie::desk::report::table(&views));
            }
            ReferralsCommand::Show { referral_no } => {
                let Some(v) = views.iter().find(|v| v.referral_no == referral_no) else {
                    bail!("no referral `{referral_no}` on {}", desk.events_topic);
                };
                print!("{}", duijie::desk::report::detail(v));
            }
            ReferralsCommand::Rules { .. } | ReferralsCommand::Replay { .. } => {
                unreachable!("answered without Kafka above")
            }
        }
        Ok(())
    })
}
