//! Panics in user code (merge functions, sinks, hooks, tasks) are caught,
//! turned into a message, counted and reported: this is the one place that
//! turns a panic payload into text.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The message of a panic payload (`panic!("...")` gives a `&str` or a
/// `String`), or a placeholder for other payloads.
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Runs `f`, turning a panic into `Err(message)`.
///
/// The closure is asserted unwind-safe: callers only run user code on
/// state they discard or re-validate after a panic.
#[allow(dead_code)]
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| message(&*payload))
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_of_str_string_and_other_payloads() {
        assert_eq!(
            super::catch(|| panic!("plain")),
            Err::<(), _>("plain".into())
        );
        let n = 7;
        assert_eq!(
            super::catch(|| panic!("n = {n}")),
            Err::<(), _>("n = 7".into())
        );
        let other = super::catch(|| std::panic::panic_any(42u8)).unwrap_err();
        assert_eq!(other, "non-string panic payload");
        assert_eq!(super::catch(|| 5), Ok(5));
    }
}
