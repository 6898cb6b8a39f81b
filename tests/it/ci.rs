//! The example CI files (`ci/examples/`) parse, and what they run is what the
//! binary accepts: each shard's and each seed's command line, with the
//! matrix values substituted, is run against the real binary (`run --list`,
//! `explore --dry-run`), and the shards together cover the suite exactly once.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_norway::Value;

const BIN: &str = env!("CARGO_BIN_EXE_backupd-sim");

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("ci/examples")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// Words of a command line: whitespace-separated, `"…"` kept together.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The arguments after `backupd-sim SUBCOMMAND` in `line`, or the contents
/// of `RUN_ARGS="…"` for `make run` (which runs `backupd-sim run … RUN_ARGS`).
fn run_args(line: &str) -> Vec<String> {
    let w = words(line);
    if let Some(pos) = w
        .iter()
        .position(|x| x == "run" && line.contains("make run"))
    {
        let args = w[pos + 1..]
            .iter()
            .find_map(|x| x.strip_prefix("RUN_ARGS="))
            .unwrap_or_else(|| panic!("no RUN_ARGS in {line}"));
        return words(args);
    }
    let pos = w
        .iter()
        .position(|x| x.ends_with("backupd-sim"))
        .unwrap_or_else(|| panic!("no backupd-sim in {line}"));
    w[pos + 2..].to_vec()
}

/// `backupd-sim ARGS` from the checkout; (exit code, stdout, stderr).
fn bin(args: &[String]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run backupd-sim");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every scenario file of the suite, as `run --list` prints them.
fn whole_suite() -> BTreeSet<String> {
    let (code, out, err) = bin(&["run".into(), "--list".into()]);
    assert_eq!(code, 0, "{err}");
    out.lines().map(str::to_owned).collect()
}

/// Run `run ARGS --list` for every shard (`subst` makes shard k's argument
/// list) and check the shards cover the suite exactly once.
fn shards_cover_the_suite(what: &str, count: usize, subst: impl Fn(usize) -> Vec<String>) {
    let all = whole_suite();
    let mut seen = BTreeSet::new();
    for k in 1..=count {
        let mut args = vec!["run".to_owned()];
        args.extend(subst(k));
        assert!(
            args.iter().any(|a| a == &format!("{k}/{count}")),
            "{what}: shard {k} does not pass --shard {k}/{count}: {args:?}"
        );
        args.push("--list".into());
        let (code, out, err) = bin(&args);
        assert_eq!(code, 0, "{what} shard {k}: {args:?}\n{err}");
        for line in out.lines() {
            assert!(seen.insert(line.to_owned()), "{what}: {line} in two shards");
        }
    }
    assert_eq!(seen, all, "{what}: the shards do not cover the suite");
}

/// `explore ARGS --dry-run DIR --cases 2` for each seed: the arguments parse
/// and the seed generates cases.
fn seeds_generate(what: &str, seeds: &[String], subst: impl Fn(&str) -> Vec<String>) {
    let distinct: BTreeSet<&String> = seeds.iter().collect();
    assert!(
        seeds.len() >= 2 && distinct.len() == seeds.len(),
        "{what}: {seeds:?}"
    );
    for seed in seeds {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["explore".to_owned()];
        args.extend(subst(seed));
        assert!(
            args.iter().any(|a| a == seed),
            "{what}: seed {seed} not passed: {args:?}"
        );
        // A short dry run: the file's own --cases replaced.
        if let Some(i) = args.iter().position(|a| a == "--cases") {
            args.drain(i..i + 2);
        }
        args.extend([
            "--dry-run".into(),
            dir.path().display().to_string(),
            "--cases".into(),
            "2".into(),
        ]);
        let (code, _, err) = bin(&args);
        assert_eq!(code, 0, "{what} seed {seed}: {args:?}\n{err}");
        let files = std::fs::read_dir(dir.path()).expect("dry-run dir").count();
        assert!(files >= 2, "{what} seed {seed}: {files} case files");
    }
}

/// The `run:` line of the step of `job` whose command contains `needle`.
fn gh_step(job: &Value, needle: &str) -> String {
    job["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .filter_map(|st| st["run"].as_str())
        .find(|r| r.contains(needle))
        .unwrap_or_else(|| panic!("no step running `{needle}`"))
        .to_owned()
}

/// The upload step's `path:` lines and its `if:`.
fn gh_upload(job: &Value) -> (Vec<String>, String) {
    let step = job["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .find(|st| {
            st["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
        })
        .expect("an upload-artifact step");
    (
        s(&step["with"]["path"])
            .lines()
            .map(|l| l.trim().to_owned())
            .collect(),
        step["if"].as_str().unwrap_or_default().to_owned(),
    )
}

fn ints(v: &Value) -> Vec<String> {
    v.as_sequence()
        .expect("a list")
        .iter()
        .map(|x| match x {
            Value::Number(n) => n.to_string(),
            other => s(other).to_owned(),
        })
        .collect()
}

/// The `--junit FILE` of an argument list.
fn junit_of(args: &[String]) -> String {
    let i = args.iter().position(|a| a == "--junit").expect("--junit");
    args[i + 1].clone()
}

/// GitHub Actions: a Debian 12 container, `make run` sharded over the matrix
/// with each shard's JUnit uploaded even on failure, and an explore campaign
/// with one seed per job.
#[test]
fn the_github_actions_example_runs_the_suite_sharded_and_explores_by_seed() {
    let y = load("github-actions.yml");
    let suite = &y["jobs"]["suite"];
    assert_eq!(s(&suite["container"]["image"]), "debian:12");
    let shards = ints(&suite["strategy"]["matrix"]["shard"]);
    let n = shards.len();
    assert!(n >= 2);
    assert_eq!(shards, (1..=n).map(|k| k.to_string()).collect::<Vec<_>>());
    let line = gh_step(suite, "make run");
    shards_cover_the_suite("github suite", n, |k| {
        run_args(&line.replace("${{ matrix.shard }}", &k.to_string()))
    });
    let (paths, cond) = gh_upload(suite);
    for k in 1..=n {
        let shard = |t: &str| t.replace("${{ matrix.shard }}", &k.to_string());
        let junit = junit_of(&run_args(&shard(&line)));
        assert!(
            paths.iter().any(|p| shard(p) == junit),
            "{junit} not uploaded: {paths:?}"
        );
    }
    assert_eq!(
        cond, "always()",
        "JUnit must be uploaded when the suite fails"
    );

    let explore = &y["jobs"]["explore"];
    assert_eq!(s(&explore["container"]["image"]), "debian:12");
    let seeds = ints(&explore["strategy"]["matrix"]["seed"]);
    let line = gh_step(explore, "backupd-sim explore");
    seeds_generate("github explore", &seeds, |seed| {
        run_args(&line.replace("${{ matrix.seed }}", seed))
    });
    assert!(gh_step(explore, "make setup").contains("build"));
}

/// GitLab CI: the same, with `parallel: N` and CI_NODE_INDEX/CI_NODE_TOTAL,
/// JUnit as a report artifact kept on failure, and `parallel: matrix` seeds.
#[test]
fn the_gitlab_example_runs_the_suite_sharded_and_explores_by_seed() {
    let y = load("gitlab-ci.yml");
    assert_eq!(s(&y["default"]["image"]), "debian:12");
    let suite = &y["suite"];
    let n = suite["parallel"].as_u64().expect("parallel: N") as usize;
    assert!(n >= 2);
    let line = s(&suite["script"][0]).to_owned();
    shards_cover_the_suite("gitlab suite", n, |k| {
        run_args(
            &line
                .replace("${CI_NODE_INDEX}", &k.to_string())
                .replace("${CI_NODE_TOTAL}", &n.to_string()),
        )
    });
    let junit = junit_of(&run_args(&line));
    assert_eq!(s(&suite["artifacts"]["reports"]["junit"]), junit);
    assert_eq!(s(&suite["artifacts"]["when"]), "always");

    let explore = &y["explore"];
    let seeds = ints(&explore["parallel"]["matrix"][0]["SEED"]);
    let script = explore["script"].as_sequence().expect("script");
    assert!(script.iter().any(|l| s(l).starts_with("make setup build")));
    let line = script
        .iter()
        .map(s)
        .find(|l| l.contains("backupd-sim explore"))
        .expect("explore line")
        .to_owned();
    seeds_generate("gitlab explore", &seeds, |seed| {
        run_args(&line.replace("${SEED}", seed))
    });
}

/// For the Cyrus repository's own CI: its Debian bookworm image, Cyrus built
/// as its CI builds it, backupd-sim installed with cargo, and the bundled
/// suite sharded against that build's programs, JUnit uploaded.
#[test]
fn the_cyrus_imapd_example_runs_the_suite_against_its_own_build() {
    let y = load("cyrus-imapd-github-actions.yml");
    let job = &y["jobs"]["replication"];
    assert_eq!(
        s(&job["container"]["image"]),
        "ghcr.io/cyrusimap/cyrus-docker:bookworm"
    );
    assert!(gh_step(job, "build-with-cyruslibs").contains("./tools/build-with-cyruslibs.sh"));
    assert!(gh_step(job, "cargo install").contains("--locked"));
    let shards = ints(&job["strategy"]["matrix"]["shard"]);
    let n = shards.len();
    let line = gh_step(job, "backupd-sim run");
    let args = run_args(&line);
    // The build's installed tree, as `make install` lays it out.
    let i = args
        .iter()
        .position(|a| a == "--cyrus-prefix")
        .expect("--cyrus-prefix");
    assert_eq!(args[i + 1], "/usr/cyrus");
    shards_cover_the_suite("cyrus-imapd", n, |k| {
        run_args(&line.replace("${{ matrix.shard }}", &k.to_string()))
    });
    let (paths, cond) = gh_upload(job);
    for k in 1..=n {
        let shard = |t: &str| t.replace("${{ matrix.shard }}", &k.to_string());
        let junit = junit_of(&run_args(&shard(&line)));
        assert!(
            paths.iter().any(|p| shard(p) == junit),
            "{junit}: {paths:?}"
        );
    }
    assert_eq!(cond, "always()");
}
