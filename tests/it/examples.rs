//! The `examples/` programs, run by the tests: each is compiled into this
//! binary from its own file and its `run()` called, so `make test` fails when
//! an example no longer builds or no longer does what it shows.

#[path = "../../examples/embed.rs"]
#[allow(dead_code)] // its `main` is the example's entry point, not ours
mod embed;

/// `examples/embed.rs`: the fake started in-process, a real source pointed at
/// it, a lock (`-u` exits 1, one LOCKED counted), a fault that fires once,
/// and the store read directly, equal to the source.
#[test]
fn the_embedding_example_runs() {
    if crate::util::cyrus_bins().is_none() {
        return;
    }
    embed::run().unwrap_or_else(|e| panic!("examples/embed.rs: {e}"));
}
