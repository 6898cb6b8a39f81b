//! `backupd-sim source`: a throwaway real Cyrus source instance in the
//! foreground, with a `backup` channel pointing at a fake.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct SourceArgs {
    #[command(flatten)]
    cyrus: super::CyrusSelect,
    /// Port of the fake backupd the `backup` channel replicates to.
    #[arg(long)]
    backup_port: u16,
    /// `backup_sync_authname`.
    #[arg(long, default_value = "repluser")]
    user: String,
    /// `backup_sync_password`.
    #[arg(long, default_value = "secret")]
    password: String,
    /// Directory for the instance (default: a new temp dir, removed at exit).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Create USER with N generated messages (repeatable), e.g. `--fill alice:20`.
    #[arg(long, value_name = "USER:N")]
    fill: Vec<String>,
}

pub fn run(args: SourceArgs) -> Result<ExitCode> {
    use backupd_sim::cyrus::{Channel, SourceInstance, SourceOptions};
    let bins = args.cyrus.single()?;
    let mut fills = Vec::new();
    for f in &args.fill {
        let (user, n) = f
            .split_once(':')
            .and_then(|(u, n)| Some((u.to_owned(), n.parse::<usize>().ok()?)))
            .with_context(|| format!("--fill `{f}`: expected USER:N, e.g. alice:20"))?;
        fills.push((user, n));
    }
    let (_tmp, root) = match &args.dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::Builder::new()
                .prefix("backupd-sim-source-")
                // Below the root for a chroot installation.
                .tempdir_in(bins.sandbox_parent())?;
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    std::fs::create_dir_all(&root)?;
    // Removed on Ctrl-C by the interrupt handler (a --dir is the user's: kept).
    let _reg = backupd_sim::cyrus::process::SandboxRegistration::new(&root, args.dir.is_some());
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let mut channel = Channel::new("backup", args.backup_port);
    channel.authname = args.user;
    channel.password = args.password;
    let mut opts = SourceOptions::new(bins.clone(), root.join("source"));
    opts.channels = vec![channel];
    let source = SourceInstance::start(&opts)?;
    let mut rng = backupd_sim::rng::Rng::new(backupd_sim::rng::Seed(1));
    for (user, n) in &fills {
        backupd_sim::populate::fill_user(&source, user, *n, &mut rng)?;
    }
    let conf = source.config_path().display().to_string();
    println!(
        "source imapd on {} (any password; `admin` is an admin)",
        source.imap_addr()
    );
    println!("config: {conf}");
    println!("channel log: {}", source.sync_log_path("backup").display());
    // How to run this installation's sync_client by hand (through chroot,
    // with the path it sees, for a chroot installation).
    let inside = bins.inside(source.config_path())?;
    let client = bins.command("sync_client");
    let mut argv: Vec<String> = std::iter::once(client.get_program())
        .chain(client.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    argv.push(format!("-C {}", inside.display()));
    println!("try: {} -n backup -v -u USER", argv.join(" "));
    println!(
        "Ctrl-C stops the instance{}.",
        if args.dir.is_some() {
            ""
        } else {
            " and removes it"
        }
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    let _keep_running = source;
    // The interrupt handler stops the instance, removes the temp dir and exits.
    backupd_sim::cyrus::process::park_until_interrupted()
}
