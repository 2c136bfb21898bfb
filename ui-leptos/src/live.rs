//! Live updates by polling: a counter that ticks every [`REFRESH_MS`] in the browser; resources
//! keyed on it refetch. (Server rendering never ticks.)

use leptos::prelude::*;

/// How often the console refreshes what it shows.
pub const REFRESH_MS: u64 = 5_000;

/// How often a page that follows running work (a task's progress) refreshes.
pub const FAST_REFRESH_MS: u64 = 1_000;

/// A signal that increments every `REFRESH_MS` while the calling component is mounted.
pub fn use_tick() -> ReadSignal<u64> {
    use_tick_every(REFRESH_MS)
}

/// A signal that increments every `ms` while the calling component is mounted.
pub fn use_tick_every(ms: u64) -> ReadSignal<u64> {
    let (tick, set_tick) = signal(0u64);
    Effect::new(move |_| {
        let handle = set_interval_with_handle(
            move || set_tick.update(|t| *t += 1),
            std::time::Duration::from_millis(ms),
        );
        if let Ok(handle) = handle {
            on_cleanup(move || handle.clear());
        }
    });
    tick
}
