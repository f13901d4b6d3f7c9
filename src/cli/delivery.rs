//! What leaves the hub: `deliveries preview`, `status` and `test`, `replay`, `receipts verify`.

use super::*;

pub(super) fn preview(a: DeliveriesPreviewArgs) -> Result<ExitCode> {
    let DeliveriesPreviewArgs {
        delivery,
        input,
        config,
    } = a;
    let deployment = load_deployment(&config)?;
    let Some((name, d)) = deployment.deliveries.iter().find(|(n, _)| *n == delivery) else {
        bail!(
            "{}: no delivery `{delivery}` (there are: {})",
            config.display(),
            deployment
                .deliveries
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let text =
        std::fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?;
    let rows = duijie::delivery::preview(
        name,
        d,
        &text,
        &input.display().to_string(),
        chrono::Utc::now(),
    )?;
    for r in rows {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn status(a: DeliveriesStatusArgs) -> Result<ExitCode> {
    let DeliveriesStatusArgs { config } = a;
    let deployment = load_deployment(&config)?;
    tokio_main(async move {
        let rows = duijie::delivery::ops::status(&deployment.feeds()).await?;
        print!("{}", duijie::delivery::ops::status_table(&rows));
        Ok(())
    })
}

pub(super) fn test(a: DeliveriesTestArgs) -> Result<ExitCode> {
    let DeliveriesTestArgs { delivery, config } = a;
    let deployment = load_deployment(&config)?;
    tokio_main_value(async move {
        let t = duijie::delivery::ops::test_delivery(&deployment.feeds(), &delivery).await?;
        println!(
            "{delivery}: {} → {} (Idempotency-Key {})",
            t.url, t.answer, t.key
        );
        Ok(if t.accepted {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

pub(super) fn replay(a: ReplayArgs) -> Result<ExitCode> {
    let ReplayArgs { config, feed, from } = a;
    let deployment = load_deployment(&config)?;
    let command = format!("replay --feed {feed} --from {from}");
    let from: duijie::delivery::ops::From = from.parse().map_err(anyhow::Error::msg)?;
    tokio_main(audited(deployment.clone(), command, async move {
        let r = duijie::delivery::ops::replay(&deployment.feeds(), &feed, from).await?;
        Ok(format!(
            "{feed}: read {} record(s); delivered {}, refused {}, failed {}, not sent {}, held {}, not selected {}",
            r.read,
            r.delivered,
            r.rejected,
            r.failed,
            r.not_sent,
            r.held,
            r.not_selected()
        ))
    }))
}

pub(super) fn receipts_verify(
    config: &Path,
    delivery: &str,
    record: Option<String>,
    input: Option<PathBuf>,
    public_key: Option<PathBuf>,
) -> Result<ExitCode> {
    let deployment = load_deployment(config)?;
    let Some((name, d)) = deployment.deliveries.iter().find(|(n, _)| n == delivery) else {
        bail!("{}: no delivery `{delivery}`", config.display());
    };
    let hub = hub_public_key(&deployment, public_key)?;
    let receiver = d
        .target
        .receipt_key()
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let bodies = match &input {
        None => None,
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let rows = duijie::delivery::preview(
                name,
                d,
                &text,
                &file.display().to_string(),
                chrono::Utc::now(),
            )?;
            Some(duijie::delivery::proof::bodies_of_preview(&rows))
        }
    };
    let checked = tokio_main_value(async {
        let keys = duijie::delivery::proof::Keys {
            hub: hub.as_ref(),
            receiver: receiver.as_ref(),
            bodies: bodies.as_ref(),
        };
        Ok(
            duijie::delivery::proof::verify(&deployment.feeds(), name, record.as_deref(), &keys)
                .await?,
        )
    })?;
    let failing = checked.iter().filter(|c| !c.holds()).count();
    for c in &checked {
        println!("{}", c.line());
    }
    println!(
        "{} receipt(s) with a proof, {failing} failing",
        checked.len()
    );
    Ok(if failing == 0 && !checked.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The hub's public key: from a file, else the public half of
/// `[hub.signing]`.
pub(super) fn hub_public_key(
    deployment: &Deployment,
    file: Option<PathBuf>,
) -> Result<Option<duijie_crypto::sm2::PublicKey>> {
    let signing = deployment.hub.signing.as_ref();
    let distid = signing.map_or(duijie_crypto::sm2::DEFAULT_DISTID, |s| s.distid.as_str());
    Ok(match (file, signing) {
        (Some(file), _) => Some(
            duijie_crypto::sm2::PublicKey::from_pem(
                &std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?,
                distid,
            )
            .with_context(|| file.display().to_string())?,
        ),
        (None, Some(s)) => Some(s.private_key().map_err(anyhow::Error::msg)?.public()),
        (None, None) => None,
    })
}
