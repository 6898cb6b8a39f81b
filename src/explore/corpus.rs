//! The corpus: cases worth running again, one JSON file each
//! (`SEED-INDEX.json`: the seed and case index that drew it, why it was kept,
//! and the case itself, so it replays even after the generator changes).
//! A campaign replays the corpus before drawing new cases, and adds the cases
//! that failed or were the first to make some lock or fault fire on some
//! command under some client mode. Shards' corpora merge by copying files.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::gen::{GenCase, GenOptions, GenStep, TriggerAction};

/// Most entries kept (new ones are not added past it).
pub const MAX_ENTRIES: usize = 500;

/// One corpus entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the loaded corpus (not stored).
    #[serde(skip)]
    pub index: u64,
    /// The seed that drew it.
    pub seed: u64,
    /// Its case index under that seed.
    pub case_index: u64,
    /// Why it was kept.
    pub reason: String,
    /// The case.
    pub case: GenCase,
}

/// Whether `case` has a loss fault (replayed only when they are allowed).
pub fn has_loss(case: &GenCase) -> bool {
    case.steps.iter().any(|s| match s {
        GenStep::Fault { kind, .. } => kind.is_loss(),
        GenStep::Trigger { then, .. } => then
            .iter()
            .any(|a| matches!(a, TriggerAction::Fault { kind, .. } if kind.is_loss())),
        _ => false,
    })
}

/// The entries of `dir` (none when it does not exist), in file-name order,
/// leaving out those with loss faults unless `gen` allows them.
pub fn load(dir: &Path, gen: &GenOptions) -> Result<Vec<Entry>, String> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("reading the corpus `{}`: {e}", dir.display())),
    };
    let mut paths: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text =
            std::fs::read_to_string(&p).map_err(|e| format!("reading `{}`: {e}", p.display()))?;
        let mut e: Entry = serde_json::from_str(&text)
            .map_err(|e| format!("`{}` is not a corpus entry: {e}", p.display()))?;
        if has_loss(&e.case) && !gen.allow_loss_faults {
            continue;
        }
        e.index = out.len() as u64;
        out.push(e);
    }
    Ok(out)
}

/// Keep case `index` of `seed` in `dir` (once; at most [`MAX_ENTRIES`]).
pub fn add(
    dir: &Path,
    seed: crate::rng::Seed,
    index: u64,
    case: &GenCase,
    reason: &str,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating `{}`: {e}", dir.display()))?;
    let path = dir.join(format!("{}-{index}.json", seed.0));
    if path.exists() {
        return Ok(());
    }
    let count = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    if count >= MAX_ENTRIES {
        return Ok(());
    }
    let e = Entry {
        index: 0,
        seed: seed.0,
        case_index: index,
        reason: reason.to_owned(),
        case: case.clone(),
    };
    let json = serde_json::to_string_pretty(&e).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("writing `{}`: {e}", path.display()))
}
