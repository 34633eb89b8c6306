//! The allocator: mimalloc instead of glibc's malloc, for every Rust allocation of the
//! server (SQLite's own still go through malloc).
//!
//! Measured with `ehrs-bench scenario` on the 2-core reference machine, two runs each in
//! turn (91e3d7e against this): end to end on SQLite, 1 subscription, 16 requests in
//! flight, 5,193 / 5,446 → 7,991 / 8,165 deliveries/s and the API 6,229 / 6,714 →
//! 9,993 / 10,062 writes/s; glibc spent its time in `_int_malloc` and
//! `malloc_consolidate` (11 % of a profile) under the runtime's threads. Left to its
//! defaults mimalloc keeps freed memory committed a while and eagerly commits its
//! arenas: peak RSS rose from 54 to 87 MB (61 to 96 MB with 10 subscriptions at 400
//! writes/s). With `tune` it stays where glibc had it: 53 / 54 MB and 60 / 60 MB.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Option numbers of `mi_option_e` in mimalloc's `mimalloc.h` (v3, the version
/// `libmimalloc-sys` builds by default); the crate names only some of them.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc give freed memory back to the system at once and commit its arenas
/// only as they are used. Runs as the program loads, before `main` and before any Rust
/// allocation: the first arena is reserved with the first allocation, and an option
/// set later (as from `main`) no longer applies to it (RSS measured 84 MB that way).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE: extern "C" fn() = tune;

#[cfg(target_os = "linux")]
extern "C" fn tune() {
    // SAFETY: mi_option_set only stores the value of an option that exists; at load
    // time no other thread runs.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_is_tuned_as_the_program_loads() {
        // SAFETY: reads two options that exist.
        let (purge_delay, eager_commit) = unsafe {
            (
                libmimalloc_sys::mi_option_get(PURGE_DELAY),
                libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT),
            )
        };
        assert_eq!((purge_delay, eager_commit), (0, 0));
    }
}
